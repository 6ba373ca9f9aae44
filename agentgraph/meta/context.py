"""From a config to what meta-training works on: the network, the protocol, compiled programs.

A :class:`Context` bundles one inner network under one protocol: the library network (``base``,
for SGD/Adam baselines and teachers), the protocol's network (``net``), both compiled, and the
functions every part of meta-training shares (fresh weights, a state holding given weights, one
inner step, predictions). It names no kind and asks no protocol what it is: everything
protocol-specific goes through the :class:`~agentgraph.protocols.base.Protocol` contract.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Hashable
from typing import Any

import jax

from agentgraph.compiler import Program, compile
from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import TrainConfig
from agentgraph.protocols.base import (Network, Protocol, fresh_weights, load_callable, read, weights_of,
                                       with_weights)

__all__ = ["Context", "build_network", "make_context", "make_contexts"]


def build_network(cfg: TrainConfig, seed: int = 0) -> Network:
    """The inner network (library kinds, or your builder's) a config describes.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
        >>> build_network(cfg).graph.number_of_agents()
        20
    """
    from agentgraph.builders import as_network, mlp_network, random_dag_network

    n = cfg.net
    if n.kind == "mlp":
        return mlp_network(n.sizes, activation=n.activation, loss=n.loss, init_std=n.init_std, seed=seed)
    if n.kind == "random_dag":
        return random_dag_network(n.sizes[0], n.n_hidden, n.sizes[-1], edge_prob=n.edge_prob,
                                  parallel_prob=n.parallel_prob, activation=n.activation, loss=n.loss,
                                  init_std=n.init_std, seed=seed)
    fn = load_callable(n.kind, "net.kind")
    kwargs = dict(n.args)
    if "seed" in inspect.signature(fn).parameters:
        kwargs.setdefault("seed", seed)
    try:
        out = fn(**kwargs)
    except TypeError as e:
        raise AgentGraphError(f"net.kind {n.kind!r} could not be called with net.args {sorted(n.args)}: {e}") from None
    return as_network(out, n.init_std, f"net.kind {n.kind!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class Context:
    """One inner network under one protocol (module docstring).

    Attributes:
        cfg: the config.
        protocol: the learning rule.
        base: the library-kind network (SGD/Adam baselines, teachers).
        net: the protocol's network (:attr:`Protocol.network` of ``base``).
        program: ``net.graph`` compiled.
        plain: ``base.graph`` compiled (the gradient protocol's program).
        cache: compiled helper programs a protocol builds once per context (:meth:`memo`).
    """

    cfg: TrainConfig
    protocol: Protocol
    base: Network
    net: Network
    program: Program
    plain: Program
    cache: dict = dataclasses.field(default_factory=dict)

    # -- protocol-owned helpers ------------------------------------------------------------------
    def memo(self, name: Hashable, build: Callable[[], Any]) -> Any:
        """``build()`` once per context (e.g. a protocol's recording program), then cached."""
        if name not in self.cache:
            with jax.ensure_compile_time_eval():  # concrete arrays even if first used under a trace
                self.cache[name] = build()
        return self.cache[name]

    # -- weights ---------------------------------------------------------------------------------
    def _pick(self, program: Program | None, plain: bool):
        prog = (self.plain if plain else self.program) if program is None else program
        return prog, (self.base.init if plain else self.net.init)

    def template(self, program: Program | None = None, plain: bool = False) -> dict:
        """The network's weights ``{kind: {field: [N, ...]}}`` as ``program`` (default the
        protocol's; ``plain``: the library network's) declares them."""
        prog, init = self._pick(program, plain)
        return weights_of(init, prog.init(1))

    def fresh(self, key: jax.Array, program: Program | None = None, plain: bool = False) -> dict:
        """A fresh network's weights for the protocol's network (``plain``: the library
        network's, for baselines and teachers). The same key gives the same draws in both when
        the two networks have the same weights (MPLP, SGD)."""
        prog, init = self._pick(program, plain)
        return fresh_weights(init, key, prog.init(1))

    def pool(self, key: jax.Array, size: int) -> dict:
        """``size`` fresh networks' weights stacked on a leading axis ``[P, ...]``.

        Example:
            >>> import jax
            >>> from agentgraph.meta.config import parse_config
            >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
            >>> jax.tree.map(lambda v: v.shape, make_context(cfg).pool(jax.random.PRNGKey(0), 3))["synapse"]
            {'w': (3, 8)}
        """
        return jax.vmap(self.fresh)(jax.random.split(key, size))

    def start(self, weights: dict, batch_size: int, program: Program | None = None, plain: bool = False) -> dict:
        """A fresh state of ``program`` (default the protocol's, or with ``plain`` the library
        network's) for ``batch_size`` examples with the given weights."""
        prog, _ = self._pick(program, plain)
        return with_weights(prog.init(batch_size), weights)

    def weights(self, state: dict, plain: bool = False) -> dict:
        """The weights held in a state of the protocol's program (``plain``: the library's)."""
        return weights_of(self.base.init if plain else self.net.init, state)

    # -- running ---------------------------------------------------------------------------------
    def params(self, learned: Any, stats: Any) -> dict:
        """What each group of the protocol's network receives: ``protocol.params``."""
        return self.protocol.params(learned, stats, self.net.graph)

    def step(self, program: Program, params: Any, state: dict, batch: dict, stage: Hashable = None,
             phase: Any = None) -> tuple[dict, jax.Array]:
        """One inner step: the protocol's ``step`` hook, or ``program.step``. ``stage`` is the
        static variant (``protocol.stage``), ``phase`` the meta-step count the hook may schedule
        on (``None`` at evaluation)."""
        if self.protocol.step is None:
            return program.step(params, state, batch)
        return self.protocol.step(self, program, params, state, batch, stage, phase)

    def predict(self, state: dict, program: Program | None = None, plain: bool = False) -> jax.Array:
        """Predictions ``[B, n_out]`` after a forward sweep (the network's read-out; ``plain``:
        the library network's)."""
        prog, _ = self._pick(program, plain)
        return read(prog, state, self.base.readout if plain else self.net.readout)

    def held_out(self, program: Program, params: Any, state: dict, data: dict) -> jax.Array:
        """Predictions ``[C, n_out]`` of the network in ``state`` (after inner steps) for held-out
        ``data`` (``{"x": [C, n], "y": [C, n_out]}``): the protocol's ``held_out`` hook, or the
        state's per-agent fields (the weights, …) with fresh per-example fields, run forward."""
        if self.protocol.held_out is not None:
            return self.protocol.held_out(self, program, params, state, data)
        s, _ = program.forward(params, program.resize(state, data["x"].shape[0]), data)
        return self.predict(s, program)

    def check_task(self, sample: Callable[[jax.Array], dict]) -> None:
        """Check, before any compute, that the agents reading external data find their columns
        in the batches ``sample`` (a task sampler) produces: the compiled program clamps an index
        past the end, where the reference interpreter raises (:meth:`Program.check_columns`).

        Raises:
            AgentGraphError: an input or target agent's ``slot`` is past the task's columns.
        """
        shapes = jax.eval_shape(sample, jax.random.PRNGKey(0))["train"]
        columns = {k: v.shape[2] for k, v in shapes.items() if len(v.shape) >= 3}
        for prog in (self.program, self.plain):
            prog.check_columns(columns)

    @property
    def readout_kind(self) -> str:
        """``probs``, ``logits`` or ``values``: what the protocol network's predictions are."""
        if self.net.readout is None:
            raise AgentGraphError("The network has no read-out; the objective and evaluation need one "
                                  "(give your builder's Network a Readout).")
        return self.net.readout.kind


def make_context(cfg: TrainConfig, network: Network | None = None, protocol: Protocol | None = None,
                 program: Program | None = None) -> Context:
    """Build and compile the inner network of ``cfg`` (or ``network``) under its protocol.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
        >>> ctx = make_context(cfg)
        >>> ctx.protocol.name, ctx.template()["synapse"]["w"].shape
        ('mplp', (8,))
    """
    proto = protocol or cfg.make_protocol()
    base = network if network is not None else build_network(cfg, seed=cfg.run.seed)
    net = proto.network(base)
    prog = program if program is not None else compile(net.graph)
    return Context(cfg, proto, base, net, prog, compile(base.graph))


def make_contexts(cfg: TrainConfig) -> list[Context]:
    """The inner networks meta-training cycles through: one, or ``meta.graph_pool`` seeded graphs
    (seeds ``run.seed + i``) compiled into one bucket, so every graph's program has the same
    structure and one compiled meta-step serves them all.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"kind": "random_dag", "sizes": [1, 1],
        ...                     "loss": "l2", "n_hidden": 3}, "meta": {"graph_pool": 2}})
        >>> a, b = make_contexts(cfg)
        >>> jax.tree.structure(a.program) == jax.tree.structure(b.program)
        True
    """
    proto = cfg.make_protocol()
    if cfg.meta.graph_pool == 1:
        return [make_context(cfg, protocol=proto)]
    from agentgraph.compiler import compile_pool

    bases = [build_network(cfg, seed=cfg.run.seed + i) for i in range(cfg.meta.graph_pool)]
    nets = [proto.network(b) for b in bases]
    progs = compile_pool([n.graph for n in nets])
    plains = compile_pool([b.graph for b in bases])
    return [Context(cfg, proto, b, n, p, q) for b, n, p, q in zip(bases, nets, progs, plains)]

