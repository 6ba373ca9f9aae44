"""Tied parameters (agentgraph.graph.ties): the semantics by hand, compiled == interpreter on
random tie groups (with random schedules and delayed arrows), the round trips, and the errors."""

from __future__ import annotations

import jax
import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgraph import AgentGraph, AgentGraphError, compile
from agentgraph.builders import mlp
from agentgraph.checkpoint import load, save
from agentgraph.compiler import make_bucket
from agentgraph.interpreter import init_state, step
from agentgraph.nodes import L2Loss
from agentgraph.protocols import gradient
from agentgraph.testing import agent_graphs, group_params, schedules, state_deviation, states
from agentgraph.testing.kinds import mixer_kinds

USER_TYPES = ("t1", "t2", "s1")
KINDS = [*mixer_kinds(1, acts_on=USER_TYPES), L2Loss()]


@settings(max_examples=14, deadline=None)
@given(data=st.data(), graph=agent_graphs(kinds=KINDS, message_size=1, min_agents=1, max_agents=7, max_fan_in=3,
                                          schedule=st.one_of(st.none(), schedules()), max_delayed=2, max_ties=3))
def test_random_ties_compiled_equal_interpreter_x64(data, graph):
    B = data.draw(st.integers(1, 2), label="B")
    s0 = data.draw(states(graph, B, per_agent=True), label="state")
    params = data.draw(group_params(graph), label="params")
    r1 = step(graph, s0, params, {}, check_finite=False)
    r2 = step(graph, r1.state, params, {}, check_finite=False)
    with jax.enable_x64(True):
        for dense in (True, False):
            prog = compile(graph, dense=dense)
            s, l1 = prog.step(params, prog.from_agents(s0), {})
            assert abs(float(l1) - r1.loss) < 1e-10
            assert state_deviation(graph, prog.to_agents(s), r1.state) < 1e-10
            s, l2 = prog.step(params, s, {})
            assert abs(float(l2) - r2.loss) < 1e-10
            assert state_deviation(graph, prog.to_agents(s), r2.state) < 1e-10
    ties = graph.ties()
    for t, f in enumerate(ties.fields):  # members stay equal
        names = [graph.arrays().names[r] for r in ties.members(t)]
        for m in names[1:]:
            np.testing.assert_array_equal(r2.state[m][f], r2.state[names[0]][f])


def _two_tied(reduction: str):
    """y = w x1 + w x2 (one shared w, two uses) + b, L2 loss."""
    g = mlp([2, 1], loss="l2", seed=0)
    syn = g.agents("synapse")
    g.tie(syn, "w", reduction=reduction, value=0.3)
    return g, syn


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_shared_weight_moves_by_the_reduction_of_its_uses(reduction):
    g, syn = _two_tied(reduction)
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    y = np.array([[0.7], [0.1]])
    lr = 0.1
    r = step(g, init_state(g, 2), gradient.params(g, lr), {"x": x, "y": y})
    b = g.declared_state(g.agents("bias")[0]).get("b", 0.0)
    pred = 0.3 * x.sum(1, keepdims=True) + b
    dpred = pred - y  # the L2 loss is ½ r²
    per_use = [-lr * np.mean(dpred[:, 0] * x[:, i]) for i in range(2)]
    change = sum(per_use) if reduction == "sum" else np.mean(per_use)
    for a in syn:
        np.testing.assert_allclose(r.state[a]["w"], 0.3 + change, rtol=1e-12)
    if reduction == "sum":  # = SGD on the shared weight: d/dw of mean ½ (w(x1 + x2) + b - y)²
        grad = np.mean(dpred[:, 0] * x.sum(1))
        np.testing.assert_allclose(r.state[syn[0]]["w"], 0.3 - lr * grad, rtol=1e-12)
    prog = compile(g)
    s, _ = prog.step(gradient.params(g, lr), prog.init(2), {"x": x, "y": y})
    assert s["synapse"]["w"].shape == (1,)  # stored once
    np.testing.assert_allclose(np.asarray(prog.read(s, syn, "w")), [0.3 + change] * 2, rtol=1e-6)


def test_ties_survive_networkx_and_checkpoints(tmp_path):
    g = mlp([3, 2], loss="l2", seed=1)
    syn = g.agents("synapse")
    g.tie(syn[:2], "w", name="k0", value=0.1)
    g.tie(syn[2:5], "w", name="k1", reduction="mean", value=-0.2)
    h = g.to_networkx()
    assert h.nodes[syn[0]]["ties"] == {"w": "k0"} and h.graph["ties"] == {"k1": "mean"}
    g2 = AgentGraph.from_networkx(h)
    assert g2.ties().names == g.ties().names and g2.ties().reductions == g.ties().reductions
    np.testing.assert_array_equal(g2.ties().agent, g.ties().agent)
    prog = compile(g2)
    batch = {"x": np.ones((2, 3)), "y": np.zeros((2, 2))}
    s, _ = prog.step(gradient.params(g2, 0.1), prog.init(2), batch)
    save(tmp_path / "s.ckpt", s)
    back, _ = load(tmp_path / "s.ckpt", s)
    assert back["synapse"]["w"].shape == (3,)  # 6 synapses: two ties and one untied synapse
    a, _ = prog.step(gradient.params(g2, 0.1), s, batch)
    b, _ = prog.step(gradient.params(g2, 0.1), back, batch)
    np.testing.assert_array_equal(np.asarray(a["synapse"]["w"]), np.asarray(b["synapse"]["w"]))


def _graph_with(kinds_of: dict) -> AgentGraph:
    g = AgentGraph()
    for name, kind in kinds_of.items():
        g.add_agent(name, kind)
    return g


@pytest.mark.parametrize("build, match", [
    (lambda g: g.tie(["s1", "r1"], "w"), r"Tie 'tie0' joins agent 's1' \(kind 'synapse'\) and agent 'r1' \(kind 'relu'\)"),
    (lambda g: g.tie(["s1", "s2"], "x"), r"kind 'synapse' \(agent 's1'\) has a per-example field 'x'"),
    (lambda g: g.tie(["s1", "s2"], "v"), r"kind 'synapse' \(agent 's1'\) has no field 'v'"),
    (lambda g: (g.tie(["s1", "s2"], "w", name="a"), g.tie(["s2"], "w", name="b")),
     r"Agent 's2': field 'w' is in two ties, 'a' and 'b'"),
    (lambda g: (g.add_agent("s3", "synapse", state={"w": 1.0}), g.tie(["s1", "s3"], "w")),
     r"agents 's1' and 's3' start with different values of the shared field 'w'"),
    (lambda g: (g.tie(["b1"], "b", name="t"), g.tie(["s1"], "w", name="t")),
     r"Tie 't' joins field 'b' of agent 'b1' and field 'w' of agent 's1'"),
])
def test_invalid_ties_name_both_culprits(build, match):
    g = _graph_with({"s1": "synapse", "s2": "synapse", "r1": "relu", "b1": "bias"})
    build(g)
    with pytest.raises(AgentGraphError, match=match):
        g.validate()


def test_tie_declaration_errors():
    g = _graph_with({"s1": "synapse", "s2": "synapse"})
    with pytest.raises(AgentGraphError, match="reduction 'max' is not one of"):
        g.tie(["s1", "s2"], "w", reduction="max")
    with pytest.raises(AgentGraphError, match="agent 'nope' does not exist"):
        g.tie(["s1", "nope"], "w")
    with pytest.raises(AgentGraphError, match="agent 's1' is listed twice"):
        g.tie(["s1", "s1"], "w")
    g.tie(["s1"], "w", name="t")
    with pytest.raises(AgentGraphError, match="tie 't' has reduction 'sum'"):
        g.tie(["s2"], "w", name="t", reduction="mean")


def test_networkx_tie_across_fields_is_refused():
    h = nx.MultiDiGraph()
    h.add_node("s", kind="synapse", ties={"w": "t"})
    h.add_node("b", kind="bias", ties={"b": "t"})
    with pytest.raises(AgentGraphError, match="Tie 't' joins field 'w' of agent 's' and field 'b' of agent 'b'"):
        AgentGraph.from_networkx(h)


def test_states_whose_tied_members_differ_are_refused():
    g, syn = _two_tied("sum")
    s = init_state(g, 1)
    s[syn[1]]["w"] = np.array(0.5)
    batch = {"x": np.ones((1, 2)), "y": np.zeros((1, 1))}
    with pytest.raises(AgentGraphError, match="differs in the shared field 'w'"):
        step(g, s, gradient.params(g, 0.1), batch)
    prog = compile(g)
    with pytest.raises(AgentGraphError, match="hold different values of the shared field 'w'"):
        prog.from_agents(s)


def test_buckets_refuse_ties_clearly():
    g, _ = _two_tied("sum")
    with pytest.raises(AgentGraphError, match="tied parameters"):
        compile(g, bucket=make_bucket([g]))
