"""Private helpers of the malformed-graph catalogue: the test kinds of message sizes 1 and 2, and
small edits of a :class:`~agentgraph.testing.cases.Case`'s networkx declaration.

Used by :mod:`agentgraph.testing.malformed`, :mod:`agentgraph.testing.graph_defects` and
:mod:`agentgraph.testing.input_defects`; not part of the public API.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any

import networkx as nx
import numpy as np
from hypothesis import strategies as st

from agentgraph.nodes.base import Kind
from agentgraph.testing.cases import Case
from agentgraph.testing.kinds import test_kinds

__all__ = [
    "DROP", "KINDS_1", "KINDS_2", "TYPES", "acyclic_pair", "arrow_attrs", "is_test_agent", "kind_named", "port_of",
    "set_node", "sub_graph", "with_input",
]

TYPES = ("forward", "backward")  # the sweep types defects are drawn for
KINDS_1 = tuple(test_kinds(1))  # the test kinds of a base case (message size 1)
KINDS_2 = tuple(test_kinds(2))  # ... and of size 2, to make size mismatches


def is_test_agent(g: nx.MultiDiGraph, n: Hashable) -> bool:
    """Node ``n`` of ``g`` is of a test kind of message size 1 (not an input)."""
    return g.nodes[n].get("kind") in {k.name for k in KINDS_1}


def kind_named(name: str) -> Kind:
    """The test kind (message size 1 or 2) called ``name``."""
    return {k.name: k for k in (*KINDS_1, *KINDS_2)}[name]


def sub_graph(g: nx.MultiDiGraph, t: str) -> nx.DiGraph:
    """The simple digraph of ``g``'s arrows of type ``t`` (every node kept)."""
    sub = nx.DiGraph()
    sub.add_nodes_from(g.nodes)
    sub.add_edges_from((s, d) for s, d, a in g.edges(data="type") if a == t)
    return sub


def acyclic_pair(draw: Any, g: nx.MultiDiGraph, t: str, agents: Sequence[Hashable]) -> tuple[Hashable, Hashable]:
    """Two distinct agents ``(a, b)`` such that adding ``a -> b`` of type ``t`` keeps ``t`` acyclic."""
    pos = {n: i for i, n in enumerate(nx.topological_sort(sub_graph(g, t)))}
    a, b = draw(st.lists(st.sampled_from(list(agents)), min_size=2, max_size=2, unique=True))
    return (a, b) if pos[a] < pos[b] else (b, a)


def port_of(draw: Any, kind_name: str, t: str) -> str:
    """A port of type ``t`` of the test kind ``kind_name``, drawn."""
    return draw(st.sampled_from(sorted(kind_named(kind_name).ports(t))))


def arrow_attrs(draw: Any, g: nx.MultiDiGraph, s: Hashable, d: Hashable, t: str) -> dict[str, Any]:
    """The attributes of a valid new arrow ``s -> d`` of type ``t`` in ``g`` (port drawn)."""
    return {"type": t, "port": port_of(draw, g.nodes[d]["kind"], t), "src_port": "out"}


def with_input(draw: Any, case: Case) -> tuple[Case, list[Hashable]]:
    """``case`` with at least one input agent; returns it and its input agents in node order."""
    G = case.graph
    inputs = [n for n, k in G.nodes(data="kind") if k == "input"]
    if inputs:
        return case, inputs
    G = G.copy()
    name = ("in", 0)
    G.add_node(name, kind="input", slot=0)
    dst = draw(st.sampled_from([n for n in G.nodes if is_test_agent(G, n)]))
    G.add_edge(name, dst, **arrow_attrs(draw, G, name, dst, "forward"))
    batch = {"x": np.linspace(-1.0, 1.0, case.batch_size)[:, None]}
    return dataclasses.replace(case, graph=G, batch=batch), [name]


DROP = object()  # marks an attribute to remove


def set_node(G: nx.MultiDiGraph, n: Hashable, **changes: Any) -> nx.MultiDiGraph:
    """A copy of ``G`` with node ``n``'s attributes changed (``DROP`` removes one)."""
    H = G.copy()
    attrs = dict(H.nodes[n])
    for k, v in changes.items():
        if v is DROP:
            attrs.pop(k, None)
        else:
            attrs[k] = v
    H.nodes[n].clear()
    H.nodes[n].update(attrs)
    return H
