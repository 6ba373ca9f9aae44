"""Feedback alignment, sign symmetry and direct feedback alignment against their theory, float64:
each equals backprop (the ``sgd`` protocol's step) exactly where its feedback is the transported
weight — FA with ``b = w``; sign symmetry with magnitude ``|b| = |w|``, or with unit magnitude on
a network whose weights are all ±1; DFA on one hidden layer with ``B_j = (w_j1 … w_jK)`` — and is
not backprop elsewhere; compiled equals the interpreter on ``mlp``, ``random_dag`` and ``cnn``."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from agentgraph import AgentGraphError, interpreter
from agentgraph.builders import Conv, Pool, as_network, cnn, mlp_network, random_dag_network
from agentgraph.protocols import gradient
from agentgraph.protocols.base import resolve
from agentgraph.protocols.feedback import FeedbackSynapse, SignSynapse, direct_feedback_alignment
from agentgraph.testing import check_declarations, compare, state_deviation

CONV = cnn((1, 5, 5), [Conv(2, 3, 1, 1), Conv(2, 2, stride=2)], 3, "relu", "cross_entropy", init_std=0.3)
POOLED = cnn((1, 5, 5), [Conv(2, 3, 1, 1), Pool(2, mode="max"), Conv(2, 2)], 3, "relu", "cross_entropy", init_std=0.3)


def _net(name):
    if name == "mlp":
        return mlp_network([3, 4, 3, 2], activation="tanh", init_std=0.7, seed=1)
    if name == "mlp1":
        return mlp_network([3, 5, 3], activation="tanh", loss="l2", init_std=0.7, seed=3)
    if name == "mlp1_ce":
        return mlp_network([3, 5, 3], activation="tanh", init_std=0.7, seed=4)
    return random_dag_network(3, 6, 2, edge_prob=0.5, parallel_prob=0.2, activation="tanh", init_std=0.7, seed=2)


def _params(p, g):
    learned = p.init(jax.random.PRNGKey(0), g)
    return jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(learned, {}, g))


def _batch(rng, n_in, n_out, B=4):
    return {"x": rng.normal(size=(B, n_in)), "y": np.eye(n_out)[rng.integers(0, n_out, B)]}


def _vs_backprop(rule, name, set_feedback, compiled=True, **settings):
    """(deviation from the sgd protocol's step, compiled-vs-interpreter deviation over two steps
    or 0 when not ``compiled``) of one step of ``rule`` from a state whose feedback fields
    ``set_feedback(g, state, rng)`` fills."""
    net = _net(name)
    p = resolve({"rule": rule, **settings})
    g = p.network(net).graph
    rng = np.random.default_rng(0)
    st = interpreter.init_state(g, 4)
    for a in g.agents("synapse"):
        st[a]["w"] = np.asarray(rng.normal(0, 0.8))
    set_feedback(g, st, rng)
    params = _params(p, g)
    n_out = len(net.readout.agents)
    batch = _batch(rng, 3, n_out)
    new = interpreter.step(g, st, params, batch).state
    plain = {a: {f: v for f, v in fs.items() if f in net.graph.kind_of(a).fields} for a, fs in st.items()
             if a in set(net.graph.agents())}
    lr = float(params["synapse"]["lr"] if "synapse" in params else params["synapse:0"]["lr"])
    bp = interpreter.step(net.graph, plain, gradient.params(net.graph, lr), batch).state
    vs_bp = max(float(np.abs(new[a][f] - bp[a][f]).max()) for a in bp for f in ("w", "b")
                if f in bp[a] and not net.graph.kind_of(a).fields[f].per_example)
    return vs_bp, compare(g, params, [batch, _batch(rng, 3, n_out)], state=st).worst if compiled else 0.0


def _b_is_w(g, st, rng):
    for a in g.agents("synapse"):
        st[a]["b"] = np.asarray(st[a]["w"])


def _b_random(g, st, rng):
    for a in g.agents("synapse"):
        st[a]["b"] = np.asarray(rng.normal(0, 0.8))


SLOW_DAG = ["mlp", pytest.param("random_dag", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", SLOW_DAG)
def test_fa_with_feedback_equal_to_the_weights_is_backprop(name):
    vs_bp, compiled = _vs_backprop("feedback_alignment", name, _b_is_w)
    assert vs_bp < 1e-10 and compiled < 1e-10
    vs_bp, _ = _vs_backprop("feedback_alignment", name, _b_random, compiled=False)
    assert vs_bp > 1e-3  # random feedback: not backprop


@pytest.mark.parametrize("name", SLOW_DAG)
def test_sign_symmetry_equals_backprop_where_the_feedback_is_w(name):
    neg_b = lambda g, st, rng: [st[a].__setitem__("b", -np.asarray(st[a]["w"])) for a in g.agents("synapse")]
    vs_bp, compiled = _vs_backprop("sign_symmetry", name, neg_b, magnitude="random")  # sign(w)|−w| = w
    assert vs_bp < 1e-10 and compiled < 1e-10

    def unit_weights(g, st, rng):  # every |w| = 1: sign(w) = w
        for a in g.agents("synapse"):
            st[a]["w"] = np.sign(st[a]["w"]) * 1.0

    vs_bp, _ = _vs_backprop("sign_symmetry", name, unit_weights, compiled=False)  # same kind: compiled above
    assert vs_bp < 1e-10
    vs_bp, _ = _vs_backprop("sign_symmetry", name, lambda g, st, rng: None, compiled=False)  # |w| ≠ 1
    assert vs_bp > 1e-3  # not backprop


def _b_output_weights(g, st, rng):  # B_j = the hidden unit j's outgoing weights (one hidden layer)
    for a in g.agents("tanh"):
        j = a[2]
        st[a]["B"] = np.array([st[("w", 1, j, k)]["w"] for k in range(len(g.agents("dfa_error")))], float)


@pytest.mark.parametrize("name", ["mlp1", "mlp1_ce"])
def test_dfa_on_one_hidden_layer_with_the_output_weights_is_backprop(name):
    vs_bp, compiled = _vs_backprop("direct_feedback_alignment", name, _b_output_weights, compiled=name == "mlp1")
    assert vs_bp < 1e-10 and compiled < 1e-10
    rand = lambda g, st, rng: [st[a].__setitem__("B", rng.normal(size=3)) for a in g.agents("tanh")]
    vs_bp, _ = _vs_backprop("direct_feedback_alignment", name, rand, compiled=False)
    assert vs_bp > 1e-3


@pytest.mark.slow
def test_dfa_sends_the_error_past_every_layer_on_a_random_dag():
    vs_bp, compiled = _vs_backprop("direct_feedback_alignment", "random_dag",
                                   lambda g, st, rng: [st[a].__setitem__("B", rng.normal(size=2))
                                                       for a in g.agents("tanh")])
    assert vs_bp > 1e-3 and compiled < 1e-10


@pytest.mark.parametrize("rule, graph, settings", [
    ("feedback_alignment", POOLED, {}),
    pytest.param("feedback_alignment", CONV, {}, marks=pytest.mark.slow),
    pytest.param("sign_symmetry", POOLED, {"magnitude": "random"}, marks=pytest.mark.slow),
    pytest.param("direct_feedback_alignment", POOLED, {}, marks=pytest.mark.slow)])
def test_on_a_cnn_compiled_equals_interpreter_and_ties_are_kept(rule, graph, settings):
    p = resolve({"rule": rule, **settings})
    net = p.network(as_network(graph, 0.3))
    g = net.graph
    extra = 0 if rule == "direct_feedback_alignment" else sum(f == "w" for f in graph.ties().fields)
    assert len(g.ties()) == len(graph.ties()) + extra  # FA / sign: one feedback kernel per kernel
    rng = np.random.default_rng(0)
    st = interpreter.init_state(g, 2)
    for fi in net.init:  # fresh weights, one value per tie
        for a in g.agents(fi.kind):
            st[a][fi.field] = np.asarray(rng.normal(0, 0.3, np.shape(st[a][fi.field])))
    t = g.ties()
    for i, f in enumerate(t.fields):
        v = st[g.arrays().names[t.members(i)[0]]][f]
        for m in t.members(i):
            st[g.arrays().names[m]][f] = v
    params = _params(p, g)
    batches = [{"x": rng.normal(size=(2, 25)), "y": np.eye(3)[[0, 2]]} for _ in range(2)]
    assert compare(g, params, batches, state=st).worst < 1e-10
    r = interpreter.step(g, st, params, batches[0]).state
    assert state_deviation(g, r, st) > 1e-6  # it learns


def test_declarations_and_settings():
    assert check_declarations(FeedbackSynapse(), {"lr": 0.1, "feedback": 0.7}) == 4
    assert check_declarations(SignSynapse(random=True), {"lr": 0.1}) == 3
    p = resolve({"rule": "direct_feedback_alignment", "arrow_type": "direct", "feedback_scale": 2.0})
    assert p.settings["arrow_type"] == "direct" and p.name == "direct_feedback_alignment"
    g = p.network(_net("mlp")).graph
    assert abs(float(p.params(p.init(None, g), {}, g)["tanh:0"]["feedback"]) - 2.0) < 1e-6
    with pytest.raises(AgentGraphError, match="must be positive"):
        resolve({"rule": "feedback_alignment", "init_lr": -1.0})
    with pytest.raises(AgentGraphError, match="arrow_type must be a type of its own"):
        direct_feedback_alignment(arrow_type="backward")
    with pytest.raises(AgentGraphError, match="output activation"):
        direct_feedback_alignment().network(mlp_network([3, 4, 2], output_activation="sigmoid", loss="l2"))
