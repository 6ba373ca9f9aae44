"""A hand-written Elman network in JAX (``lax.scan`` over time) and its SGD step: the oracle of
``tests/benchmarks/test_cnn_dense.py`` for :func:`agentgraph.builders.elman` (weights tied across
time), written from the equations ``h_t = σ(x_t W_x + h_{t−1} W_h + b)``, ``h_{−1} = 0``,
read-out ``h_{T−1} W_o + b_o``.

Example:
    >>> import numpy as np
    >>> p = {"Wx": np.zeros((2, 3)), "Wh": np.zeros((3, 3)), "b": np.zeros(3), "Wo": np.zeros((3, 1)), "bo": np.zeros(1)}
    >>> forward(p, np.zeros((4, 2 * 5)), steps=5).shape
    (4, 1)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.nodes.activations import ACTIVATIONS


def forward(params, x, steps: int, activation: str = "tanh"):
    """Read-out ``[B, n_out]`` of sequences ``x [B, T·n_in]``."""
    act = ACTIVATIONS[activation][0]
    B = x.shape[0]
    xs = jnp.swapaxes(jnp.reshape(x, (B, steps, -1)), 0, 1)  # [T, B, n_in]

    def cell(h, xt):
        h = act(xt @ params["Wx"] + h @ params["Wh"] + params["b"])
        return h, None

    h, _ = jax.lax.scan(cell, jnp.zeros((B, params["Wh"].shape[0]), x.dtype), xs)
    return h @ params["Wo"] + params["bo"]


def loss(params, x, y, steps: int, activation: str = "tanh"):
    """Batch mean of ``½ Σ_j (out_j − y_j)²``."""
    return jnp.mean(0.5 * jnp.sum((forward(params, x, steps, activation) - y) ** 2, axis=1))


def sgd_step(params, x, y, lr, steps: int, activation: str = "tanh"):
    """``(params − lr · ∇loss, loss)``."""
    value, g = jax.value_and_grad(loss)(params, x, y, steps, activation)
    return jax.tree.map(lambda p, d: p - lr * d, params, g), value


def params_of(state: Mapping[Hashable, Mapping[str, np.ndarray]], n_in: int, n_hidden: int, n_out: int) -> dict:
    """The weights of an :func:`~agentgraph.builders.elman` graph's per-agent state."""
    return {"Wx": np.array([[state[("wx", 0, i, j)]["w"] for j in range(n_hidden)] for i in range(n_in)]),
            "Wh": np.array([[state[("wh", 1, k, j)]["w"] for j in range(n_hidden)] for k in range(n_hidden)]),
            "b": np.array([state[("bh", 0, j)]["b"] for j in range(n_hidden)]),
            "Wo": np.array([[state[("w", 1, j, o)]["w"] for o in range(n_out)] for j in range(n_hidden)]),
            "bo": np.array([state[("b", 1, o)]["b"] for o in range(n_out)])}
