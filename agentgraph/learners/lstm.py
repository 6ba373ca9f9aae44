"""The VSML learner: a small LSTM whose state is the synapse's memory (Kirsch & Schmidhuber 2021).

``[i, g, f, o] = [x, h] W + b``; ``c' = σ(f + 5) ⊙ c + σ(i − 5) ⊙ tanh(g)``; ``h' = σ(o) ⊙ tanh(c')``.
The constant gate offsets make a fresh cell keep its state and let little in, so the random part of
the initial cell state acts like a weight that changes slowly. Two read-outs map ``h'`` to the
forward and backward messages.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["FORGET_BIAS", "INPUT_BIAS", "init_lstm", "lstm_step"]

#: Offsets added to the forget and input gates' pre-activations.
FORGET_BIAS = 5.0
INPUT_BIAS = -5.0


def init_lstm(key: jax.Array, in_size: int, hidden: int, out_size: int) -> dict:
    """Parameters of one LSTM with two linear read-outs of size ``out_size``.

    Returns:
        ``{"w": [in + hidden, 4 * hidden] ~ N(0, 1/(in + hidden)), "b": [4 * hidden] = 0,
        "w_fwd", "w_bwd": [hidden, out] ~ N(0, 1/hidden), "b_fwd", "b_bwd": [out] = 0}``.

    Example:
        >>> p = init_lstm(jax.random.PRNGKey(0), 16, 16, 8)
        >>> p["w"].shape, p["w_fwd"].shape
        ((32, 64), (16, 8))
    """
    k1, k2, k3 = jax.random.split(key, 3)
    n = in_size + hidden
    return {
        "w": jax.random.normal(k1, (n, 4 * hidden)) / jnp.sqrt(n),
        "b": jnp.zeros((4 * hidden,)),
        "w_fwd": jax.random.normal(k2, (hidden, out_size)) / jnp.sqrt(hidden),
        "b_fwd": jnp.zeros((out_size,)),
        "w_bwd": jax.random.normal(k3, (hidden, out_size)) / jnp.sqrt(hidden),
        "b_bwd": jnp.zeros((out_size,)),
    }


def lstm_step(params: dict, x: jax.Array, h: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One LSTM tick: input ``x [..., in]``, state ``h, c [..., hidden]`` → ``(h', c')``.

    Example:
        >>> p = init_lstm(jax.random.PRNGKey(0), 4, 3, 2)
        >>> h, c = lstm_step(p, jnp.ones(4), jnp.zeros(3), jnp.zeros(3))
        >>> h.shape, c.shape
        ((3,), (3,))
    """
    z = jnp.concatenate([x, h], axis=-1) @ params["w"] + params["b"]
    i, g, f, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f + FORGET_BIAS) * c + jax.nn.sigmoid(i + INPUT_BIAS) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c
