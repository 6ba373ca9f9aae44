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

from agentgraph.learners.mlp import apply_mlp, apply_mlp_from_pre, first_layer, init_mlp

__all__ = ["init_gru", "gru_cell", "gru_input_layer", "gru_step"]


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


def gru_input_layer(params: dict) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """Everything the GRU computes *linearly* from its input ``x``: the gates' ``x`` part and
    ``MLP_x``'s first layer, as two ``(W [in, width], b [width])`` pairs, so that
    ``(x @ Wg + bg, x @ Wh + bh)`` is the *input projection* :func:`gru_cell` takes.

    (Kept as two products rather than one ``[in, 2*carry + h]`` matrix: slicing a joint result
    makes XLA:CPU's elementwise fusions read strided rows, several times slower.)

    Example:
        >>> import jax
        >>> (Wg, bg), (Wh, bh) = gru_input_layer(init_gru(jax.random.PRNGKey(0), 6, 12))
        >>> Wg.shape, Wh.shape
        ((6, 24), (6, 80))
    """
    return (params["wx"], params["b"]), first_layer(params["mlp_x"])


def gru_cell(params: dict, pg: jax.Array, ph: jax.Array, c: jax.Array) -> jax.Array:
    """The GRU update from the input projection (:func:`gru_input_layer`) — the gates' part
    ``pg [..., 2*carry]`` and ``MLP_x``'s first-layer pre-activation ``ph [..., h]`` — and the
    carry ``c [..., carry]`` → new carry ``[..., carry]``.

    Splitting the linear first layer off lets a caller compute it cheaply when ``x`` is built
    from parts shared by many agents (MPLP's premap).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_gru(jax.random.PRNGKey(0), 3, 5)
        >>> (Wg, bg), (Wh, bh) = gru_input_layer(p)
        >>> x, c = jnp.ones(3), jnp.zeros(5)
        >>> bool(jnp.allclose(gru_cell(p, x @ Wg + bg, x @ Wh + bh, c), gru_step(p, x, c)))
        True
    """
    n = c.shape[-1]
    gates = jax.nn.sigmoid(pg + c @ params["wc"])
    u, r = gates[..., :n], gates[..., n:]
    hx = apply_mlp_from_pre(params["mlp_x"], ph, hidden="tanh")
    cand = jnp.tanh(hx + apply_mlp(params["mlp_c"], c * r, hidden="tanh") + params["bn"])
    return u * c + (1.0 - u) * cand


def gru_step(params: dict, x: jax.Array, c: jax.Array) -> jax.Array:
    """One GRU update: ``x [..., in]``, carry ``c [..., carry]`` → new carry ``[..., carry]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_gru(jax.random.PRNGKey(0), 3, 5)
        >>> gru_step(p, jnp.ones(3), jnp.zeros(5)).shape
        (5,)
    """
    (Wg, bg), (Wh, bh) = gru_input_layer(params)
    return gru_cell(params, x @ Wg + bg, x @ Wh + bh, c)
