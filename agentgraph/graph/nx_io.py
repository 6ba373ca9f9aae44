"""networkx I/O: an :class:`~agentgraph.graph.AgentGraph` to and from a
``networkx.MultiDiGraph``.

The node and edge attributes are documented in :mod:`agentgraph.graph`. These functions are the
bodies of :meth:`AgentGraph.to_networkx` and :meth:`AgentGraph.from_networkx`; they read and
build the graph through its public methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx

from agentgraph.arrows.schedule import DEFAULT_SCHEDULE, Schedule
from agentgraph.arrows.types import ARROW_TYPES
from agentgraph.errors import AgentGraphError
from agentgraph.nodes.base import Kind

if TYPE_CHECKING:
    from agentgraph.graph.agent_graph import AgentGraph

__all__ = ["from_networkx", "to_networkx"]

NODE_ATTRIBUTES = ("kind", "group", "state", "slot", "ties")
EDGE_ATTRIBUTES = ("type", "port", "src_port", "delay")


def to_networkx(graph: AgentGraph) -> nx.MultiDiGraph:
    """A new plain ``networkx.MultiDiGraph`` of ``graph`` with the documented attributes."""
    a = graph.arrays()
    h = nx.MultiDiGraph()
    if graph.schedule != DEFAULT_SCHEDULE:
        h.graph["schedule"] = graph.schedule
    states: dict[int, dict] = {}
    for rows, f, vals in graph.state_declarations():
        for r, v in zip(rows.tolist(), vals):
            states.setdefault(r, {})[f] = v
    declared_groups = graph.declared_groups()
    ties = graph.ties()
    tied: dict[int, dict[str, str]] = {}
    for r, t in zip(ties.agent.tolist(), ties.tie.tolist()):
        tied.setdefault(r, {})[ties.fields[t]] = ties.names[t]
    reductions = {n: r for n, r in zip(ties.names, ties.reductions) if r != "sum"}
    if reductions:
        h.graph["ties"] = reductions
    for i, name in enumerate(a.names):
        attrs: dict[str, Any] = {"kind": a.kind_names[a.kind[i]]}
        if declared_groups[i] is not None:
            attrs["group"] = declared_groups[i]
        if i in states:
            attrs["state"] = {f: (v.item() if v.ndim == 0 else v) for f, v in states[i].items()}
        if a.slot[i] >= 0:
            attrs["slot"] = int(a.slot[i])
        if i in tied:
            attrs["ties"] = tied[i]
        h.add_node(name, **attrs)
    for e in range(len(a.src)):
        h.add_edge(a.names[a.src[e]], a.names[a.dst[e]], **a.arrow_attrs(e))
    return h


def from_networkx(
    cls: type[AgentGraph], g: nx.Graph, kinds: Iterable[Kind] | Mapping[str, Kind] | None = None
) -> AgentGraph:
    """A ``cls`` built from the directed networkx graph ``g``, validating every node and edge."""
    if not isinstance(g, nx.Graph) or not g.is_directed():
        raise AgentGraphError(
            f"from_networkx needs a directed networkx graph (MultiDiGraph), got {type(g).__name__}."
        )
    schedule = g.graph.get("schedule")
    if schedule is not None and not isinstance(schedule, Schedule):
        raise AgentGraphError(f"g.graph['schedule'] must be an agentgraph.arrows.Schedule, got {type(schedule).__name__}.")
    out = cls(kinds, schedule)
    reductions = g.graph.get("ties", {})
    if not isinstance(reductions, dict):
        raise AgentGraphError(f"g.graph['ties'] must be a mapping {{tie name: reduction}}, got {type(reductions).__name__}.")
    members: dict[str, tuple[str, list]] = {}
    for name, data in g.nodes(data=True):
        if "kind" not in data:
            raise AgentGraphError(f"Node {name!r} has no 'kind' attribute; set g.nodes[{name!r}]['kind'].")
        extra = set(data) - set(NODE_ATTRIBUTES)
        if extra:
            raise AgentGraphError(
                f"Node {name!r} has unknown attribute(s) {sorted(map(str, extra))}; allowed: "
                f"{', '.join(NODE_ATTRIBUTES)}."
            )
        out.add_agent(name, data["kind"], group=data.get("group"), state=data.get("state"), slot=data.get("slot"))
        node_ties = data.get("ties") or {}
        if not isinstance(node_ties, dict):
            raise AgentGraphError(f"Node {name!r}: attribute 'ties' must be a mapping {{field: tie name}}, got {node_ties!r}.")
        for f, tname in node_ties.items():
            if tname in members and members[tname][0] != f:
                other = members[tname][1][0]
                raise AgentGraphError(
                    f"Tie {tname!r} joins field {members[tname][0]!r} of agent {other!r} and field {f!r} of agent "
                    f"{name!r}: a tie shares one field (of one shape); declare a separate tie for each field.")
            members.setdefault(tname, (f, []))[1].append(name)
    for tname, (f, agents) in members.items():
        out.tie(agents, f, name=tname, reduction=reductions.get(tname, "sum"))
    edges = g.edges(keys=True, data=True) if g.is_multigraph() else ((s, d, 0, a) for s, d, a in g.edges(data=True))
    for s, d, _, data in edges:
        extra = set(data) - set(EDGE_ATTRIBUTES)
        if extra:
            raise AgentGraphError(
                f"Arrow {s!r} -> {d!r} has unknown attribute(s) {sorted(map(str, extra))}; "
                f"allowed: {', '.join(EDGE_ATTRIBUTES)}."
            )
        if "type" not in data:
            raise AgentGraphError(
                f"Arrow {s!r} -> {d!r} has no 'type' attribute; set it to one of {ARROW_TYPES}."
            )
        out.add_arrow(s, d, data["type"], port=data.get("port"), src_port=data.get("src_port", "out"),
                      delay=data.get("delay", False))
    return out
