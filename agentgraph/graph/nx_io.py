"""networkx I/O: an :class:`~agentgraph.graph.AgentGraph` to and from a
``networkx.MultiDiGraph``, and renaming its agents.

The node and edge attributes are documented in :mod:`agentgraph.graph`. These functions are the
bodies of :meth:`AgentGraph.to_networkx`, :meth:`AgentGraph.from_networkx` and
:meth:`AgentGraph.relabel`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx

from agentgraph.arrows.schedule import DEFAULT_SCHEDULE, Schedule
from agentgraph.arrows.types import ARROW_TYPES
from agentgraph.errors import AgentGraphError
from agentgraph.nodes.base import Kind

if TYPE_CHECKING:
    from agentgraph.graph.agent_graph import AgentGraph

__all__ = ["from_networkx", "relabel", "to_networkx"]

NODE_ATTRIBUTES = ("kind", "group", "state", "slot")
EDGE_ATTRIBUTES = ("type", "port", "src_port", "delay")


def to_networkx(graph: AgentGraph) -> nx.MultiDiGraph:
    """A new plain ``networkx.MultiDiGraph`` of ``graph`` with the documented attributes."""
    a = graph.arrays()
    h = nx.MultiDiGraph()
    if graph.schedule != DEFAULT_SCHEDULE:
        h.graph["schedule"] = graph.schedule
    states: dict[int, dict] = {}
    for rows, f, vals in graph._state_decls:
        for r, v in zip(rows.tolist(), vals):
            states.setdefault(r, {})[f] = v
    declared_group = graph._declared_groups()
    for i, name in enumerate(graph._names):
        attrs: dict[str, Any] = {"kind": a.kind_names[a.kind[i]]}
        if declared_group[i] >= 0:
            attrs["group"] = graph._groups_i.items[declared_group[i]]
        if i in states:
            attrs["state"] = {f: (v.item() if v.ndim == 0 else v) for f, v in states[i].items()}
        if a.slot[i] >= 0:
            attrs["slot"] = int(a.slot[i])
        h.add_node(name, **attrs)
    names = graph._names
    for e in range(len(a.src)):
        attrs = {"type": a.type_names[a.type[e]],
                 "port": None if a.port[e] < 0 else a.strings[a.port[e]],
                 "src_port": a.strings[a.src_port[e]]}
        if a.delay[e]:
            attrs["delay"] = True
        h.add_edge(names[a.src[e]], names[a.dst[e]], **attrs)
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


def relabel(graph: AgentGraph, mapping: Mapping[Hashable, Hashable]) -> AgentGraph:
    """A copy of ``graph`` with agents renamed by ``mapping`` (names not in it are kept)."""
    out = graph.copy()
    out._names = [mapping.get(n, n) for n in graph._names]
    out._pos = {n: i for i, n in enumerate(out._names)}
    if len(out._pos) != len(out._names):
        raise AgentGraphError("relabel: the mapping merges two agents into one name.")
    out._touch()
    return out
