"""Hebbian learning against its formulas, float64: one step of the ABCD rule equals a NumPy
implementation of ``Δw = η mean(A x y + B x + C y + D)`` on a two-layer MLP (and plain Hebb,
``η mean(x y)``, with ``A = 1, B = C = D = 0``); on a random DAG each synapse's update uses its own
post-unit's output; Oja's rule drives a linear unit's weight vector to the first principal
component of a 2-d data set with norm 1; compiled equals the interpreter on mlp, random_dag, cnn."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import Conv, Pool, as_network, cnn, mlp_network, random_dag_network
from agentgraph.protocols.base import resolve
from agentgraph.protocols.hebbian import hebbian
from agentgraph.testing import compare

SIZES = [3, 4, 2]


def _setup(rng):
    p = hebbian()
    g = p.network(mlp_network(SIZES, activation="tanh", loss="l2", init_std=0.5, seed=1)).graph
    st = interpreter.init_state(g, 5)
    W = [rng.normal(0, 0.7, (SIZES[l], SIZES[l + 1])) for l in range(2)]
    bias = [rng.normal(0, 0.3, SIZES[l + 1]) for l in range(2)]
    for l in range(2):
        for i in range(SIZES[l]):
            for j in range(SIZES[l + 1]):
                st[("w", l, i, j)]["w"] = np.asarray(W[l][i, j])
        for j in range(SIZES[l + 1]):
            st[("b", l, j)]["b"] = np.asarray(bias[l][j])
    return p, g, st, W, bias


def _reference(W, bias, x, prm):
    """NumPy: the new weights after one ABCD step (per-layer ``prm[l] = (lr, A, B, C, D)``)."""
    h = np.tanh(x @ W[0] + bias[0])
    out = h @ W[1] + bias[1]
    new = []
    for l, (pre, post) in enumerate(((x, h), (h, out))):
        lr, A, B, C, D = prm[l]
        terms = A * pre[:, :, None] * post[:, None, :] + B * pre[:, :, None] + C * post[:, None, :] + D
        new.append(W[l] + lr * terms.mean(0))
    return new


@pytest.mark.parametrize("plain", [True, False])
def test_abcd_step_equals_numpy(plain):
    rng = np.random.default_rng(0)
    p, g, st, W, bias = _setup(rng)
    if plain:  # the protocol's own start: A = 1, B = C = D = 0 — plain Hebb
        params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(p.init(None, g), {}, g))
        prm = [(float(params[f"synapse:{l}"]["lr"]), 1.0, 0.0, 0.0, 0.0) for l in range(2)]
    else:
        prm = [(0.3, *rng.normal(size=4)), (0.2, *rng.normal(size=4))]
        params = {grp: {"lr": 0.0, "A": 0.0, "B": 0.0, "C": 0.0, "D": 0.0} for grp in g.groups()}
        for l in range(2):
            params[f"synapse:{l}"] = dict(zip(("lr", "A", "B", "C", "D"), prm[l]))
    x = rng.normal(size=(5, 3))
    batch = {"x": x, "y": np.zeros((5, 2))}
    new = interpreter.step(g, st, params, batch).state
    want = _reference(W, bias, x, prm)
    dev = max(abs(float(new[("w", l, i, j)]["w"]) - want[l][i, j]) for l in range(2) for i in range(SIZES[l])
              for j in range(SIZES[l + 1]))
    assert dev < 1e-12
    moved = max(abs(want[l] - W[l]).max() for l in range(2))
    assert moved > 1e-3
    assert all(float(new[("b", l, j)]["b"]) == bias[l][j] for l in range(2) for j in range(SIZES[l + 1]))
    if not plain:
        assert compare(g, params, [batch, {"x": rng.normal(size=(5, 3)), "y": np.zeros((5, 2))}], state=st).worst < 1e-10


def test_random_dag_synapses_learn_from_their_own_post_unit():
    rng = np.random.default_rng(1)
    p = hebbian("abcd", A=0.5, B=0.2, C=-0.3, D=0.1)
    lib = random_dag_network(3, 5, 2, edge_prob=0.5, parallel_prob=0.3, activation="tanh", seed=2)
    g = p.network(lib).graph
    params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(p.init(None, g), {}, g))
    lr, a, b, c, d = (float(params["synapse"][k]) for k in ("lr", "A", "B", "C", "D"))  # float32-rounded
    st = interpreter.init_state(g, 4)
    batch = {"x": rng.normal(size=(4, 3)), "y": np.zeros((4, 2))}
    fwd = interpreter.step(g, st, params, batch).state
    A = lib.graph.arrays()
    for k in range(len(g.agents("synapse"))):  # the post-unit from the builder's naming: ("b", v) [-> ("a", v)]
        s = A.names.index(("w", k))
        v = next(A.names[d] for d in A.dst[(A.src == s)] if A.names[d][0] == "b")[1]
        y = np.tanh(fwd[("a", v)]["x"]) if ("a", v) in fwd else fwd[("b", v)]["z"] + fwd[("b", v)]["b"]
        x = fwd[("w", k)]["x"]
        want = st[("w", k)]["w"] + lr * np.mean(a * x * y + b * x + c * y + d)
        assert abs(float(fwd[("w", k)]["w"]) - want) < 1e-12


def test_oja_finds_the_first_principal_component_with_norm_one():
    rng = np.random.default_rng(0)
    rot = np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
    x = rng.normal(size=(256, 2)) * np.array([2.0, 0.6]) @ rot.T
    C = x.T @ x / len(x)  # the rule averages y x over the batch: the uncentred second moment
    evals, evecs = np.linalg.eigh(C)
    pc1 = evecs[:, -1]
    p = resolve({"rule": "hebbian", "form": "oja", "init_lr": 0.05})
    g = p.network(mlp_network([2, 1], activation="identity", loss="l2", seed=3)).graph
    params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(p.init(None, g), {}, g))
    st = interpreter.init_state(g, 256)
    st[("w", 0, 0, 0)]["w"], st[("w", 0, 1, 0)]["w"] = np.asarray(0.3), np.asarray(-0.1)
    steps = 300
    batches = {"x": np.broadcast_to(x, (steps, 256, 2)), "y": np.zeros((steps, 256, 1))}
    with jax.enable_x64(True):
        prog = compile(g, dtype=jnp.float64)
        final, _ = jax.jit(lambda s, b: prog.unroll(params, s, b))(prog.from_agents(st), batches)
        got = prog.to_agents(final)
    w = np.array([float(got[("w", 0, i, 0)]["w"]) for i in range(2)])
    # the averaged rule's error shrinks like (1 − η(λ₁ − λ₂))^steps ≈ 1e-13 here: ask for 1e-8
    assert (1 - evals[0] / evals[-1]) * 0.05 * evals[-1] * steps > 25
    assert abs(np.linalg.norm(w) - 1) < 1e-8
    assert abs(abs(w @ pc1) - 1) < 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("net", ["random_dag", "cnn"])
def test_compiled_equals_interpreter(net):
    rng = np.random.default_rng(2)
    p = hebbian("oja" if net == "cnn" else "abcd", A=0.5, B=0.2, C=-0.3, D=0.1)
    if net == "cnn":
        lib = as_network(cnn((1, 5, 5), [Conv(2, 3, 1, 1), Pool(2, mode="max"), Conv(2, 2)], 3, "relu",
                             "cross_entropy", init_std=0.3), 0.3)
        n_in, n_out = 25, 3
    else:
        lib = random_dag_network(3, 5, 2, edge_prob=0.5, parallel_prob=0.3, activation="tanh", seed=2)
        n_in, n_out = 3, 2
    g = p.network(lib).graph
    assert len(g.ties()) == len(lib.graph.ties())
    params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(p.init(None, g), {}, g))
    batches = [{"x": rng.normal(size=(3, n_in)), "y": np.eye(n_out)[[0, 1, 1]]} for _ in range(2)]
    assert compare(g, params, batches).worst < 1e-10


def test_clamped_readout_learns_from_the_target():
    """``readout: clamped`` on a softmax head: the output synapses take ``y`` = the target (not
    the softmax's output), the hidden ones their own unit's; compiled equals the interpreter."""
    rng = np.random.default_rng(4)
    p = hebbian("abcd", A=0.5, B=0.2, C=-0.3, D=0.1, readout="clamped")
    g = p.network(mlp_network(SIZES, activation="tanh", loss="cross_entropy", init_std=0.5, seed=1)).graph
    params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(p.init(None, g), {}, g))
    lr, a, b, c, d = (float(params["synapse:1"][k]) for k in ("lr", "A", "B", "C", "D"))
    st = interpreter.init_state(g, 5)
    batch = {"x": rng.normal(size=(5, 3)), "y": np.eye(2)[[0, 1, 1, 0, 1]]}
    new = interpreter.step(g, st, params, batch).state
    h = np.stack([np.tanh(new[("a", 0, i)]["x"]) for i in range(SIZES[1])], 1)
    for i in range(SIZES[1]):
        for j in range(SIZES[2]):
            t = batch["y"][:, j]
            want = st[("w", 1, i, j)]["w"] + lr * np.mean(a * h[:, i] * t + b * h[:, i] + c * t + d)
            assert abs(float(new[("w", 1, i, j)]["w"]) - want) < 1e-12
    x = batch["x"]  # the hidden layer is unchanged by the readout: its own unit's output
    want = st[("w", 0, 2, 1)]["w"] + lr * np.mean(a * x[:, 2] * h[:, 1] + b * x[:, 2] + c * h[:, 1] + d)
    assert abs(float(new[("w", 0, 2, 1)]["w"]) - want) < 1e-12
    assert compare(g, params, [batch, {**batch, "x": rng.normal(size=(5, 3))}], state=st).worst < 1e-10
    with pytest.raises(AgentGraphError, match="readout must be"):
        hebbian(readout="teacher")


def test_settings_and_errors():
    p = resolve({"rule": "hebbian", "form": "abcd", "A": 0.0, "D": 1.0})
    assert p.settings["form"] == "abcd" and p.settings["D"] == 1.0
    with pytest.raises(AgentGraphError, match="form must be"):
        hebbian("bcm")
    with pytest.raises(AgentGraphError, match="init_lr must be positive"):
        hebbian(init_lr=0.0)
