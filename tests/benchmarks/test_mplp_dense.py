"""The hand-written dense MPLP (the benchmark baseline) computes exactly what the compiled graph does."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import compile, mlp
from agentgraph.protocols import mplp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"))
import mplp_dense  # noqa: E402  (the hand-written baseline lives with the benchmarks)


@pytest.mark.parametrize("loss", ["cross_entropy", "l2"])
def test_dense_mplp_equals_compiled_mplp(loss):
    sizes, k, hidden, B, T = (5, 4, 3), 3, 2, 2, 3
    cfg = mplp.MPLPConfig(k=k, hidden=hidden)
    g = mlp(sizes, activation="sigmoid", loss=loss, init_std=0.5, seed=0).with_kinds(mplp.kinds(cfg))
    params = mplp.init_params(g, jax.random.PRNGKey(1), cfg)
    # make the normalisation non-trivial so that wiring mistakes show
    params = jax.tree.map(lambda v: v, params)
    for grp in params:
        params[grp]["out_scale"] = jnp.asarray(0.3)
        params[grp]["in_mean"] = 0.1 * jnp.arange(params[grp]["in_mean"].shape[0], dtype=jnp.float32)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(T, B, sizes[0])).astype(np.float32)
    ys = (np.eye(sizes[-1])[rng.integers(0, sizes[-1], (T, B))] if loss == "cross_entropy"
          else rng.normal(size=(T, B, sizes[-1]))).astype(np.float32)
    batches = {"x": jnp.asarray(xs), "y": jnp.asarray(ys)}
    prog = compile(g)
    s_c, losses_c = jax.jit(prog.unroll)(params, prog.init(B), batches)
    from agentgraph.builders import mlp_weights

    weights = [(jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32)) for W, b in mlp_weights(prog.to_agents(prog.init(B)), sizes)]
    carry = {"synapse": 1 + hidden + k, "bias": 1 + hidden + k, "act": hidden + k, "softmax": hidden + k, "loss": hidden + k}
    s_d = mplp_dense.init_state(weights, B, carry, sizes[-1])
    s_d, losses_d = jax.jit(lambda p, s, b: mplp_dense.unroll(p, s, b, activation="sigmoid", loss=loss, k=k, act_group="sigmoid"))(params, s_d, batches)
    np.testing.assert_allclose(np.asarray(losses_c), np.asarray(losses_d), rtol=1e-5, atol=1e-6)
    got = mlp_weights(prog.to_agents(s_c), sizes)
    for (W, b), (Wd, bd) in zip(got, zip(s_d["W"], s_d["b"])):
        np.testing.assert_allclose(W, np.asarray(Wd), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, np.asarray(bd), rtol=1e-5, atol=1e-6)
    # the weights really moved
    assert np.abs(got[0][0] - np.asarray(weights[0][0])).max() > 1e-4
