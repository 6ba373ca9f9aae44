"""Compiled program against the reference interpreter: the check every new kind, graph or lowering
should pass (DESIGN.md §5).

* :func:`state_deviation` — the largest absolute difference between two states in the
  interpreter's layout (``{agent: {field: array}}``, delayed messages under ``"@delayed"``),
  skipping ``scratch`` fields (:class:`~agentgraph.nodes.Field`: unspecified between steps).
* :func:`compare` — run ``steps`` inner steps of a graph in the interpreter and compiled (float64
  by default) from the same state, and report the loss and state deviations of every step.

Example:
    >>> import numpy as np
    >>> from agentgraph.builders import mlp
    >>> from agentgraph.protocols import gradient
    >>> g = mlp([3, 4, 2], activation="tanh", loss="l2")
    >>> b = {"x": np.ones((2, 3)), "y": np.zeros((2, 2))}
    >>> c = compare(g, gradient.params(g, 0.1), [b, b])
    >>> c.worst < 1e-10, len(c.loss)
    (True, 2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from agentgraph.arrows.schedule import DELAYED
from agentgraph.compiler import compile
from agentgraph.graph import AgentGraph
from agentgraph.interpreter import init_state, step

__all__ = ["Comparison", "compare", "state_deviation"]


def state_deviation(graph: AgentGraph, got: Mapping[Hashable, Any], want: Mapping[Hashable, Any]) -> float:
    """Largest ``|got − want|`` over every agent's non-scratch fields and the messages in flight
    that ``want`` holds (``got`` may hold more, e.g. :meth:`~agentgraph.compiler.Program.to_agents`
    lists every output of a delayed type's size).

    Example:
        >>> from agentgraph.builders import mlp
        >>> g = mlp([2, 1], loss="l2"); s = init_state(g, 1)
        >>> state_deviation(g, s, s)
        0.0
    """
    worst = 0.0
    for a, fields in want.items():
        if a == DELAYED:
            continue
        kind = graph.kind_of(a)
        for f, v in fields.items():
            if kind.fields[f].scratch:
                continue
            worst = max(worst, float(np.max(np.abs(np.asarray(got[a][f], np.float64) - np.asarray(v)), initial=0.0)))
    for key, v in want.get(DELAYED, {}).items():
        worst = max(worst, float(np.max(np.abs(np.asarray(got[DELAYED][key], np.float64) - np.asarray(v)), initial=0.0)))
    return worst


@dataclasses.dataclass(frozen=True)
class Comparison:
    """What :func:`compare` measured, per step: ``loss[t]`` and ``state[t]`` are the absolute
    deviations of step ``t``'s loss and state (:func:`state_deviation`)."""

    loss: tuple[float, ...]
    state: tuple[float, ...]

    @property
    def worst(self) -> float:
        """The largest deviation of any step."""
        return max((*self.loss, *self.state), default=0.0)


def compare(graph: AgentGraph, params: Mapping[str, Any] | None, batches: Sequence[Mapping[str, Any]], *,
            state: Mapping[Hashable, Any] | None = None, dense: bool = True, linear: bool = True,
            x64: bool = True) -> Comparison:
    """Run ``len(batches)`` inner steps of ``graph`` in the interpreter and compiled, from the same
    state, and measure how far they drift apart.

    Args:
        graph: a valid graph.
        params: ``{group: pytree}`` for both.
        batches: one batch per step (``{key: [B, n]}``).
        state: the starting state in the interpreter's layout (default ``init_state(graph, B)``).
        dense, linear: the compiler's options (:func:`~agentgraph.compile`).
        x64: compile in float64 (the interpreter always runs float64).

    Returns:
        :class:`Comparison`.

    Example:
        >>> import numpy as np
        >>> from agentgraph.builders import random_dag
        >>> from agentgraph.protocols import gradient
        >>> g = random_dag(3, 5, 2, seed=1)
        >>> b = {"x": np.ones((2, 3)), "y": np.zeros((2, 2))}
        >>> compare(g, gradient.params(g, 0.1), [b], dense=False).worst < 1e-10
        True
    """
    B = int(np.shape(next(iter(batches[0].values())))[0]) if batches and batches[0] else 1
    s_int = dict(init_state(graph, B) if state is None else state)
    loss_dev, state_dev = [], []
    with jax.enable_x64(x64):
        prog = compile(graph, dense=dense, linear=linear, dtype=np.float64 if x64 else None)
        s_c = prog.from_agents(s_int)
        for b in batches:
            r = step(graph, s_int, params, b, check_finite=False)
            s_c, loss = prog.step(params, s_c, b)
            s_int = r.state
            loss_dev.append(abs(float(loss) - r.loss))
            state_dev.append(state_deviation(graph, prog.to_agents(s_c), s_int))
    return Comparison(tuple(loss_dev), tuple(state_dev))
