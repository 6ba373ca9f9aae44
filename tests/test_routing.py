"""Routing tags and graph-level invariances of the reference interpreter, on random graphs.

Each probe agent sends a unique code; every port's inbox must equal the exact aggregate (sum,
mean, max, logsumexp — computed here independently in NumPy) of the codes its in-arrows carry,
counting parallel arrows with multiplicity. Renaming agents, taking disjoint unions and the
networkx round trip must change nothing.
"""

from __future__ import annotations

from collections import Counter

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from hypothesis import Phase, example, find, given, settings
from hypothesis import strategies as st

from agentgraph import AgentGraph
from agentgraph.interpreter import init_state, step
from agentgraph.nodes import default_kinds
from agentgraph.testing import (
    Mixer,
    Probe,
    agent_graphs,
    agent_names,
    group_params,
    kind_pool,
    states,
    test_kinds,
)

SIGN = {"out": 1.0, "neg": -1.0}
CODE_FIELD = {"forward": "code", "backward": "bcode"}
INBOX_PREFIX = {"forward": "in_", "backward": "bin_"}
TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def reference_aggregate(messages: list[np.ndarray], aggregation: str, d: int) -> np.ndarray:
    """The aggregate of ``messages`` (each ``[..., d]``), written independently of the engine."""
    if not messages:
        return np.zeros(d)
    m = np.stack([np.asarray(x, dtype=np.float64) for x in messages])
    if aggregation == "sum":
        total = np.zeros(m.shape[1:])
        for x in m:
            total = total + x
        return total
    if aggregation == "mean":
        return np.add.reduce(m, axis=0) / len(m)
    if aggregation == "max":
        return np.maximum.reduce(m, axis=0)
    if aggregation == "logsumexp":
        return np.logaddexp.reduce(m, axis=0)
    raise AssertionError(f"unexpected aggregation {aggregation!r}")


def in_arrows(graph: AgentGraph, agent, arrow_type: str, port: str) -> list[tuple]:
    """``(src, src_port)`` of every arrow into ``agent``'s ``port``, with multiplicity."""
    return [
        (s, a.get("src_port", "out"))
        for s, d, _, a in graph.arrows(arrow_type)
        if d == agent and a["port"] == port
    ]


# -- routing tags ------------------------------------------------------------------------------


@settings(deadline=None)
@given(graph=agent_graphs(kinds="probe", min_agents=1, max_agents=10), batch_size=st.integers(1, 3))
@example(graph=AgentGraph(), batch_size=1)
def test_probe_inboxes_are_exact_aggregates_of_codes(graph: AgentGraph, batch_size: int) -> None:
    r = step(graph, init_state(graph, batch_size), None, {}, trace=True)
    declared = {n: a["state"] for n, a in graph.nx.nodes(data=True)}
    for agent in graph.agents():
        kind = graph.kind_of(agent)
        assert isinstance(kind, Probe)
        d = kind.d
        for t in ("forward", "backward"):
            inbox = r.inbox[(agent, t)]
            assert set(inbox) == set(kind.ports(t))
            for port, spec in kind.ports(t).items():
                codes = [SIGN[o] * declared[s][CODE_FIELD[t]] for s, o in in_arrows(graph, agent, t, port)]
                want = reference_aggregate(codes, spec.aggregation, d)
                assert inbox[port].shape == (batch_size, d)
                np.testing.assert_allclose(inbox[port], np.broadcast_to(want, (batch_size, d)), **TIGHT)
                stored = r.state[agent][INBOX_PREFIX[t] + port]
                np.testing.assert_allclose(stored, np.broadcast_to(want, (batch_size, d)), **TIGHT)
            sent = r.outputs[(agent, t)]
            np.testing.assert_array_equal(sent["out"], np.broadcast_to(declared[agent][CODE_FIELD[t]], (batch_size, d)))
            np.testing.assert_array_equal(sent["neg"], -sent["out"])
        n_reflexive = sum(1 for s, _, _, _ in graph.arrows("reflexive") if s == agent)
        assert r.state[agent]["nref"] == n_reflexive
        np.testing.assert_array_equal(r.state[agent]["eref"], np.full(batch_size, float(n_reflexive)))
        assert r.state[agent]["nbwd"] == 1.0  # one backward run, update averaged over the batch
        # per-agent fields become the batch mean after a reflexive arrow: equal up to rounding
        np.testing.assert_allclose(r.state[agent]["code"], declared[agent]["code"], **TIGHT)


def assert_inboxes_aggregate_what_sources_sent(graph: AgentGraph, r, batch_size: int) -> None:
    for agent in graph.agents():
        kind = graph.kind_of(agent)
        for t in ("forward", "backward"):
            if not kind.runs(t):
                continue
            for port, spec in kind.ports(t).items():
                sent = [r.outputs[(s, t)][o] for s, o in in_arrows(graph, agent, t, port)]
                want = reference_aggregate(sent, spec.aggregation, spec.size)
                np.testing.assert_allclose(
                    r.inbox[(agent, t)][port], np.broadcast_to(want, (batch_size, spec.size)), **TIGHT
                )


@settings(deadline=None)
@given(graph=agent_graphs(kinds="any", min_agents=1, max_agents=8), data=st.data())
def test_every_inbox_is_the_aggregate_of_what_its_sources_sent(graph: AgentGraph, data) -> None:
    """Also for mixers, whose messages depend on their inputs, random state and params."""
    batch_size = data.draw(st.integers(1, 3), label="batch_size")
    state = data.draw(states(graph, batch_size), label="state")
    params = data.draw(group_params(graph), label="params")
    r = step(graph, state, params, {}, trace=True)
    assert_inboxes_aggregate_what_sources_sent(graph, r, batch_size)


LIBRARY_POOL = [default_kinds()[k] for k in ("tanh", "sum", "identity", "sigmoid")]


@settings(deadline=None)
@given(graph=agent_graphs(kinds=LIBRARY_POOL, min_agents=1, max_agents=6), batch_size=st.integers(1, 2))
def test_agent_graphs_of_library_kinds_route_exactly(graph: AgentGraph, batch_size: int) -> None:
    """``agent_graphs`` also draws graphs of any given kinds (here the library's units)."""
    assert {graph.kind_of(n).name for n in graph.agents()} <= {k.name for k in LIBRARY_POOL}
    r = step(graph, init_state(graph, batch_size), None, {}, trace=True)
    assert_inboxes_aggregate_what_sources_sent(graph, r, batch_size)


# -- invariances -------------------------------------------------------------------------------


def assert_same_states(a: dict, b: dict, mapping: dict | None = None) -> None:
    mapping = mapping or {n: n for n in a}
    assert set(b) == {mapping[n] for n in a}
    for n, fields in a.items():
        other = b[mapping[n]]
        assert set(fields) == set(other), n
        for f, v in fields.items():
            np.testing.assert_allclose(other[f], v, rtol=1e-12, atol=1e-12, err_msg=f"agent {n!r} field {f!r}")


@st.composite
def renamings(draw, names: list) -> dict:
    """An injective renaming: a permutation of the names themselves, or fresh names."""
    if draw(st.booleans()):
        new = draw(st.permutations(names))
    else:
        new = draw(st.lists(agent_names(), min_size=len(names), max_size=len(names), unique=True))
    return dict(zip(names, new, strict=True))


@settings(deadline=None)
@given(graph=agent_graphs(kinds="any", min_agents=1, max_agents=8), data=st.data())
def test_renaming_agents_changes_nothing(graph: AgentGraph, data) -> None:
    mapping = data.draw(renamings(graph.agents()), label="mapping")
    batch_size = data.draw(st.integers(1, 3), label="batch_size")
    state = data.draw(states(graph, batch_size), label="state")
    params = data.draw(group_params(graph), label="params")
    renamed = graph.relabel(mapping)
    assert renamed.number_of_arrows() == graph.number_of_arrows()
    r1 = step(graph, state, params, {}, trace=True)
    r2 = step(renamed, {mapping[n]: v for n, v in state.items()}, params, {}, trace=True)
    assert_same_states(r1.state, r2.state, mapping)
    for (agent, t), inbox in r1.inbox.items():
        for port, v in inbox.items():
            np.testing.assert_allclose(r2.inbox[(mapping[agent], t)][port], v, rtol=1e-12, atol=1e-12)


def _kinds_of(*graphs: AgentGraph) -> list:
    table = {}
    for g in graphs:
        table.update(g.kinds)
    return list(table.values())


@settings(deadline=None)
@given(
    g1=agent_graphs(kinds="any", min_agents=1, max_agents=5),
    g2=agent_graphs(kinds="any", min_agents=1, max_agents=5),
    data=st.data(),
)
def test_disjoint_union_runs_both_graphs_side_by_side(g1: AgentGraph, g2: AgentGraph, data) -> None:
    left = nx.relabel_nodes(g1.to_networkx(), lambda n: ("L", n))
    right = nx.relabel_nodes(g2.to_networkx(), lambda n: ("R", n))
    union = AgentGraph.from_networkx(nx.union(left, right), kinds=_kinds_of(g1, g2))
    assert union.number_of_agents() == len(g1) + len(g2)
    assert union.number_of_arrows() == g1.number_of_arrows() + g2.number_of_arrows()
    batch_size = data.draw(st.integers(1, 3), label="batch_size")
    s1 = data.draw(states(g1, batch_size), label="s1")
    s2 = data.draw(states(g2, batch_size), label="s2")
    params = data.draw(group_params(union), label="params")  # shared groups get the same params
    both = step(union, {**{("L", n): v for n, v in s1.items()}, **{("R", n): v for n, v in s2.items()}}, params, {})
    alone1 = step(g1, s1, params, {}).state
    alone2 = step(g2, s2, params, {}).state
    assert_same_states(alone1, {n: v for n, v in both.state.items() if n[0] == "L"}, {n: ("L", n) for n in alone1})
    assert_same_states(alone2, {n: v for n, v in both.state.items() if n[0] == "R"}, {n: ("R", n) for n in alone2})


def _arrow_key(arrow: tuple) -> tuple:
    s, d, k, a = arrow
    return (s, d, k, tuple(sorted(a.items())))


@settings(deadline=None)
@given(graph=agent_graphs(kinds="any", min_agents=1, max_agents=8))
def test_networkx_round_trip(graph: AgentGraph) -> None:
    back = AgentGraph.from_networkx(graph.to_networkx(), kinds=list(graph.kinds.values()))
    assert list(back.agents()) == list(graph.agents())
    for (n1, a1), (n2, a2) in zip(graph.nx.nodes(data=True), back.nx.nodes(data=True), strict=True):
        assert n1 == n2 and set(a1) == set(a2), n1
        assert {k: v for k, v in a1.items() if k != "state"} == {k: v for k, v in a2.items() if k != "state"}
        assert set(a1.get("state") or {}) == set(a2.get("state") or {})
        for f, v in (a1.get("state") or {}).items():
            np.testing.assert_array_equal(a2["state"][f], v)
    # the same arrows (src, dst, key, attrs) with multiplicity; networkx lists them by source
    assert Counter(_arrow_key(x) for x in back.arrows()) == Counter(_arrow_key(x) for x in graph.arrows())
    h1, h2 = graph.to_networkx(), back.to_networkx()
    assert nx.utils.edges_equal(h2.edges(keys=True, data=True), h1.edges(keys=True, data=True))
    assert back.number_of_arrows("reflexive") == graph.number_of_arrows("reflexive")
    r1 = step(graph, init_state(graph, 2), None, {})
    r2 = step(back, init_state(back, 2), None, {})
    assert_same_states(r1.state, r2.state)


# -- the strategy itself -----------------------------------------------------------------------


@settings(deadline=None)
@given(
    graph=agent_graphs(min_agents=2, max_agents=6, kinds="mixer", message_size=2, reflexive=False, backward=False)
)
def test_agent_graphs_respects_its_arguments(graph: AgentGraph) -> None:
    assert 2 <= len(graph) <= 6
    assert graph.number_of_arrows("reflexive") == graph.number_of_arrows("backward") == 0
    assert {graph.kind_of(n).name for n in graph.agents()} <= {"mixer_d2", "mixer_lse_d2"}
    assert all(isinstance(graph.kind_of(n), Mixer) and graph.kind_of(n).d == 2 for n in graph.agents())


@settings(deadline=None)
@given(graph=agent_graphs(kinds="any"))
def test_agent_graphs_are_valid_acyclic_typed_multigraphs(graph: AgentGraph) -> None:
    assert graph.validate() is graph
    for t in ("forward", "backward"):
        sub = nx.DiGraph([(s, d) for s, d, _, _ in graph.arrows(t)])
        assert nx.is_directed_acyclic_graph(sub)
    assert all(s == d for s, d, _, _ in graph.arrows("reflexive"))
    sizes = {graph.kind_of(n).d for n in graph.agents()}
    assert len(sizes) <= 1  # one message size per graph
    codes = [tuple(graph.nx.nodes[n]["state"]["code"]) for n in graph.agents()]
    assert len(set(codes)) == len(codes)  # unique identity codes


def _has_parallel(g: AgentGraph) -> bool:
    c = Counter((s, d, a["type"], a["port"], a["src_port"]) for s, d, _, a in g.arrows() if a["type"] != "reflexive")
    return any(v > 1 for v in c.values())


def _max_fan_in(g: AgentGraph) -> int:
    c = Counter((d, a["type"], a["port"]) for _, d, _, a in g.arrows() if a["type"] != "reflexive")
    return max(c.values(), default=0)


def _isolated(g: AgentGraph) -> bool:
    touched = {x for s, d, _, _ in g.arrows() for x in (s, d)}
    return g.number_of_arrows() > 0 and any(n not in touched for n in g.agents())


def _against_declaration_order(t: str):
    def pred(g: AgentGraph) -> bool:
        pos = {n: i for i, n in enumerate(g.agents())}
        return any(pos[s] > pos[d] for s, d, _, _ in g.arrows(t))

    return pred


def _forward_and_backward_same_direction(g: AgentGraph) -> bool:
    fwd = {(s, d) for s, d, _, _ in g.arrows("forward")}
    return any((s, d) in fwd for s, d, _, _ in g.arrows("backward"))


FEATURES = {
    "parallel arrows": _has_parallel,
    "fan-in of 6": lambda g: _max_fan_in(g) >= 6,
    "isolated agent": _isolated,
    "two reflexive arrows on one agent": lambda g: max(
        Counter(s for s, *_ in g.arrows("reflexive")).values(), default=0
    ) >= 2,
    "forward arrow against declaration order": _against_declaration_order("forward"),
    "backward arrow against declaration order": _against_declaration_order("backward"),
    "backward order independent of forward order": _forward_and_backward_same_direction,
    "three groups": lambda g: len(g.groups()) >= 3,
    "mixed name types": lambda g: len({type(n) for n in g.agents()}) >= 3,
    "both output names": lambda g: {a["src_port"] for *_, a in g.arrows("forward")} >= {"out", "neg"},
    "two-port kind": lambda g: any(g.kind_of(n).name.startswith("probe_ab") for n in g.agents()),
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_agent_graphs_produce_feature(feature: str) -> None:
    """Each structural feature the strategy promises shows up (search only, no shrinking)."""
    found = find(
        agent_graphs(), FEATURES[feature],
        settings=settings(max_examples=2000, database=None, deadline=None, phases=[Phase.generate]),
    )
    assert FEATURES[feature](found)


# -- the test kinds ----------------------------------------------------------------------------


def test_test_kinds_have_unique_names_per_size_and_pass_check() -> None:
    names = [k.name for d in (1, 2, 3) for k in test_kinds(d)]
    assert len(names) == len(set(names))
    for k in test_kinds(2):
        k.check()
        assert all(p.size == 2 for t in ("forward", "backward") for p in k.ports(t).values())
        assert all(s == 2 for t in ("forward", "backward") for s in k.outputs(t).values())
        assert k.runs("forward") and k.runs("backward") and k.runs("reflexive")
    aggs = {p.aggregation for k in test_kinds(1) for t in ("forward", "backward") for p in k.ports(t).values()}
    assert aggs == {"sum", "mean", "max", "logsumexp"}
    assert [k.name for k in kind_pool("probe", 1)] == [k.name for k in test_kinds(1) if isinstance(k, Probe)]


def _zeros(kind) -> dict:
    return {f: jnp.full(spec.shape, 0.3) for f, spec in kind.fields.items()}


@pytest.mark.parametrize("kind", test_kinds(2), ids=lambda k: k.name)
def test_test_kinds_vmap_over_agents_and_examples(kind) -> None:
    """The compiler vmaps kind functions; the test kinds must allow it (pure jnp, no Python
    control flow on values)."""
    n = 3
    rng = np.random.default_rng(0)
    stacked = {f: jnp.asarray(rng.normal(size=(n, *spec.shape))) for f, spec in kind.fields.items()}
    inputs = {p: jnp.asarray(rng.normal(size=(n, 2))) for p in kind.forward_ports}
    params = {"scale": 1.5, "lr": 0.2, "decay": 0.5}
    fwd = jax.jit(jax.vmap(kind.forward, in_axes=(None, 0, 0)))(params, stacked, inputs)
    refl = jax.vmap(kind.reflexive, in_axes=(None, 0))(params, stacked)
    messages = {p: jnp.asarray(rng.normal(size=(n, 2))) for p in kind.backward_ports}
    bwd = jax.vmap(kind.backward, in_axes=(None, 0, 0))(params, stacked, messages)
    for i in range(n):
        one = {f: v[i] for f, v in stacked.items()}
        s, out = kind.forward(params, one, {p: v[i] for p, v in inputs.items()})
        _, bout, bupd = kind.backward(params, one, {p: v[i] for p, v in messages.items()})
        close = {"rtol": 1e-5, "atol": 1e-6}
        for o in kind.forward_outputs:
            np.testing.assert_allclose(fwd[1][o][i], out[o], **close)
        for o in kind.backward_outputs:
            np.testing.assert_allclose(bwd[1][o][i], bout[o], **close)
        for f in bupd:
            np.testing.assert_allclose(bwd[2][f][i], bupd[f], **close)
        for f in kind.fields:
            np.testing.assert_allclose(fwd[0][f][i], s[f], **close)
            np.testing.assert_allclose(refl[f][i], kind.reflexive(params, one)[f], **close)
    assert set(bwd[1]) == set(kind.backward_outputs)


def test_mixer_depends_on_inputs_state_and_params() -> None:
    k = test_kinds(1)[-2]
    assert isinstance(k, Mixer)
    s = _zeros(k)
    x = {"x": jnp.array([0.7]), "g": jnp.array([-0.2])}
    _, base = k.forward(None, s, x)
    _, other_input = k.forward(None, s, {**x, "x": jnp.array([0.1])})
    _, other_params = k.forward({"scale": 3.0}, s, x)
    _, other_state = k.forward(None, {**s, "w": jnp.array([-1.0])}, x)
    for changed in (other_input, other_params, other_state):
        assert not np.allclose(changed["out"], base["out"])
    # nonlinear in its input
    _, double = k.forward(None, {**s, "code": jnp.zeros(1)}, {"x": 2 * x["x"], "g": 2 * x["g"]})
    _, single = k.forward(None, {**s, "code": jnp.zeros(1)}, x)
    assert not np.allclose(double["out"], 2 * single["out"])
    # reflexive decays the per-agent trace, backward updates a per-agent field
    assert np.allclose(k.reflexive({"decay": 0.5}, s)["tr"], 0.15)
    _, _, update = k.backward(None, s, {"m": jnp.array([1.0])})
    assert set(update) == {"w", "tr"} and not k.fields["w"].per_example and not k.fields["tr"].per_example
