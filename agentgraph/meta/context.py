"""From a config to what meta-training works on: the network, the protocol, compiled programs.

A :class:`Context` bundles one inner network under one protocol: the library network (``base``,
for SGD/Adam baselines and teachers), the protocol's network (``net``), both compiled, and the
functions every part of meta-training shares (fresh weights, a state holding given weights, one
inner step, predictions). It names no kind and asks no protocol what it is: everything
protocol-specific goes through the :class:`~agentgraph.protocols.base.Protocol` contract.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

import jax

from agentgraph.compiler import Program
from agentgraph.inner import Inner
from agentgraph.meta.config import TrainConfig
from agentgraph.network import Network
from agentgraph.protocols.base import Protocol
from agentgraph.unroll import Unroll

__all__ = ["Context", "build_network", "make_context", "make_contexts"]


def build_network(cfg: TrainConfig, seed: int = 0) -> Network:
    """The inner network (library kinds, or your builder's) a config describes: its ``net:``
    model's :meth:`~agentgraph.meta.net_config.NetConfig.build`.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
        >>> build_network(cfg).graph.number_of_agents()
        20
    """
    return cfg.net.build(seed)


#: What a :class:`Context` reads from its :class:`~agentgraph.inner.Inner`.
_FROM_INNER = frozenset({"base", "net", "program", "plain", "template", "fresh", "pool", "start", "weights", "predict",
                         "memo", "check_task", "readout_kind"})


@dataclasses.dataclass(frozen=True, eq=False)
class Context:
    """One inner network under one protocol, as meta-training sees it (module docstring).

    Attributes:
        cfg: the config.
        protocol: the learning rule.
        inner: the compiled networks (:class:`~agentgraph.inner.Inner`): what the protocol's
            hooks receive — never the config.

    The inner network's accessors (``base``, ``net``, ``program``, ``plain``, ``template``,
    ``fresh``, ``pool``, ``start``, ``weights``, ``predict``, ``memo``, ``check_task``,
    ``readout_kind``) are :attr:`inner`'s.
    """

    cfg: TrainConfig
    protocol: Protocol
    inner: Inner

    def __getattr__(self, name: str) -> Any:  # the inner network's accessors (class docstring)
        if name in _FROM_INNER:
            return getattr(self.inner, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def unroll(self) -> Unroll:
        """How inner steps are unrolled (``meta.remat``, ``meta.inner_loop``)."""
        return Unroll(self.cfg.meta.remat, self.cfg.meta.inner_loop)

    # -- running ---------------------------------------------------------------------------------
    def params(self, learned: Any, stats: Any) -> dict:
        """What each group of the protocol's network receives: ``protocol.params``."""
        return self.protocol.params(learned, stats, self.net.graph)

    def step(self, program: Program, params: Any, state: dict, batch: dict, stage: Hashable = None,
             phase: Any = None) -> tuple[dict, jax.Array]:
        """One inner step: the protocol's :meth:`~agentgraph.protocols.base.Protocol.inner_step`
        (its ``stepping`` hook, or ``program.step``). ``stage`` is the static variant
        (``protocol.stage``), ``phase`` the meta-step count the hook may schedule on (``None`` at
        evaluation)."""
        return self.protocol.inner_step(self.inner, program, params, state, batch, stage, phase)

    def held_out(self, program: Program, params: Any, state: dict, data: dict) -> jax.Array:
        """Predictions ``[C, n_out]`` of the network in ``state`` (after inner steps) for held-out
        ``data`` (``{"x": [C, n], "y": [C, n_out]}``): the protocol's ``held_out`` hook, or the
        state's per-agent fields (the weights, …) with fresh per-example fields, run forward."""
        if self.protocol.held_out is not None:
            return self.protocol.held_out(self.inner, program, params, state, data)
        s, _ = program.forward(params, program.resize(state, data["x"].shape[0]), data)
        return self.predict(s, program)


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
    return Context(cfg, proto, Inner.build(base, net, program))


def make_contexts(cfg: TrainConfig) -> list[Context]:
    """The inner networks meta-training cycles through: one, or ``net.pool`` seeded graphs
    (seeds ``run.seed + i``) compiled into one bucket, so every graph's program has the same
    structure and one compiled meta-step serves them all.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"kind": "random_dag", "sizes": [1, 1],
        ...                     "loss": "l2", "n_hidden": 3, "pool": 2}})
        >>> a, b = make_contexts(cfg)
        >>> jax.tree.structure(a.program) == jax.tree.structure(b.program)
        True
    """
    proto = cfg.make_protocol()
    if cfg.net.graphs == 1:
        return [make_context(cfg, protocol=proto)]
    from agentgraph.compiler import compile_pool

    bases = [build_network(cfg, seed=cfg.run.seed + i) for i in range(cfg.net.graphs)]
    nets = [proto.network(b) for b in bases]
    progs = compile_pool([n.graph for n in nets])
    plains = compile_pool([b.graph for b in bases])
    return [Context(cfg, proto, Inner(b, n, p, q)) for b, n, p, q in zip(bases, nets, progs, plains)]

