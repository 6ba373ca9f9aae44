"""Dense blocks of linear agents as matrix products (agentgraph/compiler/linear.py): the plan uses
them where the declarations and the wiring allow, and the results equal the agent-by-agent
lowering and the interpreter (values, updates, gradients through the unroll)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter, mlp, random_dag
from agentgraph.builders import mlp_network, random_dag_network
from agentgraph.nodes import Field, Kind, Linear, Synapse
from agentgraph.arrows.ports import Port
from agentgraph.protocols import gradient
from agentgraph.protocols.blur import GROUP, BlurSynapse, blur_network, init_genome
from agentgraph.testing import check_declarations, state_deviation


def _lowerings(prog):
    return [p.lowering for w in prog.plan.forward + prog.plan.backward for b in w for p in b.ports]


def test_mlp_synapse_layers_become_matmuls_and_their_products_are_never_materialised():
    g = mlp([6, 5, 4, 3], activation="tanh", loss="cross_entropy", seed=0)
    fused, plain = compile(g), compile(g, linear=False)
    assert _lowerings(fused).count("matmul") == 3 + 2  # every layer forward, every hidden layer backward
    assert "matmul" not in _lowerings(plain)
    syn = [b for w in fused.plan.forward + fused.plan.backward for b in w if b.kind == "synapse"]
    assert all(b.dropped == ("out",) for b in syn)  # nobody reads a synapse's own product
    assert sum(len(b.outer) for b in syn) == 3  # every layer's update is one outer product
    n_syn = 6 * 5 + 5 * 4 + 4 * 3
    rows = {(t, s): r for t, s, r in fused.plan.buffers}
    rows_plain = {(t, s): r for t, s, r in plain.plan.buffers}
    assert rows[("forward", 1)] == rows_plain[("forward", 1)] - n_syn  # synapse rows left the buffers


def _max_err(a, b, skip=()):
    return max(float(np.max(np.abs(np.asarray(a[k][f]) - np.asarray(b[k][f])))) for k in b for f in b[k] if f not in skip)


GRAPHS = {
    "mlp": lambda: mlp([4, 5, 3], activation="sigmoid", loss="cross_entropy", init_std=0.5, seed=0),
    "dag": lambda: random_dag(3, 6, 2, edge_prob=0.9, parallel_prob=0.0, activation="tanh", loss="l2", seed=4),
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_gradient_protocol_fused_equals_interpreter_x64(name):
    g = GRAPHS[name]()
    n_in, n_out = len(g.agents("input")), len(g.agents("target"))
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        prog = compile(g)
        s_c, s_i = prog.init(3), interpreter.init_state(g, 3)
        for _ in range(3):
            b = {"x": rng.normal(size=(3, n_in)), "y": rng.normal(size=(3, n_out))}
            r = interpreter.step(g, s_i, gradient.params(g, 0.3), b)
            s_c, loss = prog.step(gradient.params(g, 0.3), s_c, b)
            s_i = r.state
            assert abs(float(loss) - r.loss) < 1e-10
            assert state_deviation(g, prog.to_agents(s_c), s_i) < 1e-10  # the synapses' x is scratch
    if name == "mlp":  # dense layers: the fused update reads x from the forward buffer, x is never written
        assert all("x" in b.unwritten for w in prog.plan.forward for b in w if b.kind == "synapse")


def _blur(seed=2, dag=False, exact=False):
    net = (random_dag_network(3, 5, 2, edge_prob=0.8, parallel_prob=0.2, activation="tanh", loss="l2", seed=seed) if dag
           else mlp_network([4, 5, 3], activation="tanh", loss="l2"))
    return blur_network(net, k=3, sigma="tanh", init_std=0.5, exact=exact)


@pytest.mark.parametrize("exact", [False, True], ids=["approx", "exact"])
@pytest.mark.parametrize("dag", [False, True], ids=["mlp", "dag"])
def test_blur_fused_equals_interpreter_x64(dag, exact):
    b = _blur(dag=dag, exact=exact)
    genome = jax.tree.map(lambda v: np.asarray(v, np.float64), init_genome(3, jax.random.PRNGKey(0)))
    genome = {**genome, "f_t": np.float64(0.9), "eta_t": np.float64(0.3)}
    rng = np.random.default_rng(3)
    st = interpreter.init_state(b.graph, 4)
    for a in b.graph.agents("blur_synapse"):
        st[a]["w"] = rng.normal(size=3)
    with jax.enable_x64(True):
        prog = compile(b.graph, dtype=jnp.float64)
        if not dag:
            assert "matmul" in _lowerings(prog)
            # the outer-product update is fused in the phase that makes it (exact: the update phase)
            assert any(blk.outer for w in prog.plan.waves("update" if exact else "backward") for blk in w)
            # approximate BLUR's stored pre-state is scratch: the fused update reads the forward
            # sweep's messages and the forward sweep never writes it
            assert any(blk.unwritten == (("a_in",) if not exact else ()) for w in prog.plan.waves("forward") for blk in w
                       if blk.kind == "blur_synapse")
            assert all(blk.unwritten == () for w in prog.plan.waves("forward") for blk in w) == exact
        sc = prog.from_agents(st)
        for _ in range(2):
            x, y = rng.uniform(-1, 1, (4, len(b.graph.agents("blur_input")))), rng.normal(size=(4, len(b.graph.agents("blur_label"))))
            st = interpreter.step(b.graph, st, {GROUP: genome}, {"x": x, "y": y}).state
            sc, _ = prog.step({GROUP: genome}, sc, {"x": x, "y": y})
        assert _max_err(prog.to_agents(sc), st, skip={"a_in"}) < 1e-10  # a_in: scratch, unspecified between steps


@pytest.mark.parametrize("exact", [False, True], ids=["approx", "exact"])
def test_float32_and_gradient_through_the_unroll_agree_with_the_agent_by_agent_lowering(exact):
    b = _blur(exact=exact)
    genome = init_genome(3, jax.random.PRNGKey(1))
    rng = np.random.default_rng(0)
    n_in, n_out = len(b.graph.agents("blur_input")), len(b.graph.agents("blur_label"))
    batches = {"x": jnp.asarray(rng.uniform(-1, 1, (4, 3, n_in)), jnp.float32),
               "y": jnp.asarray(rng.normal(size=(4, 3, n_out)), jnp.float32)}

    w0 = None

    def score(prog):
        nonlocal w0
        s0 = prog.init(3)
        if w0 is None:
            w0 = jnp.asarray(rng.normal(size=s0["blur_synapse"]["w"].shape), jnp.float32)
        s0["blur_synapse"]["w"] = w0  # both lowerings number the agents alike

        def f(gn):
            s, _ = prog.unroll({GROUP: gn}, s0, batches)
            return jnp.sum(s["blur_synapse"]["w"] ** 2) + jnp.sum(s["blur_neuron"]["a"] ** 2)
        return jax.value_and_grad(f)(genome)

    (v1, g1), (v0, g0) = score(compile(b.graph)), score(compile(b.graph, linear=False))
    assert abs(float(v1) - float(v0)) < 1e-4 * max(1.0, abs(float(v0)))
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-3, atol=1e-4, err_msg=k)
    assert max(float(jnp.abs(v).max()) for v in jax.tree.leaves(g0)) > 1e-3  # the gradient is not trivially zero


def test_library_declarations_hold_and_a_false_one_is_caught():
    assert check_declarations(Synapse(), {"lr": 0.1}) == 4  # + scratch x
    assert check_declarations(BlurSynapse(3), init_genome(3, jax.random.PRNGKey(0))) == 4  # + scratch a_in
    assert check_declarations(BlurSynapse(3, exact=True), init_genome(3, jax.random.PRNGKey(0))) == 3

    class Twice(Synapse):  # claims y = w x, computes 2 w x
        name = "twice"

        def forward(self, params, state, inputs):
            s, y = super().forward(params, state, inputs)
            return s, 2.0 * y

    with pytest.raises(AgentGraphError, match="twice.*forward output 'out'"):
        check_declarations(Twice(), {"lr": 0.1})

    class Leaky(BlurSynapse):  # its backward message reads the scratch field a_in
        name = "leaky"

        def linear(self, sweep):  # no longer linear in its message
            return {}

        def backward(self, params, state, messages):
            s, out, upd = super().backward(params, state, messages)
            return s, {"out": out["out"] + state["a_in"]}, upd

    with pytest.raises(AgentGraphError, match="leaky.*backward output 'out' depends on the scratch field 'a_in'"):
        check_declarations(Leaky(3), init_genome(3, jax.random.PRNGKey(0)))
    # a subclass that overrides a function does not inherit the declarations that cover it
    assert Twice().declared_linear("forward") == {} and set(Twice().declared_linear("backward")) == {"out"}
    assert Twice().declared_outer() == {} and set(Synapse().declared_outer()) == {"w"}


def test_a_user_kind_with_a_vector_coefficient_is_fused():
    class Gate(Kind):  # y = g ⊙ x with a 2-vector per agent, no backward
        name = "gate"
        fields = {"g": Field((2,))}
        forward_ports = {"x": Port(2, "sum")}
        forward_outputs = {"out": 2}

        def linear(self, sweep):
            return {"out": Linear("x", "g")} if sweep == "forward" else {}

        def forward(self, params, state, inputs):
            return state, state["g"] * inputs["x"]

    class Src(Kind):
        name = "src"
        fields = {"v": Field((2,))}
        forward_outputs = {"out": 2}

        def forward(self, params, state, inputs):
            return state, state["v"]

    class Sink(Kind):
        name = "sink"
        fields = {"s": Field((2,), per_example=True)}
        forward_ports = {"x": Port(2, "sum")}

        def forward(self, params, state, inputs):
            return {**state, "s": inputs["x"]}, {}

    from agentgraph import AgentGraph

    g = AgentGraph(kinds=[Gate(), Src(), Sink()])
    rng = np.random.default_rng(0)
    for i in range(3):
        g.add_agent(("s", i), "src", state={"v": rng.normal(size=2)})
    for j in range(4):
        g.add_agent(("t", j), "sink")
    for i in range(3):
        for j in range(4):
            g.add_agent(("g", i, j), "gate", state={"g": rng.normal(size=2)})
            g.add_arrow(("s", i), ("g", i, j), port="x")
            g.add_arrow(("g", i, j), ("t", j), port="x")
    g.validate()
    with jax.enable_x64(True):
        prog = compile(g)
        assert "matmul" in _lowerings(prog)
        s, _ = prog.step(None, prog.init(2), {})
        want = interpreter.step(g, interpreter.init_state(g, 2), None, {}).state
        assert state_deviation(g, prog.to_agents(s), want) < 1e-12


def test_declared_linear_maths_on_a_user_arrow_type_is_a_matrix_product():
    """A kind that declares ``Linear`` outputs for an arrow type of its own (predictive coding's
    relayed synapses on ``pc_infer``) gets the matmul lowering in that sweep, as in
    ``forward``/``backward``; a subclass redefining ``act`` without redeclaring loses it."""
    from agentgraph.builders import mlp_network
    from agentgraph.protocols.predictive_coding import INFER, pc_network

    g = pc_network(mlp_network([6, 5, 3], loss="l2"), T=1).graph
    plan = compile(g).plan
    assert "matmul" in {p.lowering for w in plan.waves(INFER) for b in w for p in b.ports}
    syn = g.kinds["synapse"]
    assert syn.declared_linear(INFER)
    redefined = type("Redefined", (type(syn),), {"act": lambda self, t, p, s, i: type(syn).act(self, t, p, s, i)})()
    assert not redefined.declared_linear(INFER)
