"""One inner network family, compiled: what a protocol's hooks and meta-training both work on.

An :class:`Inner` holds the library network (``base``: library kinds, for SGD/Adam baselines and
teachers) and the protocol's network (``net``: :attr:`Protocol.network` of ``base``), both
compiled, and the functions that draw fresh weights, build a state holding given weights, read
the weights back and read predictions. It knows no config and no protocol: it is exactly what a
protocol's optional hooks (calibration, warm start, custom step, held-out scoring) receive, so a
hook can use the networks but cannot read meta-training's settings.

Example:
    >>> import jax
    >>> from agentgraph.builders import mlp_network
    >>> base = mlp_network([3, 2], loss="l2")
    >>> inner = Inner.build(base, base)
    >>> w = inner.fresh(jax.random.PRNGKey(0))
    >>> inner.start(w, batch_size=4)["synapse"]["w"].shape
    (6,)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

import jax

from agentgraph.compiler import Program, compile
from agentgraph.errors import AgentGraphError
from agentgraph.network import Network, fresh_weights, read, weights_of, with_weights

__all__ = ["Inner"]


@dataclasses.dataclass(frozen=True, eq=False)
class Inner:
    """One inner network family compiled twice (module docstring).

    Attributes:
        base: the library-kind network (SGD/Adam baselines, teachers).
        net: the protocol's network.
        program: ``net.graph`` compiled.
        plain: ``base.graph`` compiled (the gradient protocol's program).
        cache: compiled helper programs a protocol builds once per network (:meth:`memo`).
    """

    base: Network
    net: Network
    program: Program
    plain: Program
    cache: dict = dataclasses.field(default_factory=dict)

    @staticmethod
    def build(base: Network, net: Network, program: Program | None = None) -> Inner:
        """Compile ``net`` (unless ``program`` is given) and ``base``.

        Example:
            >>> from agentgraph.builders import mlp_network
            >>> inner = Inner.build(mlp_network([2, 2]), mlp_network([2, 2]))
            >>> sorted(inner.template()["synapse"]), inner.template(plain=True)["bias"]["b"].shape
            (['w'], (2,))
        """
        return Inner(base, net, program if program is not None else compile(net.graph), compile(base.graph))

    # -- helpers a protocol builds once ---------------------------------------------------------
    def memo(self, name: Hashable, build: Callable[[], Any]) -> Any:
        """``build()`` once per inner network (e.g. a protocol's recording program), then cached."""
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
            >>> from agentgraph.builders import mlp_network
            >>> inner = Inner.build(mlp_network([1, 4, 1], loss="l2"), mlp_network([1, 4, 1], loss="l2"))
            >>> jax.tree.map(lambda v: v.shape, inner.pool(jax.random.PRNGKey(0), 3))["synapse"]
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

    def predict(self, state: dict, program: Program | None = None, plain: bool = False) -> jax.Array:
        """Predictions ``[B, n_out]`` after a forward sweep (the network's read-out; ``plain``:
        the library network's)."""
        prog, _ = self._pick(program, plain)
        return read(prog, state, self.base.readout if plain else self.net.readout)

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


