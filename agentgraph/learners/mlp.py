"""Small dense networks used as learners (pure functions over pytrees)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

__all__ = ["ACTS", "apply_mlp", "apply_mlp_from_pre", "first_layer", "init_mlp"]

ACTS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda x: x}


def init_mlp(key: jax.Array, sizes: Sequence[int], *, last_bias: bool = True) -> list[dict]:
    """Glorot-uniform dense layers ``sizes[0] -> ... -> sizes[-1]``, zero biases.

    Returns:
        ``[{"w": [n_in, n_out], "b": [n_out]}, ...]`` (the last layer has no ``"b"`` when
        ``last_bias=False``).

    Example:
        >>> import jax
        >>> [l["w"].shape for l in init_mlp(jax.random.PRNGKey(0), [3, 80, 40, 1])]
        [(3, 80), (80, 40), (40, 1)]
    """
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lim = jnp.sqrt(6.0 / (a + b))
        layer = {"w": jax.random.uniform(keys[i], (a, b), minval=-lim, maxval=lim)}
        if last_bias or i < len(sizes) - 2:
            layer["b"] = jnp.zeros((b,))
        layers.append(layer)
    return layers


def apply_mlp(layers: Sequence[dict], x: jax.Array, hidden: str = "relu", final: str = "identity",
              *, start: int = 0) -> jax.Array:
    """Apply dense layers to ``x [..., n_in]`` → ``[..., n_out]``.

    Each layer's pre-activation is named ``mlp_pre<i>`` (``i`` counted from ``start``) with
    :func:`jax.ad_checkpoint.checkpoint_name`, so a ``jax.checkpoint`` policy can keep chosen
    layers instead of recomputing them (see ``meta.remat``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_mlp(jax.random.PRNGKey(0), [3, 4, 2])
        >>> apply_mlp(p, jnp.ones(3), final="tanh").shape
        (2,)
    """
    for i, layer in enumerate(layers):
        x = x @ layer["w"]
        if "b" in layer:
            x = x + layer["b"]
        x = checkpoint_name(x, f"mlp_pre{start + i}")
        x = ACTS[hidden if i < len(layers) - 1 else final](x)
    return x


def first_layer(layers: Sequence[dict]) -> tuple[jax.Array, jax.Array]:
    """The first layer's ``(w [n_in, h], b [h])`` (zeros when it has no bias).

    Example:
        >>> import jax
        >>> w, b = first_layer(init_mlp(jax.random.PRNGKey(0), [3, 4, 2]))
        >>> w.shape, b.shape
        ((3, 4), (4,))
    """
    w = layers[0]["w"]
    return w, layers[0].get("b", jnp.zeros(w.shape[1:], w.dtype))


def apply_mlp_from_pre(layers: Sequence[dict], pre: jax.Array, hidden: str = "relu", final: str = "identity") -> jax.Array:
    """:func:`apply_mlp` given the first layer's pre-activation ``pre = x @ w + b [..., h]``
    instead of ``x`` — for callers that compute the (linear) first layer themselves.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = init_mlp(jax.random.PRNGKey(0), [3, 4, 2])
        >>> x = jnp.ones(3); w, b = first_layer(p)
        >>> bool(jnp.allclose(apply_mlp_from_pre(p, x @ w + b, final="tanh"), apply_mlp(p, x, final="tanh")))
        True
    """
    x = ACTS[hidden if len(layers) > 1 else final](checkpoint_name(pre, "mlp_pre0"))
    return apply_mlp(layers[1:], x, hidden, final, start=1)
