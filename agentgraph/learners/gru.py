"""The MPLP stateful learner: a GRU whose candidate is computed by two deep MLPs (paper eqs. 6-8).

``u = σ(x W_ux + c W_uc + b_u)``, ``r = σ(x W_rx + c W_rc + b_r)``,
``c' = u ⊙ c + (1 - u) ⊙ tanh(MLP_x(x) + MLP_c(c ⊙ r) + b_n)``, where ``MLP_x`` and ``MLP_c`` are
``Dense(80, tanh) → Dense(40, tanh) → Dense(carry, linear, no bias)`` as in the authors' code,
and the gate biases start at -1.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from agentgraph.learners.mlp import apply_mlp, init_mlp

__all__ = ["init_gru", "gru_step"]


def init_gru(key: jax.Array, in_size: int, carry_size: int, hidden: Sequence[int] = (80, 40)) -> dict:
    """Parameters of one MPLP GRU learner.

    Returns:
        ``{"wx": [in, 2*carry], "wc": [carry, 2*carry], "b": [2*carry] (= -1), "mlp_x": ...,
        "mlp_c": ..., "bn": [carry]}`` — the two gates (u, r) share one matmul per input.

    Example:
        >>> import jax
        >>> p = init_gru(jax.random.PRNGKey(0), 6, 12)
        >>> p["wx"].shape, float(p["b"][0])
        ((6, 24), -1.0)
    """
    k1, k2, k3, k4 = jax.random.split(key, 4)
    lim_x = jnp.sqrt(6.0 / (in_size + 2 * carry_size))
    lim_c = jnp.sqrt(6.0 / (3 * carry_size))
    return {
        "wx": jax.random.uniform(k1, (in_size, 2 * carry_size), minval=-lim_x, maxval=lim_x),
        "wc": jax.random.uniform(k2, (carry_size, 2 * carry_size), minval=-lim_c, maxval=lim_c),
        "b": -jnp.ones((2 * carry_size,)),
        "mlp_x": init_mlp(k3, [in_size, *hidden, carry_size], last_bias=False),
        "mlp_c": init_mlp(k4, [carry_size, *hidden, carry_size], last_bias=False),
        "bn": jnp.zeros((carry_size,)),
    }


def gru_step(params: dict, x: jax.Array, c: jax.Array) -> jax.Array:
    """One GRU update: ``x [..., in]``, carry ``c [..., carry]`` → new carry ``[..., carry]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_gru(jax.random.PRNGKey(0), 3, 5)
        >>> gru_step(p, jnp.ones(3), jnp.zeros(5)).shape
        (5,)
    """
    n = c.shape[-1]
    gates = jax.nn.sigmoid(x @ params["wx"] + c @ params["wc"] + params["b"])
    u, r = gates[..., :n], gates[..., n:]
    cand = jnp.tanh(
        apply_mlp(params["mlp_x"], x, hidden="tanh") + apply_mlp(params["mlp_c"], c * r, hidden="tanh") + params["bn"]
    )
    return u * c + (1.0 - u) * cand
