"""Tied parameters: groups of agents of one kind that share one per-agent field.

A *tie* is a named set of agents of one kind whose per-agent ``field`` holds one shared value —
a convolution kernel's weight used at every position, a recurrent weight used at every time
step. Each member keeps its own per-example state and computes its own update; at the end of
every phase the shared value moves by the tie's *reduction* of the members' changes:

* ``"sum"`` (default): ``shared += Σ_members Δ_member`` — the gradient of a shared weight is the
  sum of the gradients of its uses;
* ``"mean"``: ``shared += mean_members Δ_member``.

``Δ_member`` is what the phase rule of :class:`~agentgraph.nodes.Kind` would have done to an
untied agent's field (batch mean of the returned value's change plus batch mean of the update).
Members see the shared value as it was at the start of the phase; the reference interpreter
keeps one copy per member and joins them after each phase, the compiler stores the value once
(:mod:`agentgraph.compiler.plan`, ``TiePlan``).

Ties are declared with :meth:`AgentGraph.tie <agentgraph.graph.AgentGraph.tie>` and read back
as :class:`TieArrays` (jraph style) from :meth:`AgentGraph.ties`. In networkx a member carries
the node attribute ``ties = {field: tie name}``; a tie whose reduction is not ``"sum"`` is
listed in the graph attribute ``ties = {tie name: reduction}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from agentgraph.errors import AgentGraphError

if TYPE_CHECKING:
    from agentgraph.graph.agent_graph import AgentGraph
    from agentgraph.graph.arrays import GraphArrays
    from agentgraph.graph.columns import Columns

__all__ = ["REDUCTIONS", "TieArrays", "assemble_ties", "check_ties", "declare_tie"]

#: How a tie's shared field moves by its members' changes.
REDUCTIONS = ("sum", "mean")


@dataclasses.dataclass(frozen=True)
class TieArrays:
    """A graph's ties as plain arrays. ``T`` ties, ``M`` memberships.

    Attributes:
        names: ``[T]`` tie names, in order of first declaration.
        fields: ``[T]`` the field each tie shares.
        reductions: ``[T]`` ``"sum"`` or ``"mean"``.
        agent: ``int64 [M]`` member agent indices (into the graph's declaration order), sorted
            by tie then agent.
        tie: ``int64 [M]`` the tie of each membership (into ``names``), ascending.

    Example:
        >>> from agentgraph import AgentGraph
        >>> g = AgentGraph(); _ = g.add_agents(["a", "b", "c"], "synapse")
        >>> _ = g.tie(["a", "c"], "w", name="k")
        >>> t = g.ties(); t.names, t.agent.tolist(), t.members(0).tolist()
        (('k',), [0, 2], [0, 2])
    """

    names: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    reductions: tuple[str, ...] = ()
    agent: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    tie: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def offsets(self) -> np.ndarray:
        """``int64 [T + 1]``: tie ``t``'s memberships are ``offsets[t]:offsets[t + 1]``."""
        return np.searchsorted(self.tie, np.arange(len(self.names) + 1))

    def members(self, t: int) -> np.ndarray:
        """``int64 [m]``: the agents of tie ``t``, ascending."""
        o = self.offsets
        return self.agent[o[t]:o[t + 1]]

    def of_agent(self, n_agents: int, field: str) -> np.ndarray:
        """``int64 [n_agents]``: each agent's tie of ``field`` (``-1``: untied).

        Example:
            >>> from agentgraph import AgentGraph
            >>> g = AgentGraph(); _ = g.add_agents(["a", "b", "c"], "synapse")
            >>> _ = g.tie(["a", "c"], "w")
            >>> g.ties().of_agent(3, "w").tolist()
            [0, -1, 0]
        """
        out = np.full(n_agents, -1, np.int64)
        on = np.array([f == field for f in self.fields], bool)
        m = on[self.tie] if len(self.tie) else np.zeros(0, bool)
        out[self.agent[m]] = self.tie[m]
        return out


def declare_tie(graph: AgentGraph, columns: Columns, agents: Iterable[Hashable] | np.ndarray, field: str,
                name: str | None, reduction: str, value: Any, by_index: bool) -> str:
    """Record a tie of ``agents`` on ``field`` into ``columns``, the store of ``graph`` (the body
    of :meth:`AgentGraph.tie`); returns the tie's name. Checked fully by
    :func:`check_ties` when the graph is validated."""
    if not isinstance(field, str) or not field:
        raise AgentGraphError(f"tie: field must be a field name (str), got {field!r}.")
    if reduction not in REDUCTIONS:
        raise AgentGraphError(f"tie: reduction {reduction!r} is not one of {REDUCTIONS}.")
    if name is not None and (not isinstance(name, str) or not name):
        raise AgentGraphError(f"tie: name must be a non-empty str, got {name!r}.")
    if by_index:
        rows = np.asarray(agents, np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(columns)):
            raise AgentGraphError("tie: agent index out of range.")
    else:
        names = list(agents)
        rows = columns.indices(names)
        if (rows < 0).any():
            raise AgentGraphError(f"tie: agent {names[int(np.argmax(rows < 0))]!r} does not exist; add it first.")
    if len(rows) == 0:
        raise AgentGraphError("tie: no agents given; a tie needs at least one member.")
    u, count = np.unique(rows, return_counts=True)
    if (count > 1).any():
        dup = u[count > 1][0]
        raise AgentGraphError(f"tie: agent {columns.names[dup]!r} is listed twice.")
    name = columns.add_tie(name, field, rows, reduction)
    if value is not None:
        try:
            v = np.asarray(value, np.float64)
        except (TypeError, ValueError) as e:
            raise AgentGraphError(f"tie {name!r}: value is not numeric ({e}).") from None
        columns.add_state(rows, field, np.broadcast_to(v, (len(rows), *v.shape)).copy())
    return name


def assemble_ties(columns: Columns) -> TieArrays:
    """The :class:`TieArrays` of a graph's ``columns`` (uncached; see :meth:`AgentGraph.ties`)."""
    decls = columns.tie_declarations()
    if not decls:
        return TieArrays()
    names = list(dict.fromkeys(n for n, _, _ in decls))
    code = {n: i for i, n in enumerate(names)}
    fields = {n: f for n, f, _ in reversed(decls)}  # the first declaration's field (check_ties compares)
    agent = np.concatenate([rows for _, _, rows in decls])
    tie = np.concatenate([np.full(len(rows), code[n], np.int64) for n, _, rows in decls])
    order = np.lexsort((agent, tie))
    return TieArrays(tuple(names), tuple(fields[n] for n in names), tuple(columns.tie_reduction(n) for n in names),
                     agent[order], tie[order])


def check_ties(graph: AgentGraph, a: GraphArrays) -> None:
    """Every tie joins agents of one kind on one per-agent field, no agent's field is in two
    ties, and the members' initial values agree. Vectorised over memberships.

    Raises:
        AgentGraphError: naming both agents (or the agent and both ties) and how to fix it.
    """
    names = a.names
    first: dict[str, tuple[str, int]] = {}
    for tname, f, rows in graph.tie_declarations():  # one field per tie
        if tname in first and first[tname][0] != f:
            f0, r0 = first[tname]
            raise AgentGraphError(
                f"Tie {tname!r} joins field {f0!r} of agent {names[r0]!r} and field {f!r} of agent {names[rows[0]]!r}: "
                "a tie shares one field (of one shape); declare a separate tie for each field.")
        first.setdefault(tname, (f, int(rows[0])))
    ties = graph.ties()
    if not len(ties):
        return
    lead = ties.agent[ties.offsets[:-1]]  # each tie's first member
    kind = a.kind[ties.agent]
    bad = np.flatnonzero(kind != a.kind[lead][ties.tie])
    if len(bad):
        i, j = lead[ties.tie[bad[0]]], ties.agent[bad[0]]
        raise AgentGraphError(
            f"Tie {ties.names[ties.tie[bad[0]]]!r} joins agent {names[i]!r} (kind {a.kind_names[a.kind[i]]!r}) and "
            f"agent {names[j]!r} (kind {a.kind_names[a.kind[j]]!r}): tied agents must be of one kind; tie each "
            "kind's agents separately.")
    fcode = {f: i for i, f in enumerate(dict.fromkeys(ties.fields))}
    tie_f = np.array([fcode[f] for f in ties.fields], np.int64)
    for k, fc in sorted({(int(a.kind[lead[t]]), int(tie_f[t])) for t in range(len(ties))}):
        f = next(f for f, c in fcode.items() if c == fc)
        kd = graph.kinds[a.kind_names[k]]
        spec = kd.fields.get(f)
        if spec is None or spec.per_example:
            t = next(t for t in range(len(ties)) if a.kind[lead[t]] == k and tie_f[t] == fc)
            what = "has no field" if spec is None else "has a per-example field"
            raise AgentGraphError(
                f"Tie {ties.names[t]!r}: kind {kd.name!r} (agent {names[lead[t]]!r}) {what} {f!r}; a tie shares a "
                f"per-agent field, one of {sorted(x for x, s in kd.fields.items() if not s.per_example)}.")
    key = ties.agent * len(fcode) + tie_f[ties.tie]
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(key[order][1:] == key[order][:-1])
    if len(dup):
        p, q = order[dup[0]], order[dup[0] + 1]
        raise AgentGraphError(
            f"Agent {names[ties.agent[p]]!r}: field {ties.fields[ties.tie[p]]!r} is in two ties, "
            f"{ties.names[ties.tie[p]]!r} and {ties.names[ties.tie[q]]!r}; an agent's field belongs to at most one "
            "tie (merge them into one).")
    for k in np.unique(a.kind[lead]):
        agents, vals = graph.initial_states(a.kind_names[k])
        for f in {ties.fields[t] for t in range(len(ties)) if a.kind[lead[t]] == k}:
            m = (kind == k) & (tie_f[ties.tie] == fcode[f])
            mem = ties.agent[m]
            v = vals[f][np.searchsorted(agents, mem)].reshape(len(mem), -1)
            v0 = vals[f][np.searchsorted(agents, lead[ties.tie[m]])].reshape(len(mem), -1)
            bad = np.flatnonzero(np.any(v != v0, axis=1))
            if len(bad):
                b = bad[0]
                i, j = lead[ties.tie[m][b]], mem[b]
                raise AgentGraphError(
                    f"Tie {ties.names[ties.tie[m][b]]!r}: agents {names[i]!r} and {names[j]!r} start with different "
                    f"values of the shared field {f!r} ({v0[b].tolist()} vs {v[b].tolist()}); declare one value for "
                    "every member (graph.tie(..., value=...)).")
