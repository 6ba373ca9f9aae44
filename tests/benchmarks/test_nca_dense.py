"""The hand-written dense NCA (the benchmark baseline) computes exactly what the compiled agent
graph does, frames and gradients; and a short training run of the agent-graph NCA lowers its loss."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph import compile
from agentgraph.builders import grid
from agentgraph.models import nca

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"))
import nca_dense  # noqa: E402  (the hand-written baseline lives with the benchmarks)


def _random_params(cell, key):
    p = nca.init_params(key, cell)
    return {**p, "w2": 0.05 * jax.random.normal(jax.random.PRNGKey(9), p["w2"].shape),
            "b1": 0.1 * jnp.ones_like(p["b1"])}


def test_dense_nca_equals_the_compiled_grid_frames_and_gradients():
    H, W, B, T = 5, 6, 2, 4
    cell = nca.NCACell(channels=6, hidden=10)
    prog = compile(grid(H, W, cell))
    params = _random_params(cell, jax.random.PRNGKey(1))
    start = nca.seed(prog, B, H, W)
    _, frames = nca.grow(params, prog, start, T, H, W)
    s0 = np.zeros((B, H, W, 6))
    s0[:, H // 2, W // 2, 3:] = 1.0
    _, dense = nca_dense.nca_grow(params, jnp.asarray(s0, jnp.float32), T)
    np.testing.assert_allclose(np.asarray(frames), np.asarray(dense), atol=1e-5)
    assert float(jnp.abs(frames[-1]).max()) > 1e-2 and int((np.asarray(frames[-1])[..., 3] != 0).sum()) > B
    g1 = jax.grad(lambda p: nca.grow(p, prog, start, T, H, W)[1].sum())(params)
    g2 = jax.grad(lambda p: nca_dense.nca_grow(p, jnp.asarray(s0, jnp.float32), T)[1].sum())(params)
    for k in params:
        np.testing.assert_allclose(np.asarray(g1[k]), np.asarray(g2[k]), rtol=1e-4, atol=1e-4)


def test_a_short_training_run_lowers_the_loss():
    cell = nca.NCACell(channels=8, hidden=16)
    target = nca.heart(8)
    prog = compile(grid(8, 8, cell))
    _, losses = nca.train(prog, cell, target, steps=25, batch_size=2, ticks=(8, 12), lr=1e-2)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.7 * losses[0], losses
