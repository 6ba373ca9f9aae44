"""Node perturbation against its theory, float64. The gradient ``δ_j = ∂L/∂z_j`` of every unit
comes from a NumPy backprop of the same MLP (checked against ``jax.grad`` in the slow test). One noise sample with a tiny σ gives the directional estimate ``(δ · ξ) ξ_j`` to
O(σ); the mean over M samples is the gradient step within five standard errors; compiled equals
the interpreter on mlp, random_dag and cnn; the protocol's stepping draws fresh noise each step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import Conv, Pool, as_network, cnn, mlp_network, random_dag_network
from agentgraph.protocols.base import resolve
from agentgraph.protocols.perturbation import node_perturbation
from agentgraph.testing import compare
from agentgraph.testing.oracle import sgd_reference

LR = 0.5


def _setup(loss, sigma, B, rng):
    net = mlp_network([3, 4, 2], activation="tanh", loss=loss, init_std=0.8, seed=5)
    p = node_perturbation(init_lr=LR, sigma=sigma)
    g = p.network(net).graph
    params = {grp: {"lr": LR, "sigma": sigma} for grp in g.groups()}
    st = interpreter.init_state(g, B)
    for a in g.agents("bias"):
        st[a]["b"] = np.asarray(rng.normal(0, 0.3))
        st[a]["xi"] = rng.normal(size=B)
    x = rng.normal(size=(1, 3))
    batch = {"x": np.repeat(x, B, 0), "y": np.repeat(np.eye(2)[[1]], B, 0)}
    delta = _unit_gradients(st, x[0], loss)
    return g, params, st, batch, delta


def _unit_gradients(st, x, loss):
    """NumPy backprop through the ``[3, 4, 2]`` tanh MLP: ``{("b", l, j): ∂L/∂z_lj}`` for one
    example ``x`` ``[3]`` with target class 1."""
    W = [np.array([[float(st[("w", l, i, j)]["w"]) for j in range(n)] for i in range(m)])
         for l, (m, n) in enumerate(((3, 4), (4, 2)))]
    b = [np.array([float(st[("b", l, j)]["b"]) for j in range(n)]) for l, n in enumerate((4, 2))]
    h = np.tanh(x @ W[0] + b[0])
    z = h @ W[1] + b[1]
    t = np.array([0.0, 1.0])
    d2 = np.exp(z - z.max()) / np.exp(z - z.max()).sum() - t if loss == "cross_entropy" else z - t
    d1 = (W[1] @ d2) * (1 - h**2)
    return {**{("b", 0, j): d1[j] for j in range(4)}, **{("b", 1, j): d2[j] for j in range(2)}}


def _expected_and_got(g, st, new, delta, xi_mean):
    """Per parameter: (got change, the estimator's own expectation ``xi_mean(a, a')``)."""
    rows = []
    for a in g.agents("bias"):
        rows.append((float(new[a]["b"] - st[a]["b"]), -LR * xi_mean(a), None))
    for s in g.agents("synapse"):
        (_, l, i, j) = s
        x = float(new[s]["x"][0])
        rows.append((float(new[s]["w"] - st[s]["w"]), -LR * xi_mean(("b", l, j)) * x, (("b", l, j), x)))
    return rows


@pytest.mark.parametrize("loss", [pytest.param("l2", marks=pytest.mark.slow), "cross_entropy"])
def test_one_sample_with_a_tiny_sigma_is_the_directional_estimate(loss):
    rng = np.random.default_rng(0)
    sigma = 1e-6
    g, params, st, batch, delta = _setup(loss, sigma, 1, rng)
    new = interpreter.step(g, st, params, batch).state
    proj = sum(delta[a] * float(st[a]["xi"][0]) for a in delta)  # δ · ξ
    rows = _expected_and_got(g, st, new, delta, lambda a: proj * float(st[a]["xi"][0]))
    scale = max(abs(w) for _, w, _ in rows)
    # the estimate's error is the second-order term σ ξᵀHξ ξ_j / 2 (|H| ≲ 1 here) and rounding 1e-16/σ
    err = max(abs(got - want) for got, want, _ in rows)
    print(f"{loss}: largest deviation from (δ·ξ)ξ_j: {err / scale:.2e} of the largest update")
    assert err < 1e-5 * scale  # σ = 1e-6 times a second-order coefficient ξᵀHξ/2 of order 1-10
    assert scale > 1e-2


def test_the_expected_update_is_the_gradient_step():
    rng = np.random.default_rng(1)
    M, sigma = 4096, 1e-3
    g, params, st, batch, delta = _setup("cross_entropy", sigma, M, rng)
    with jax.enable_x64(True):  # compiled (equal to the interpreter: below), for speed at M examples
        prog = compile(g, dtype=jnp.float64)
        new = prog.to_agents(prog.step(params, prog.from_agents(st), batch)[0])
    rows = _expected_and_got(g, st, new, delta, lambda a: delta[a])
    norm2 = sum(d * d for d in delta.values())
    worst = 0.0
    for (got, want, syn), a in zip(rows, [*g.agents("bias"), *g.agents("synapse")]):
        unit, x = (a, 1.0) if syn is None else syn
        # one sample's variance (first order in σ): Var[(δ·ξ) ξ_j] = |δ|² + δ_j²; the mean of M: / M
        se = LR * abs(x) * np.sqrt((norm2 + delta[unit] ** 2) / M)
        worst = max(worst, abs(got - want) / se)
    print(f"worst |mean update − gradient step| = {worst:.2f} standard errors (M={M}, σ={sigma})")
    assert worst < 5.0, worst  # five standard errors (the O(σ²) bias is ~1e-6 of them)
    assert max(abs(w) for _, w, _ in rows) > 20 * LR * np.sqrt(2 * norm2 / M)  # the signal dwarfs the noise


@pytest.mark.parametrize("net", ["mlp", pytest.param("random_dag", marks=pytest.mark.slow),
                                 pytest.param("cnn", marks=pytest.mark.slow)])
def test_compiled_equals_interpreter(net):
    rng = np.random.default_rng(2)
    if net == "cnn":
        lib = as_network(cnn((1, 5, 5), [Conv(2, 3, 1, 1), Pool(2, mode="max"), Conv(2, 2)], 3, "relu",
                             "cross_entropy", init_std=0.3), 0.3)
        n_in, n_out = 25, 3
    elif net == "random_dag":
        lib = random_dag_network(3, 5, 2, edge_prob=0.5, parallel_prob=0.3, activation="tanh", seed=2)
        n_in, n_out = 3, 2
    else:
        lib, n_in, n_out = mlp_network([3, 4, 2], activation="tanh", init_std=0.8), 3, 2
    p = node_perturbation(sigma=0.1)
    g = p.network(lib).graph
    assert len(g.ties()) == len(lib.graph.ties())
    params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(p.init(None, g), {}, g))
    st = interpreter.init_state(g, 3)
    for a in g.agents("bias"):
        st[a]["xi"] = rng.normal(size=3)
    batches = [{"x": rng.normal(size=(3, n_in)), "y": np.eye(n_out)[[0, 1, 1]]} for _ in range(2)]
    c = compare(g, params, batches, state=st)
    assert c.worst < 1e-10
    new = interpreter.step(g, st, params, batches[0]).state
    assert max(abs(float(new[a]["w"] - st[a]["w"])) for a in g.agents("synapse")) > 1e-6


def test_the_stepping_draws_fresh_noise_every_step():
    p = resolve({"rule": "node_perturbation", "sigma": 0.05, "seed": 3})
    g = p.network(mlp_network([3, 4, 2], activation="tanh")).graph
    prog = compile(g)
    params = p.params(p.init(None, g), {}, g)
    state = prog.init(8)
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(8, 3)).astype(np.float32), "y": np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)]}
    s1, _ = p.inner_step(None, prog, params, state, batch)
    s2, _ = p.inner_step(None, prog, params, s1, batch)
    xi1, xi2 = np.asarray(s1["bias"]["xi"]), np.asarray(s2["bias"]["xi"])
    assert np.asarray(s2["bias"]["t"]).tolist() == [2.0] * len(g.agents("bias"))
    assert abs(xi1.std() - 1) < 0.3 and np.abs(xi1 - xi2).max() > 0.1  # N(0, 1), fresh each step
    assert np.abs(xi1[:, 0] - xi1[:, 1]).max() > 0.1  # and per example
    with pytest.raises(AgentGraphError, match="must be positive"):
        node_perturbation(sigma=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["l2", "cross_entropy"])
def test_the_numpy_unit_gradients_are_autodiffs(loss):
    rng = np.random.default_rng(4)
    g, params, st, batch, delta = _setup(loss, 1e-3, 1, rng)
    net = mlp_network([3, 4, 2], activation="tanh", loss=loss, init_std=0.8, seed=5).graph
    plain = {a: {f: v for f, v in fs.items() if f in net.kind_of(a).fields} for a, fs in st.items() if a in set(net.agents())}
    ref = sgd_reference(net, plain, 1.0, batch)  # a bias moves by −δ_j at rate 1
    assert max(abs(float(plain[a]["b"] - ref[a]["b"]) - d) for a, d in delta.items()) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("net", ["mlp", "random_dag"])
def test_noise_that_realises_its_covariance_exactly_gives_the_gradient_step(net):
    """Antithetic unit probes ``ξ⁽ᵇ⁾ = ±√n e_b`` (``n`` units, ``2n`` copies of one example) have
    mean ``ξξᵀ = I`` exactly and odd moments zero, so one step is the SGD step of ``jax.grad`` to
    O(σ²) — on a random DAG with skip connections and parallel arrows (doubled synapses count twice
    in the reward phase as in the gradient)."""
    if net == "mlp":
        lib = mlp_network([3, 4, 2], activation="tanh", init_std=0.8, seed=5).graph
    else:
        lib = random_dag_network(3, 5, 2, edge_prob=0.5, parallel_prob=0.3, activation="tanh", init_std=0.8, seed=2).graph
    sigma = 1e-4
    g = node_perturbation(sigma=sigma).network(as_network(lib, 0.8)).graph
    units = g.agents("bias")
    n = len(units)
    B = 2 * n
    probes = np.concatenate([np.eye(n), -np.eye(n)]) * np.sqrt(n)  # [B, n]
    rng = np.random.default_rng(3)
    st = interpreter.init_state(g, B)
    for k, a in enumerate(units):
        st[a]["b"] = np.asarray(rng.normal(0, 0.3))
        st[a]["xi"] = probes[:, k]
    x = rng.normal(size=(1, 3))
    batch = {"x": np.repeat(x, B, 0), "y": np.repeat(np.eye(2)[[1]], B, 0)}
    new = interpreter.step(g, st, {grp: {"lr": LR, "sigma": sigma} for grp in g.groups()}, batch).state
    plain = {a: {f: v for f, v in fs.items() if f in lib.kind_of(a).fields} for a, fs in st.items() if a in set(lib.agents())}
    want = sgd_reference(lib, plain, LR, batch)  # B copies of one example: its gradient
    moved = max(abs(float(want[a][f] - plain[a][f])) for a in want for f in want[a])
    dev = max(abs(float(new[a][f] - want[a][f])) for a in want for f in want[a])
    print(f"{net}: |step − SGD step| = {dev:.1e}, largest SGD change {moved:.1e}")
    assert moved > 1e-2 and dev < 1e-6 * moved  # O(σ²) = 1e-8 times third derivatives, rounding 1e-16/σ
