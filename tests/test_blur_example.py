"""The BLUR generality check (examples/blur.py): user kinds built on the public API only.

The interpreter's result is compared with an independent dense NumPy implementation of the same
BLUR equations (same genome, same initial weights and states).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import jax
import numpy as np
import pytest

from agentgraph import AgentGraphError, interpreter

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "blur.py"


def _load():
    name = "agentgraph_example_blur"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


blur = _load()

SIZES, K, B = (3, 4, 2), 3, 2


# -- the independent reference: whole layers at once, NumPy, float64 -------------------------------
def reference_step(A_prev, W, g, x, y, *, zero_out, output_backward_update):
    """One BLUR step on dense arrays.

    A_prev: list of neuron states ``[B, n_l, k]``; W: list of ``[n_l, n_{l+1}, k]``.
    Returns (A, W_new, stored) with ``stored[l]`` the forward ``a_i`` of layer l ``[B, n_l, k]``.
    """
    L = len(W)
    f, eta, f_t, eta_t = g["f"], g["eta"], g["f_t"], g["eta_t"]
    A = [None] * (L + 1)
    A[0] = np.zeros_like(A_prev[0])
    A[0][:, :, 0] = x
    stored = []
    for l in range(L):
        stored.append(A[l].copy())
        nu_a = np.einsum("kc,bic->bik", g["nu"], A[l])  # ν a_i
        msg = np.einsum("bik,ijk->bjk", nu_a, W[l])  # Σ_i w_ij ⊙ ν a_i
        prev = 0.0 if zero_out else A_prev[l + 1]
        A[l + 1] = np.tanh(f * prev + eta * msg)
    A[L] = A[L].copy()
    A[L][:, :, 1] = y  # the label channel (0-based 1 == "state 2")
    if output_backward_update:
        A[L] = np.tanh(f * A[L])
    W_new = list(W)
    for l in reversed(range(L)):
        post = A[l + 1]
        if l > 0:
            mu_a = np.einsum("kc,bjc->bjk", g["mu"], post)
            m = np.einsum("bjk,ijk->bik", mu_a, W[l])
            A[l] = np.tanh(f * A[l] + eta * m)
        pre_t = np.einsum("ck,bic->bik", g["nu_t"], stored[l])  # ν̃ᵀ a_i
        post_t = np.einsum("kc,bjc->bjk", g["mu_t"], post)  # μ̃ a_j
        hebb = pre_t[:, :, None, :] * post_t[:, None, :, :]  # [B, i, j, k]
        W_new[l] = W[l] + (f_t - 1.0) * W[l] + eta_t * hebb.mean(axis=0)  # engine: batch mean
    return A, W_new, stored


def _batches(n, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.uniform(-1.0, 1.0, (B, SIZES[0]))
        y = np.where(rng.random((B, SIZES[-1])) < 0.5, -1.0, 1.0)
        out.append({"x": x, "y": y})
    return out


@pytest.mark.parametrize(
    "zero_out,output_backward_update", [(True, False), (False, True)], ids=["blur-default", "carry-state"]
)
def test_blur_interpreter_matches_numpy_reference(zero_out, output_backward_update):
    g = blur.blur_network(
        SIZES, K, seed=3, zero_out=zero_out, output_backward_update=output_backward_update
    )
    assert g.validate() is g
    genome = blur.init_genome(K, jax.random.PRNGKey(7))
    params = {blur.GROUP: genome}
    state = interpreter.init_state(g, B)
    # start from non-zero neuron states so that a carried state (zero_out=False) matters
    rng = np.random.default_rng(5)
    for l in range(1, len(SIZES)):
        for i in range(SIZES[l]):
            state[("n", l, i)]["a"] = rng.normal(0.0, 0.5, (B, K))
    A = [np.stack([state[("n", l, i)]["a"] for i in range(n)], axis=1) for l, n in enumerate(SIZES)]
    W = [
        np.array([[state[("w", l, i, j)]["w"] for j in range(SIZES[l + 1])] for i in range(SIZES[l])])
        for l in range(len(SIZES) - 1)
    ]
    assert all(np.abs(w).min() > 0 for w in W)
    for batch in _batches(2):
        res = interpreter.step(g, state, params, batch, trace=True)
        A_ref, W_ref, stored = reference_step(
            A, W, genome, batch["x"], batch["y"], zero_out=zero_out,
            output_backward_update=output_backward_update,
        )
        state = res.state
        for l, n in enumerate(SIZES):
            for i in range(n):
                np.testing.assert_allclose(state[("n", l, i)]["a"], A_ref[l][:, i], rtol=0, atol=1e-9)
        for l in range(len(SIZES) - 1):
            for i in range(SIZES[l]):
                for j in range(SIZES[l + 1]):
                    s = state[("w", l, i, j)]
                    np.testing.assert_allclose(s["w"], W_ref[l][i, j], rtol=0, atol=1e-9)
                    np.testing.assert_allclose(s["a_in"], stored[l][:, i], rtol=0, atol=1e-9)
        # the labels reach the output neurons' "label" port and (by default) channel 1 exactly
        for j in range(SIZES[-1]):
            inbox = res.inbox[(("n", len(SIZES) - 1, j), "backward")]
            np.testing.assert_array_equal(inbox["label"][:, 0], batch["y"][:, j])
            if not output_backward_update:
                np.testing.assert_array_equal(state[("n", len(SIZES) - 1, j)]["a"][:, 1], batch["y"][:, j])
        # the comparison can fail: without labels the reference is far from the engine
        A_nolab, W_nolab, _ = reference_step(
            A, W, genome, batch["x"], np.zeros_like(batch["y"]), zero_out=zero_out,
            output_backward_update=output_backward_update,
        )
        assert max(np.abs(a - b).max() for a, b in zip(W_nolab, W_ref)) > 1e-4
        assert np.abs(A_nolab[1] - A_ref[1]).max() > 1e-4
        A, W = A_ref, W_ref


def test_blur_kinds_vmap_and_jit_like_a_compiler_would():
    """Per-agent, per-example functions: vmap over the batch == a Python loop over examples."""
    genome = blur.init_genome(K, 0)
    rng = np.random.default_rng(0)
    syn, neuron = blur.BlurSynapse(K), blur.BlurNeuron(K, zero_out=False)
    w = rng.normal(size=K)
    a_in, a_j, x = (rng.normal(size=(4, K)) for _ in range(3))
    with jax.enable_x64(True):
        bwd = jax.jit(jax.vmap(syn.backward, in_axes=(None, {"w": None, "a_in": 0}, {"m": 0})))
        s_v, out_v, upd_v = bwd(genome, {"w": w, "a_in": a_in}, {"m": a_j})
        fwd = jax.jit(jax.vmap(neuron.forward, in_axes=(None, {"a": 0}, {"x": 0})))
        n_v, nout_v = fwd(genome, {"a": a_j}, {"x": x})
        for b in range(4):
            _, out_b, upd_b = syn.backward(genome, {"w": w, "a_in": a_in[b]}, {"m": a_j[b]})
            np.testing.assert_allclose(out_v["out"][b], out_b["out"], atol=1e-12)
            np.testing.assert_allclose(upd_v["w"][b], upd_b["w"], atol=1e-12)
            n_b, _ = neuron.forward(genome, {"a": a_j[b]}, {"x": x[b]})
            np.testing.assert_allclose(n_v["a"][b], n_b["a"], atol=1e-12)


def test_blur_network_structure_and_miswiring_is_caught():
    g = blur.blur_network(SIZES, K, seed=0)
    n_syn = SIZES[0] * SIZES[1] + SIZES[1] * SIZES[2]
    assert len(g.agents("blur_synapse")) == n_syn
    assert g.groups() == [blur.GROUP]
    # forward: 2 arrows per synapse; backward: 2 per hidden-layer synapse, 1 per first-layer
    # synapse, 1 per label
    assert g.number_of_arrows("forward") == 2 * n_syn
    assert g.number_of_arrows("backward") == 2 * n_syn - SIZES[0] * SIZES[1] + SIZES[-1]
    with pytest.raises(AgentGraphError, match="size mismatch"):
        g.add_arrow(("y", 0), ("n", 1, 0), "backward", port="m")  # label (size 1) into a k-port
    with pytest.raises(AgentGraphError, match="no backward port 'label'"):
        g.add_arrow(("y", 0), ("n", 1, 0), "backward", port="label")  # hidden neurons take no label
