"""Compiled programs equal the reference interpreter; lowerings, jit, vmap and grad agree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import compile, mlp, random_dag
from agentgraph.builders import mlp_weights
from agentgraph.interpreter import init_state, step
from agentgraph.protocols import gradient
from agentgraph.testing import state_deviation
from agentgraph.testing.oracle import sgd_reference


def _batch(rng, B, n_in, n_out, loss):
    x = rng.normal(size=(B, n_in))
    y = np.eye(n_out)[rng.integers(0, n_out, B)] if loss == "cross_entropy" else rng.normal(size=(B, n_out))
    return {"x": x, "y": y}


GRAPHS = {
    "mlp-ce": lambda: mlp([3, 4, 2], activation="sigmoid", loss="cross_entropy", init_std=0.5, seed=0),
    "mlp-l2": lambda: mlp([2, 3, 3, 1], activation="tanh", loss="l2", init_std=0.5, seed=1),
    "dag-ce": lambda: random_dag(3, 6, 2, edge_prob=0.4, parallel_prob=0.3, activation="sigmoid", loss="cross_entropy", seed=2),
    "dag-l2": lambda: random_dag(2, 7, 2, edge_prob=0.5, parallel_prob=0.3, activation="relu", loss="l2", seed=3),
}


def _max_err(prog, compiled_state, agents_state, graph):
    """Scratch fields (the synapses' stored input) are unspecified between steps: skipped."""
    return state_deviation(graph, prog.to_agents(compiled_state), agents_state)


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("dense", [True, False], ids=["dense", "segment"])
def test_compiled_equals_interpreter_x64(name, dense):
    g = GRAPHS[name]()
    loss_kind = "cross_entropy" if "ce" in name else "l2"
    n_in, n_out = len(g.agents("input")), len(g.agents("target"))
    rng = np.random.default_rng(0)
    B, lr = 3, 0.3
    with jax.enable_x64(True):
        prog = compile(g, dense=dense)
        s_int = init_state(g, B)
        s_cmp = prog.init(B)
        assert _max_err(prog, s_cmp, s_int, g) == 0.0
        for _ in range(3):
            b = _batch(rng, B, n_in, n_out, loss_kind)
            r = step(g, s_int, gradient.params(g, lr), b)
            s_cmp, loss = prog.step(gradient.params(g, lr), s_cmp, b)
            s_int = r.state
            assert abs(float(loss) - r.loss) < 1e-10
            assert _max_err(prog, s_cmp, s_int, g) < 1e-10


def test_compiled_float32_close_to_interpreter():
    g = GRAPHS["dag-ce"]()
    rng = np.random.default_rng(1)
    b = _batch(rng, 4, 3, 2, "cross_entropy")
    prog = compile(g)
    s, loss = prog.step(gradient.params(g, 0.3), prog.init(4), b)
    r = step(g, init_state(g, 4), gradient.params(g, 0.3), b)
    assert s["synapse"]["w"].dtype == jnp.float32
    assert abs(float(loss) - r.loss) < 1e-5
    assert _max_err(prog, s, r.state, g) < 1e-5


def test_dense_lowering_is_used_for_mlp_layers():
    for linear, sums in ((False, {"strided", "rows"}), (True, {"matmul"})):
        prog = compile(GRAPHS["mlp-ce"](), linear=linear)
        lowerings = {p.lowering for w in prog.plan.forward + prog.plan.backward for b in w for p in b.ports}
        assert "segment" not in lowerings
        assert {"repeat", "tile"} | sums <= lowerings


def test_jit_equals_no_jit_and_unroll_equals_steps():
    g = GRAPHS["mlp-l2"]()
    rng = np.random.default_rng(2)
    prog = compile(g)
    params = gradient.params(g, 0.2)
    batches = [_batch(rng, 4, 2, 1, "l2") for _ in range(4)]
    s = prog.init(4)
    eager_losses = []
    with jax.disable_jit():
        for b in batches:
            s, l = prog.step(params, s, b)
            eager_losses.append(float(l))
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
    s_u, losses = jax.jit(prog.unroll)(params, prog.init(4), stacked)
    np.testing.assert_allclose(np.asarray(losses), eager_losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s_u["synapse"]["w"], s["synapse"]["w"], rtol=1e-5, atol=1e-6)


def test_vmap_over_tasks_equals_python_loop():
    g = GRAPHS["dag-l2"]()
    rng = np.random.default_rng(3)
    prog = compile(g)
    params = gradient.params(g, 0.2)
    tasks = [_batch(rng, 3, 2, 2, "l2") for _ in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *tasks)
    s0 = prog.init(3)
    s_v, l_v = jax.vmap(lambda b: prog.step(params, s0, b))(stacked)
    for i, b in enumerate(tasks):
        s_i, l_i = prog.step(params, s0, b)
        assert abs(float(l_v[i]) - float(l_i)) < 1e-6
        np.testing.assert_allclose(s_v["synapse"]["w"][i], s_i["synapse"]["w"], atol=1e-6)


def test_grad_through_unroll_wrt_learning_rate():
    """Meta-gradient: d(final loss)/d(lr) through a 5-step unroll matches finite differences."""
    g = GRAPHS["mlp-l2"]()
    rng = np.random.default_rng(4)
    batches = [_batch(rng, 4, 2, 1, "l2") for _ in range(5)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *batches)
    with jax.enable_x64(True):
        prog = compile(g)

        def meta_loss(lr):
            _, losses = prog.unroll({grp: {"lr": lr} for grp in g.groups()}, prog.init(4), stacked)
            return losses[-1]

        d = jax.grad(meta_loss)(0.2)
        eps = 1e-6
        fd = (meta_loss(0.2 + eps) - meta_loss(0.2 - eps)) / (2 * eps)
    assert abs(float(d) - float(fd)) < 1e-6 * max(1.0, abs(float(fd)))
    assert abs(float(d)) > 1e-6


@pytest.mark.parametrize("name", ["mlp-ce", "dag-l2"])
def test_compiled_gradient_protocol_equals_jax_grad_sgd_10_steps(name):
    g = GRAPHS[name]()
    loss_kind = "cross_entropy" if "ce" in name else "l2"
    n_in, n_out = len(g.agents("input")), len(g.agents("target"))
    rng = np.random.default_rng(5)
    B, lr = 4, 0.3
    with jax.enable_x64(True):
        prog = compile(g)
        s = prog.init(B)
        ref = init_state(g, B)
        for _ in range(10):
            b = _batch(rng, B, n_in, n_out, loss_kind)
            new_params = sgd_reference(g, ref, lr, b)
            for a, d in new_params.items():
                ref[a] = {**ref[a], **d}
            s, _ = jax.jit(prog.step)(gradient.params(g, lr), s, b)
        got = prog.to_agents(s)
        err = max(float(np.max(np.abs(got[a][f] - v))) for a, d in new_params.items() for f, v in d.items())
    assert err < 1e-9


def test_mlp_compiled_matches_dense_weights_layout():
    g = mlp([3, 2, 2], activation="tanh", loss="l2", seed=0)
    prog = compile(g)
    W = mlp_weights(prog.to_agents(prog.init(1)), [3, 2, 2])[0][0]
    # synapses are numbered i-major within a layer: row r = i * J + j
    np.testing.assert_array_equal(np.asarray(prog.init(1)["synapse"]["w"][:6]).reshape(3, 2), W)


def test_same_plan_reuses_the_executable():
    """A second graph with the same structure (other weights, renamed agents) does not retrace."""
    from agentgraph.compiler.program import _step_jit

    g1 = mlp([3, 5, 2], activation="tanh", loss="cross_entropy", seed=10)
    g2 = mlp([3, 5, 2], activation="tanh", loss="cross_entropy", seed=11)
    g3 = g2.relabel({a: ("renamed", a) for a in g2.agents()})
    b = _batch(np.random.default_rng(6), 2, 3, 2, "cross_entropy")
    p1, p2, p3 = compile(g1), compile(g2), compile(g3)
    assert p1.plan == p2.plan == p3.plan
    s1, _ = p1.step(gradient.params(g1, 0.1), p1.init(2), b)
    before = _step_jit._cache_size()
    s2, _ = p2.step(gradient.params(g2, 0.1), p2.init(2), b)
    s3, _ = p3.step(gradient.params(g3, 0.1), p3.init(2), b)
    assert _step_jit._cache_size() == before
    assert not np.allclose(s1["synapse"]["w"], s2["synapse"]["w"])  # really other weights
    np.testing.assert_array_equal(s2["synapse"]["w"], s3["synapse"]["w"])  # renaming changes nothing
    # a graph of another structure does compile anew
    p4 = compile(mlp([3, 6, 2], activation="tanh", loss="cross_entropy"))
    p4.step(gradient.params(g1, 0.1), p4.init(2), b)
    assert _step_jit._cache_size() == before + 1


def test_program_is_a_pytree_and_a_jit_argument():
    """Index arrays and initial values are the leaves; programs of one structure share one trace."""
    g1 = mlp([3, 4, 2], activation="tanh", loss="cross_entropy", seed=0)
    g2 = mlp([3, 4, 2], activation="tanh", loss="cross_entropy", seed=1)
    p1, p2 = compile(g1), compile(g2)
    assert jax.tree.structure(p1) == jax.tree.structure(p2)
    paths = {jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(p1)}
    assert ".initial['synapse']['w']" in paths
    traces = []

    @jax.jit
    def run(prog, params, s, b):
        traces.append(1)
        return prog.step(params, s, b)

    b = _batch(np.random.default_rng(8), 2, 3, 2, "cross_entropy")
    params = gradient.params(g1, 0.1)
    for p in (p1, p2):
        s_j, l_j = run(p, params, p.init(2), b)
        s_e, l_e = p.step(params, p.init(2), b)
        assert float(l_j) == float(l_e)
        np.testing.assert_array_equal(s_j["synapse"]["w"], s_e["synapse"]["w"])
    assert len(traces) == 1
    # init inside a trace uses the traced program's own initial values (leaves, not constants)
    w = jax.jit(lambda p: p.init(1)["synapse"]["w"])
    np.testing.assert_array_equal(w(p2), p2.init(1)["synapse"]["w"])
    np.testing.assert_array_equal(w(p1), p1.init(1)["synapse"]["w"])


def test_unflatten_does_no_compilation_work(monkeypatch):
    from agentgraph.compiler import Program

    prog = compile(random_dag(2, 4, 1, seed=0))
    leaves, tree = jax.tree.flatten(prog)
    monkeypatch.setattr(Program, "__init__", lambda *a, **k: pytest.fail("unflatten re-ran compilation"))
    again = jax.tree.unflatten(tree, leaves)
    assert again.plan is prog.plan and again.index is prog.index
    doubled = jax.tree.map(lambda v: v * 2, prog)
    assert doubled.plan is prog.plan and repr(doubled) == repr(prog)


def test_lowering_errors_name_the_kind_and_an_agent():
    from agentgraph import AgentGraph, AgentGraphError, Field, Kind, Port

    class PythonBranch(Kind):
        name = "branchy"
        fields = {"x": Field(per_example=True)}
        forward_ports = {"x": Port(1)}
        forward_outputs = {"out": 1}

        def forward(self, params, state, inputs):
            if inputs["x"][0] > 0:  # Python control flow on a traced value cannot be lowered
                return {**state, "x": inputs["x"][0]}, inputs["x"]
            return state, -inputs["x"]

    class WrongShape(Kind):
        name = "wrong"
        fields = {"x": Field(per_example=True)}
        forward_ports = {"x": Port(1)}
        forward_outputs = {"out": 1}

        def forward(self, params, state, inputs):
            return state, jnp.zeros(3)

    for kind in (PythonBranch(), WrongShape()):
        g = AgentGraph(kinds=[kind])
        g.add_agent("in", "input", slot=0)
        g.add_agent("k0", kind.name)
        g.add_arrow("in", "k0")
        prog = compile(g)
        with pytest.raises(AgentGraphError, match=rf"kind '{kind.name}'.*agent 'k0'"):
            prog.step(None, prog.init(2), {"x": np.ones((2, 1))})
    with pytest.raises(AgentGraphError, match="Batch has no key 'x'"):
        prog.step(None, prog.init(2), {})


def test_a_state_of_another_program_is_refused_naming_the_kind():
    """The two lowerings keep different scratch fields (the matmul lowering keeps no synapse
    ``x``): a state made by one and stepped by the other is one AgentGraphError, in step, forward
    and unroll alike — not a KeyError from inside the trace."""
    from agentgraph import AgentGraphError

    g = mlp([4, 3, 2], activation="tanh", loss="l2", seed=0)
    fused, agentwise = compile(g), compile(g, linear=False)
    params, b = gradient.params(g, 0.1), {"x": np.ones((2, 4)), "y": np.zeros((2, 2))}
    assert set(fused.init(2)["synapse"]) != set(agentwise.init(2)["synapse"])
    for call in (lambda s: fused.step(params, s, b), lambda s: fused.forward(params, s, b),
                 lambda s: fused.unroll(params, s, jax.tree.map(lambda v: v[None], b))):
        with pytest.raises(AgentGraphError, match=r"state\['synapse'\] has fields .*another program"):
            call(agentwise.init(2))
    fused.step(params, fused.init(2), b)  # its own state steps
