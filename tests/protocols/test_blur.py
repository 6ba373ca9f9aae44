"""BLUR as a library protocol: the transform of library networks, compiled == interpreted, the
a random genome follows a NumPy reference of the equations, the
backprop genome reproduces SGD to 1e-9 (float64) on an mlp and a random DAG, settings errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import mlp_network, random_dag_network
from agentgraph.protocols import gradient
from agentgraph.protocols.base import resolve
from agentgraph.protocols.blur import GROUP, backprop_genome, blur, blur_network, init_genome

NETS = {"mlp": lambda: mlp_network([3, 4, 2], activation="identity", loss="l2", init_std=0.5, seed=0),
        "random_dag": lambda: random_dag_network(3, 5, 2, edge_prob=0.5, parallel_prob=0.3, activation="identity",
                                                 loss="l2", init_std=0.5, seed=4)}


def _batch(n_in, n_out, B=5, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(B, n_in)), "y": rng.normal(size=(B, n_out))}


@pytest.mark.parametrize("name", sorted(NETS))
def test_transform_keeps_the_wiring_and_reads_the_output_units(name):
    net = NETS[name]()
    b = blur_network(net, k=3)
    g = b.graph
    assert len(g.agents("blur_synapse")) == len(net.graph.agents("synapse"))
    assert len(g.agents("blur_neuron")) + len(g.agents("blur_output")) == len(net.graph.agents("bias"))
    assert len(g.agents("blur_output")) == len(g.agents("blur_label")) == 2
    assert not any(g.agents(k) for k in ("softmax", "l2", "cross_entropy", "target"))
    assert b.readout.kind == "logits" and b.readout.index == 0 and len(b.readout.agents) == 2
    assert g.number_of_arrows("forward") == net.graph.number_of_arrows("forward") - sum(
        1 for s, d, _, _ in net.graph.arrows("forward") if net.graph.kind_of(d).name in ("l2", "target"))


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("name", sorted(NETS))
def test_backprop_genome_makes_sgds_updates(name, exact):
    """The BLUR authors' check: a 2-state genome reproduces backprop's weight updates."""
    net = NETS[name]()
    lr = 0.3
    with jax.enable_x64(True):
        b = blur_network(net, k=2, sigma="identity", exact=exact)
        plain = compile(net.graph, dtype=jnp.float64)
        prog = compile(b.graph, dtype=jnp.float64)
        batch = _batch(3, 2)
        rng = np.random.default_rng(1)
        s_plain = plain.init(5)
        bias0 = rng.normal(size=s_plain["bias"]["b"].shape)
        s_plain = {**s_plain, "bias": {**s_plain["bias"], "b": jnp.asarray(bias0)}}
        p1, _ = plain.step(gradient.params(net.graph, lr), s_plain, batch)
        # the same network in BLUR: every weight and bias in both channels
        w_of = dict(zip(net.graph.agents("synapse"), np.asarray(s_plain["synapse"]["w"])[
            plain.rows.row[[net.graph.agents().index(a) for a in net.graph.agents("synapse")]]]))
        s = prog.init(5)
        syn = b.graph.agents("blur_synapse")
        rows = prog.rows.row[[b.graph.agents().index(a) for a in syn]]
        w2 = np.zeros(s["blur_synapse"]["w"].shape)
        w2[rows] = np.stack([[w_of[a], w_of[a]] for a in syn])
        s = {**s, "blur_synapse": {**s["blur_synapse"], "w": jnp.asarray(w2)}}
        bias_of = {a: bias0[plain.rows.row[net.graph.agents().index(a)]] for a in net.graph.agents("bias")}
        for kind in ("blur_neuron", "blur_output"):
            agents = b.graph.agents(kind)
            if not agents:
                continue
            r = prog.rows.row[[b.graph.agents().index(a) for a in agents]]
            bb = np.zeros(s[kind]["b"].shape)
            bb[r] = np.stack([[bias_of[a]] * 2 for a in agents])
            s = {**s, kind: {**s[kind], "b": jnp.asarray(bb)}}
        genome = backprop_genome(lr)
        assert genome["eta_t"].dtype == jnp.float64
        s1, _ = prog.step({GROUP: genome}, s, batch)
        new_w = np.asarray(s1["blur_synapse"]["w"])[rows]
        lib_w = np.asarray(p1["synapse"]["w"])[plain.rows.row[[net.graph.agents().index(a) for a in syn]]]
        dev = max(np.abs(new_w[:, 0] - lib_w).max(), np.abs(new_w[:, 1] - lib_w).max())
        for kind in ("blur_neuron", "blur_output"):
            for a in b.graph.agents(kind):
                got = np.asarray(s1[kind]["b"])[prog.rows.row[b.graph.agents().index(a)]]
                want = float(np.asarray(p1["bias"]["b"])[plain.rows.row[net.graph.agents().index(a)]])
                dev = max(dev, np.abs(got - want).max())
        assert np.abs(lib_w - w2[rows][:, 0]).max() > 1e-3  # SGD did change the weights
        print(f"backprop genome vs SGD on {name}: largest weight/bias deviation {dev:.2e}")  # pytest -s shows it
        assert dev < 1e-9, dev


@pytest.mark.parametrize("exact", [False, True])
def test_compiled_equals_interpreted_with_a_random_genome(exact):
    net = random_dag_network(3, 4, 2, edge_prob=0.5, parallel_prob=0.3, activation="tanh", loss="l2", seed=2)
    b = blur_network(net, k=3, sigma="tanh", init_std=0.5, exact=exact)
    genome = jax.tree.map(lambda v: np.asarray(v, np.float64), init_genome(3, jax.random.PRNGKey(0)))
    batch = _batch(3, 2)
    st = interpreter.init_state(b.graph, 5)
    rng = np.random.default_rng(3)
    for a in b.graph.agents("blur_synapse"):
        st[a]["w"] = rng.normal(size=3)
    r = interpreter.step(b.graph, st, {GROUP: genome}, batch)
    with jax.enable_x64(True):
        prog = compile(b.graph, dtype=jnp.float64)
        s1, _ = prog.step({GROUP: genome}, prog.from_agents(st), batch)
        got = prog.to_agents(s1)
    for a in b.graph.agents("blur_synapse") + b.graph.agents("blur_output"):
        for f in r.state[a]:
            np.testing.assert_allclose(got[a][f], r.state[a][f], atol=1e-10, err_msg=f"{a} {f}")


def _reference_step(A, W, Bias, g, x, y, exact=False):
    """One BLUR step of a layered network on dense NumPy arrays, written from the equations in
    docs/blur.md (not from the kinds): ``A[l] [B, n_l, k]`` neuron states, ``W[l] [n_l, n_{l+1}, k]``
    synapses, ``Bias[l] [n_{l+1}, k]``; σ = tanh; updates averaged over the batch. ``exact``: the
    paper's rule, each synapse updated from both neurons' states after the backward pass;
    otherwise from the pre-neuron's forward state."""
    L, k = len(W), W[0].shape[-1]
    e0 = np.eye(k)[0]
    A = [np.zeros((x.shape[0], W[0].shape[0], k))] + [None] * L
    A[0][:, :, 0] = x
    stored = []
    for l in range(L):  # forward, zero-out
        stored.append(A[l].copy())
        msg = np.einsum("bik,ijk->bjk", np.einsum("kc,bic->bik", g["nu"], A[l]), W[l])
        A[l + 1] = np.tanh(g["eta"] * (msg + Bias[l] * (g["nu"] @ e0)))
    A[L][:, :, 1] = y  # labels into the output neurons; they do not update
    W_new, B_new = list(W), list(Bias)
    for l in reversed(range(L)):
        post = A[l + 1]  # the post-neurons' states after their backward
        mu_t_post = np.einsum("kc,bjc->bjk", g["mu_t"], post)
        B_new[l] = Bias[l] + (g["f_t"] - 1) * Bias[l] + g["eta_t"] * ((g["nu_t"].T @ e0) * mu_t_post).mean(0)
        if not exact:
            pre_t = np.einsum("ck,bic->bik", g["nu_t"], stored[l])
            W_new[l] = W[l] + (g["f_t"] - 1) * W[l] + g["eta_t"] * (pre_t[:, :, None] * mu_t_post[:, None]).mean(0)
        if l > 0:  # hidden neurons: messages through the synapses' old weights
            m = np.einsum("bjk,ijk->bik", np.einsum("kc,bjc->bjk", g["mu"], post), W[l])
            A[l] = np.tanh(g["f"] * A[l] + g["eta"] * m)
    if exact:  # after the backward pass: every neuron's final state on both ends
        for l in range(L):
            pre_t = np.einsum("ck,bic->bik", g["nu_t"], A[l])
            mu_t_post = np.einsum("kc,bjc->bjk", g["mu_t"], A[l + 1])
            W_new[l] = W[l] + (g["f_t"] - 1) * W[l] + g["eta_t"] * (pre_t[:, :, None] * mu_t_post[:, None]).mean(0)
    return A, W_new, B_new


@pytest.mark.parametrize("exact", [False, True])
def test_random_genome_follows_the_blur_equations_of_a_numpy_reference(exact):
    """Two steps of the interpreter and of the compiled program on an mlp with a random genome,
    against an independent dense implementation of the equations (weights, biases, states)."""
    sizes, k, Bn = (3, 4, 2), 3, 5
    b = blur_network(mlp_network(list(sizes), activation="tanh", loss="l2"), k=k, sigma="tanh", exact=exact)
    genome = jax.tree.map(lambda v: np.asarray(v, np.float64), init_genome(k, jax.random.PRNGKey(7)))
    genome = {**genome, "f_t": np.float64(0.9), "eta_t": np.float64(0.3)}
    rng = np.random.default_rng(5)
    W = [rng.normal(0, 0.7, (sizes[l], sizes[l + 1], k)) for l in range(2)]
    Bias = [rng.normal(0, 0.3, (sizes[l + 1], k)) for l in range(2)]
    st = interpreter.init_state(b.graph, Bn)
    for l in range(2):
        for i in range(sizes[l]):
            for j in range(sizes[l + 1]):
                st[("w", l, i, j)]["w"] = W[l][i, j]
        for j in range(sizes[l + 1]):
            st[("b", l, j)]["b"] = Bias[l][j]
    with jax.enable_x64(True):
        prog = compile(b.graph, dtype=jnp.float64)
        sc = prog.from_agents(st)
        A = None
        for t in range(2):
            x, y = rng.uniform(-1, 1, (Bn, sizes[0])), np.eye(sizes[-1])[rng.integers(0, sizes[-1], Bn)]
            st = interpreter.step(b.graph, st, {GROUP: genome}, {"x": x, "y": y}).state
            sc, _ = prog.step({GROUP: genome}, sc, {"x": x, "y": y})
            A, W, Bias = _reference_step(A, W, Bias, genome, x, y, exact)
        got = prog.to_agents(sc)
    for state in (st, got):
        for l in range(2):
            for j in range(sizes[l + 1]):
                np.testing.assert_allclose(state[("b", l, j)]["b"], Bias[l][j], atol=1e-10)
                np.testing.assert_allclose(state[("b", l, j)]["a"], A[l + 1][:, j], atol=1e-10)
                for i in range(sizes[l]):
                    np.testing.assert_allclose(state[("w", l, i, j)]["w"], W[l][i, j], atol=1e-10)
    assert np.abs(W[0]).max() > 0 and np.abs(A[1][:, :, 2]).max() > 1e-3  # every channel in play


def test_resolve_and_errors():
    p = resolve({"rule": "blur", "k": 3, "sigma": "identity"})
    assert p.name == "blur" and p.settings["k"] == 3
    with pytest.raises(AgentGraphError, match=r"protocol\.sigma"):
        resolve({"rule": "blur", "sigma": "softsign"})
    with pytest.raises(AgentGraphError, match=r"protocol\.k must be at least 2"):
        blur(k=1)


def test_exact_and_approximate_rules_differ_and_exact_is_the_protocols_default():
    net = mlp_network([3, 4, 2], activation="tanh", loss="l2")
    assert blur(k=3).network(net).graph.schedule != blur(k=3, exact=False).network(net).graph.schedule
    genome = jax.tree.map(lambda v: np.asarray(v, np.float64), init_genome(3, jax.random.PRNGKey(7)))
    genome = {**genome, "eta_t": np.float64(0.3)}
    batch = {"x": np.random.default_rng(0).uniform(-1, 1, (4, 3)), "y": np.eye(2)[[0, 1, 1, 0]]}
    ws = []
    for exact in (False, True):
        g = blur_network(net, k=3, exact=exact).graph
        st = interpreter.init_state(g, 4)
        for a in g.agents("blur_synapse"):
            st[a]["w"] = np.full(3, 0.5)
        ws.append(interpreter.step(g, st, {GROUP: genome}, batch).state[("w", 1, 0, 0)]["w"])  # a hidden pre-neuron
    assert np.abs(ws[0] - ws[1]).max() > 1e-4
