"""Recording kinds: any kind, plus a per-example record of what its backward received and did.

``Recording(base)`` behaves exactly like ``base`` and additionally stores, in per-example state
fields, each backward port's aggregated message (``in_<port>``, the port's size) and each
per-agent update (``upd_<field>``, before the engine averages it over the inner batch). Wrapping
the library kinds this way turns the gradient protocol into a teacher whose messages and
updates can be read after a step (:mod:`agentgraph.protocols.mplp.imitation` fits MPLP's learners to
them), and lets a user look at the messages any protocol sends.

Example:
    >>> import numpy as np
    >>> from agentgraph import compile, mlp
    >>> from agentgraph.protocols import gradient
    >>> from agentgraph.protocols.recording import recording_kinds
    >>> g = mlp([2, 1], loss="l2", seed=0)
    >>> prog = compile(g.with_kinds(recording_kinds(g.kinds)))
    >>> s, _ = prog.step(gradient.params(g, 0.1), prog.init(3), {"x": np.ones((3, 2)), "y": np.zeros((3, 1))})
    >>> s["synapse"]["in_m"].shape, s["synapse"]["upd_w"].shape   # [agents, batch, ...]
    ((2, 3, 1), (2, 3))
"""

from __future__ import annotations

from collections.abc import Mapping

from agentgraph.errors import AgentGraphError
from agentgraph.nodes.base import Field, Kind

__all__ = ["Recording", "recording_kinds"]


class Recording(Kind):
    """``base`` with its backward inbox and per-example updates recorded (see module docstring).

    Args:
        base: the kind to wrap; must run in the backward sweep to record anything.

    Example:
        >>> from agentgraph.nodes import Synapse
        >>> sorted(Recording(Synapse()).fields)
        ['in_m', 'upd_w', 'w', 'x']
    """

    def __init__(self, base: Kind) -> None:
        if any(base.premaps(sweep) for sweep in ("forward", "backward")):
            raise AgentGraphError(
                f"Kind {base.name!r} premaps its messages, so its inbox cannot be recorded raw; record it with "
                "premapping off (MPLP: protocol.premap: false)."
            )
        self.base = base
        self.name = base.name
        fields = dict(base.fields)
        self.params_fields = tuple(f for f, spec in base.fields.items() if not spec.per_example)
        if base.runs("backward"):
            for p, spec in base.backward_ports.items():
                fields[f"in_{p}"] = Field(shape=(spec.size,), per_example=True)
            for f in self.params_fields:
                fields[f"upd_{f}"] = Field(shape=base.fields[f].shape, per_example=True)
        self.fields = fields
        self.forward_ports = dict(base.forward_ports)
        self.backward_ports = dict(base.backward_ports)
        self.forward_outputs = dict(base.forward_outputs)
        self.backward_outputs = dict(base.backward_outputs)
        self.external = base.external
        self.loss_field = base.loss_field

    def _base_state(self, state: Mapping) -> dict:
        return {f: state[f] for f in self.base.fields}

    def forward(self, params, state, inputs):
        new, out = self.base.forward(params, self._base_state(state), inputs)
        return {**state, **new}, out

    def backward(self, params, state, messages):
        new, outs, update = self.base.backward(params, self._base_state(state), messages)
        rec = {f"in_{p}": messages[p] for p in self.base.backward_ports}
        rec.update({f"upd_{f}": update.get(f, 0.0 * state[f]) for f in self.params_fields})
        return {**state, **new, **rec}, outs, update

    def reflexive(self, params, state):
        return {**state, **self.base.reflexive(params, self._base_state(state))}

    def runs(self, sweep: str) -> bool:
        return self.base.runs(sweep)

    def premaps(self, sweep: str):
        return {}  # the record keeps raw messages

    def _identity(self) -> tuple:
        return (type(self), self.name, self.base._identity())


def recording_kinds(kinds: Mapping[str, Kind]) -> dict[str, Kind]:
    """``{name: Recording(kind)}`` for a kind table (e.g. ``graph.kinds``).

    Example:
        >>> from agentgraph.nodes.registry import default_kinds
        >>> type(recording_kinds(default_kinds())["bias"]).__name__
        'Recording'
    """
    return {name: Recording(k) for name, k in kinds.items()}
