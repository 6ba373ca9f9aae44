"""Small dense networks used as learners (pure functions over pytrees)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["ACTS", "init_mlp", "apply_mlp"]

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


def apply_mlp(layers: Sequence[dict], x: jax.Array, hidden: str = "relu", final: str = "identity") -> jax.Array:
    """Apply dense layers to ``x [..., n_in]`` → ``[..., n_out]``.

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
        x = ACTS[hidden if i < len(layers) - 1 else final](x)
    return x
