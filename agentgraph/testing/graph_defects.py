"""The malformed-graph catalogue, part 1: defects in a graph's declaration — cycles, unknown
kinds, bad arrow ends, message size mismatches, bad initial states, misused reflexive arrows,
bad slots, garbage attribute values, undeclared or duplicate agents, bad kind objects, and
something that is not a directed graph.

Each builder ``(draw, base, variant) -> Malformed`` breaks one thing in a valid ``base``
:class:`~agentgraph.testing.cases.Case`; :data:`GRAPH_DEFECTS` lists them with their variants, and
:func:`~agentgraph.testing.malformed.malformed_graphs` draws from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import networkx as nx
import numpy as np
from hypothesis import strategies as st

from agentgraph.arrows.ports import Port
from agentgraph.nodes.base import Kind
from agentgraph.testing._case_edits import (
    DROP,
    KINDS_2,
    TYPES,
    acyclic_pair,
    arrow_attrs,
    is_test_agent,
    kind_named,
    port_of,
    set_node,
    sub_graph,
    with_input,
)
from agentgraph.testing.cases import VIAS, Case, Malformed
from agentgraph.testing.kinds import Probe

__all__ = ["GRAPH_DEFECTS"]


def _cycle(draw: Any, base: Case, t: str, variant: str) -> Malformed:
    G = base.graph.copy()
    agents = [n for n in G.nodes if is_test_agent(G, n)]
    if variant == "self-loop":
        a = draw(st.sampled_from(agents))
        G.add_edge(a, a, **arrow_attrs(draw, G, a, a, t))
        return Malformed(
            f"{t}_cycle", variant, f"{t} arrow from {a!r} to itself", dataclasses.replace(base, graph=G),
            base, (repr(a),),
        )
    sub = sub_graph(G, t).subgraph(agents)
    closable = [(v, u) for u, v in sub.edges]  # adding v -> u closes a cycle through u -> v
    if closable:
        a, b = draw(st.sampled_from(closable))
        G.add_edge(a, b, **arrow_attrs(draw, G, a, b, t))
        how = f"the new arrow {a!r} -> {b!r} closes a cycle"
    else:
        a, b = draw(st.lists(st.sampled_from(agents), min_size=2, max_size=2, unique=True))
        G.add_edge(a, b, **arrow_attrs(draw, G, a, b, t))
        G.add_edge(b, a, **arrow_attrs(draw, G, b, a, t))
        how = f"new arrows {a!r} -> {b!r} -> {a!r} form a cycle"
    return Malformed(
        f"{t}_cycle", variant, f"{t} arrows: {how}", dataclasses.replace(base, graph=G), base, (repr(a), repr(b)),
    )


def _forward_cycle(draw: Any, base: Case, variant: str) -> Malformed:
    return _cycle(draw, base, "forward", variant)


def _backward_cycle(draw: Any, base: Case, variant: str) -> Malformed:
    return _cycle(draw, base, "backward", variant)


def _unknown_kind(draw: Any, base: Case, variant: str) -> Malformed:
    n = draw(st.sampled_from(list(base.graph.nodes)))
    kind = {"misspelt": "Probe_sum_d1", "other size": "probe_sum_d3", "empty": "", "trailing space":
            "probe_sum_d1 ", "made up": "no_such_kind"}[variant]
    G = set_node(base.graph, n, kind=kind)
    return Malformed(
        "unknown_kind", variant, f"agent {n!r} has unknown kind {kind!r}", dataclasses.replace(base, graph=G),
        base, (repr(n),),
    )


def _bad_arrow_end(draw: Any, base: Case, variant: str) -> Malformed:
    """A new arrow into a port the destination lacks, or from an output the source lacks."""
    base, inputs = with_input(draw, base) if "input" in variant else (base, [])
    G = base.graph.copy()
    t = draw(st.sampled_from(TYPES))
    agents = [n for n in G.nodes if is_test_agent(G, n)]
    a, b = acyclic_pair(draw, G, t, agents)
    attrs = arrow_attrs(draw, G, a, b, t)
    if variant == "port":
        attrs["port"] = draw(st.sampled_from(["nope", "X", "in_x", "", "out"]))
    elif variant == "src_port":
        attrs["src_port"] = draw(st.sampled_from(["nope", "x", "m", ""]))
    elif variant == "backward into input":  # inputs have no backward ports
        b = draw(st.sampled_from(inputs))
        attrs = {"type": "backward", "port": "m", "src_port": "out"}
    else:  # backward out of an input: inputs send nothing backward
        a = draw(st.sampled_from(inputs))
        attrs = {"type": "backward", "port": port_of(draw, G.nodes[b]["kind"], "backward"), "src_port": "out"}
    G.add_edge(a, b, **attrs)
    return Malformed(
        "bad_arrow_end", variant, f"arrow {a!r} -> {b!r} {attrs}", dataclasses.replace(base, graph=G), base,
        (repr(a), repr(b)),
    )


def _size_mismatch(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph.copy()
    new = ("new", 0)
    G.add_node(new, kind=draw(st.sampled_from(KINDS_2)).name)
    t, direction = variant.split()
    other = draw(st.sampled_from([n for n in base.graph.nodes if is_test_agent(G, n)]))
    a, b = (new, other) if direction == "from-size-2" else (other, new)
    G.add_edge(a, b, **arrow_attrs(draw, G, a, b, t))
    return Malformed(
        "size_mismatch", variant, f"{t} arrow {a!r} -> {b!r} joins message sizes 1 and 2",
        dataclasses.replace(base, graph=G), base, (repr(a), repr(b)),
    )


def _bad_state(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph
    n = draw(st.sampled_from([x for x in G.nodes if is_test_agent(G, x)]))
    kind = kind_named(G.nodes[n]["kind"])
    f = draw(st.sampled_from(sorted(kind.fields)))
    shape = kind.fields[f].shape
    state = dict(G.nodes[n].get("state") or {})
    if variant == "shape":
        state[f] = np.zeros(draw(st.sampled_from([(*shape, 1), (2, *shape), (*shape, 3)])))
    elif variant == "unknown field":
        f = draw(st.sampled_from(["bogus", "in_zz", "W"]))
        state[f] = 0.0
    elif variant in ("nan", "inf"):
        v = np.zeros(shape)
        v.flat[0] = np.nan if variant == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
        state[f] = v
    else:
        state[f] = draw(st.sampled_from(["abc", [[1.0], [2.0, 3.0]], {"a": 1}]))
    H = set_node(G, n, state=state)
    return Malformed(
        "bad_state", variant, f"agent {n!r} declares a bad value for field {f!r}", dataclasses.replace(base, graph=H),
        base, (repr(n),), bulk_culprits=None if variant in ("nan", "inf") else (repr(f),),
    )


def _bad_reflexive(draw: Any, base: Case, variant: str) -> Malformed:
    if variant == "kind without reflexive":
        base, inputs = with_input(draw, base)
        G = base.graph.copy()
        a = b = draw(st.sampled_from(inputs))
    else:
        G = base.graph.copy()
        agents = [n for n in G.nodes if is_test_agent(G, n)]
        a, b = draw(st.lists(st.sampled_from(agents), min_size=2, max_size=2, unique=True))
    G.add_edge(a, b, type="reflexive", port=None, src_port="out")
    return Malformed(
        "bad_reflexive", variant, f"reflexive arrow {a!r} -> {b!r}", dataclasses.replace(base, graph=G), base,
        (repr(a), repr(b)),
    )


def _bad_slot(draw: Any, base: Case, variant: str) -> Malformed:
    base, inputs = with_input(draw, base)
    G = base.graph
    n = draw(st.sampled_from(inputs))
    culprits = (repr(n),)
    if variant == "missing":
        H = set_node(G, n, slot=DROP)
    elif variant == "negative":
        H = set_node(G, n, slot=draw(st.sampled_from([-1, -7])))
    elif variant.startswith("slot="):
        H = set_node(G, n, slot={"slot=str": "abc", "slot=float": 0.5, "slot=list": [0]}[variant])
    elif variant == "duplicate":
        H = G.copy()
        other = ("in", 99)
        H.add_node(other, kind="input", slot=G.nodes[n]["slot"])
        culprits = (repr(n), repr(other))
    elif variant == "out of range":
        H = set_node(G, n, slot=int(np.shape(base.batch["x"])[1]) + draw(st.integers(0, 3)))
    else:  # a slot on an agent whose kind reads no data
        n = draw(st.sampled_from([x for x in G.nodes if is_test_agent(G, x)]))
        H = set_node(G, n, slot=0)
        culprits = (repr(n),)
    return Malformed(
        "bad_slot", variant, f"agent {n!r}: {variant} slot", dataclasses.replace(base, graph=H), base, culprits,
    )


_GARBAGE_NODE: dict[str, tuple[str, Any]] = {
    "kind=int": ("kind", 5), "kind=None": ("kind", None), "kind=list": ("kind", ["probe_sum_d1"]),
    "no kind": ("kind", DROP), "group=int": ("group", 7), "group=list": ("group", ["g0"]),
    "state=str": ("state", "code"), "state=int": ("state", 5), "state=list": ("state", [1.0, 2.0]),
    "extra attribute": ("colour", "red"),
}


def _garbage_node(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph
    n = draw(st.sampled_from([x for x in G.nodes if is_test_agent(G, x)]))
    attr, value = _GARBAGE_NODE[variant]
    vias = ("networkx",) if variant in ("no kind", "extra attribute") else VIAS  # not expressible in Python
    H = set_node(G, n, **{attr: value})
    return Malformed(
        "garbage_node", variant, f"agent {n!r} has attribute {attr}={value!r}", dataclasses.replace(base, graph=H),
        base, (repr(n),), vias,
    )


_GARBAGE_ARROW: dict[str, tuple[str, Any]] = {
    "type=str": ("type", "sideways"), "type=None": ("type", None), "type=int": ("type", 1),
    "type=list": ("type", ["forward"]), "no type": ("type", DROP), "port=int": ("port", 0),
    "port=list": ("port", ["x"]), "src_port=None": ("src_port", None), "src_port=int": ("src_port", 0),
    "src_port=list": ("src_port", ["out"]), "extra attribute": ("weight", 1.0),
}


def _garbage_arrow(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph.copy()
    t = draw(st.sampled_from(TYPES))
    agents = [n for n in G.nodes if is_test_agent(G, n)]
    a, b = acyclic_pair(draw, G, t, agents)
    attrs = arrow_attrs(draw, G, a, b, t)
    attr, value = _GARBAGE_ARROW[variant]
    if value is DROP:
        attrs.pop(attr)
    else:
        attrs[attr] = value
    vias = ("networkx",) if variant in ("no type", "extra attribute") else VIAS
    G.add_edge(a, b, **attrs)
    return Malformed(
        "garbage_arrow", variant, f"arrow {a!r} -> {b!r} has {attr}={value!r}", dataclasses.replace(base, graph=G),
        base, (repr(a), repr(b)), vias,
    )


def _missing_agent(draw: Any, base: Case, variant: str) -> Malformed:
    t = draw(st.sampled_from(TYPES))
    agents = [n for n in base.graph.nodes if is_test_agent(base.graph, n)]
    a = draw(st.sampled_from(agents))
    ghost = ("ghost", draw(st.integers(0, 3)))
    attrs = {"type": t, "port": port_of(draw, base.graph.nodes[a]["kind"], t), "src_port": "out"}
    s, d = (ghost, a) if draw(st.booleans()) else (a, ghost)
    if variant == "node without attributes":  # what networkx makes of an edge to a new node
        G = base.graph.copy()
        G.add_edge(s, d, **attrs)
        return Malformed(
            "missing_agent", variant, f"arrow {s!r} -> {d!r} creates bare node {ghost!r}",
            dataclasses.replace(base, graph=G), base, (repr(ghost),),
        )
    return Malformed(
        "missing_agent", variant, f"arrow {s!r} -> {d!r} names undeclared agent {ghost!r}",
        dataclasses.replace(base, extra_arrows=((s, d, attrs),)), base, (repr(ghost),), ("api", "bulk"),
    )


def _duplicate_agent(draw: Any, base: Case, variant: str) -> Malformed:
    n = draw(st.sampled_from(list(base.graph.nodes)))
    attrs = dict(base.graph.nodes[n])
    return Malformed(
        "duplicate_agent", variant, f"agent {n!r} declared twice",
        dataclasses.replace(base, extra_agents=((n, attrs),)), base, (repr(n),), ("api", "bulk"),
    )


class _Nameless(Kind):
    forward_ports = {"x": Port(1)}
    forward_outputs = {"out": 1}


class _BadPort(Kind):
    name = "bad_port"
    forward_ports = {"x": 3}  # type: ignore[dict-item]
    forward_outputs = {"out": 1}


class _BadOutput(Kind):
    name = "bad_output"
    forward_ports = {"x": Port(1)}
    forward_outputs = {"out": 0}


def _bad_kind(draw: Any, base: Case, variant: str) -> Malformed:
    bad, culprit = {
        "string": ("probe_sum_d1", repr("probe_sum_d1")),
        "class": (Probe, "Probe"),
        "nameless": (_Nameless(), "_Nameless"),
        "port not a Port": (_BadPort(), "bad_port"),
        "output size 0": (_BadOutput(), "bad_output"),
    }[variant]
    return Malformed(
        "bad_kind", variant, f"the kinds passed to the graph include {bad!r}",
        dataclasses.replace(base, kinds=(*base.kinds, bad)), base, (culprit,),
    )


def _not_a_digraph(draw: Any, base: Case, variant: str) -> Malformed:
    if variant == "undirected":
        bad: Any = nx.MultiGraph(base.graph)
    elif variant == "dict":
        bad = dict(base.graph.nodes(data=True))
    else:
        bad = list(base.graph.edges)
    return Malformed(
        "not_a_digraph", variant, f"from_networkx given a {type(bad).__name__}",
        dataclasses.replace(base, graph=bad), base, (), ("networkx",),
    )


#: ``{category: (builder, variants)}``: the declaration defects, in catalogue order.
GRAPH_DEFECTS: dict[str, tuple[Callable[[Any, Case, str], Malformed], tuple[str, ...]]] = {
    "forward_cycle": (_forward_cycle, ("self-loop", "cycle")),
    "backward_cycle": (_backward_cycle, ("self-loop", "cycle")),
    "unknown_kind": (_unknown_kind, ("made up", "misspelt", "other size", "empty", "trailing space")),
    "bad_arrow_end": (_bad_arrow_end, ("port", "src_port", "backward into input", "backward from input")),
    "size_mismatch": (_size_mismatch, tuple(f"{t} {d}" for t in TYPES for d in ("from-size-2", "into-size-2"))),
    "bad_state": (_bad_state, ("shape", "unknown field", "nan", "inf", "non-numeric")),
    "bad_reflexive": (_bad_reflexive, ("not a self-loop", "kind without reflexive")),
    "bad_slot": (_bad_slot, (
        "missing", "negative", "slot=str", "slot=float", "slot=list", "duplicate", "out of range", "on non-input",
    )),
    "garbage_node": (_garbage_node, tuple(_GARBAGE_NODE)),
    "garbage_arrow": (_garbage_arrow, tuple(_GARBAGE_ARROW)),
    "missing_agent": (_missing_agent, ("node without attributes", "undeclared endpoint")),
    "duplicate_agent": (_duplicate_agent, ("same name twice",)),
    "bad_kind": (_bad_kind, ("string", "class", "nameless", "port not a Port", "output size 0")),
    "not_a_digraph": (_not_a_digraph, ("undirected", "dict", "edge list")),
}
