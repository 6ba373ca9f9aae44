"""The hand-written dense BLUR (the benchmark baseline) computes exactly what the compiled graph does (the two-sweep rule, exact=False)."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph import compile
from agentgraph.builders import mlp_network
from agentgraph.protocols.blur import GROUP, blur_network, init_genome

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"))
import blur_dense  # noqa: E402  (the hand-written baseline lives with the benchmarks)


def test_dense_blur_equals_compiled_blur():
    sizes, k, B, T = (5, 4, 3), 3, 2, 3
    b = blur_network(mlp_network(list(sizes), activation="tanh", loss="l2"), k=k, sigma="tanh", exact=False)
    genome = {**init_genome(k, jax.random.PRNGKey(2)), "f_t": jnp.asarray(0.9), "eta_t": jnp.asarray(0.3)}
    rng = np.random.default_rng(0)
    W = [jnp.asarray(rng.normal(0, 0.7, (sizes[l], sizes[l + 1], k)), jnp.float32) for l in range(2)]
    Bias = [jnp.asarray(rng.normal(0, 0.3, (sizes[l + 1], k)), jnp.float32) for l in range(2)]
    xs = jnp.asarray(rng.uniform(-1, 1, (T, B, sizes[0])), jnp.float32)
    ys = jnp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], (T, B))], jnp.float32)
    prog = compile(b.graph)
    agents = prog.to_agents(prog.init(B))
    for l in range(2):
        for i in range(sizes[l]):
            for j in range(sizes[l + 1]):
                agents[("w", l, i, j)]["w"] = W[l][i, j]
        for j in range(sizes[l + 1]):
            agents[("b", l, j)]["b"] = Bias[l][j]
    s, _ = jax.jit(prog.unroll)({GROUP: genome}, prog.from_agents(agents), {"x": xs, "y": ys})
    W2, B2 = jax.jit(blur_dense.blur_unroll)(genome, W, Bias, xs, ys)
    got = prog.to_agents(s)
    for l in range(2):
        gw = np.array([[got[("w", l, i, j)]["w"] for j in range(sizes[l + 1])] for i in range(sizes[l])])
        gb = np.array([got[("b", l, j)]["b"] for j in range(sizes[l + 1])])
        np.testing.assert_allclose(gw, W2[l], atol=2e-5)
        np.testing.assert_allclose(gb, B2[l], atol=2e-5)
        assert float(jnp.abs(W2[l] - W[l]).max()) > 1e-3  # the rule did change the weights
