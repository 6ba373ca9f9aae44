"""The meta-optimiser: Adam on gradients each divided by its own L2 norm (as MPLP's authors do)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ["normalize_per_tensor", "meta_optimizer"]


def normalize_per_tensor(eps: float = 1e-8) -> optax.GradientTransformation:
    """Divide every gradient tensor by its own L2 norm (``g / (||g|| + eps)``).

    Example:
        >>> import jax.numpy as jnp
        >>> t = normalize_per_tensor()
        >>> u, _ = t.update({"a": jnp.array([3.0, 4.0])}, t.init(None))
        >>> [round(float(v), 3) for v in u["a"]]
        [0.6, 0.8]
    """

    def update(updates, state, params=None):
        return jax.tree.map(lambda g: g / (jnp.sqrt(jnp.sum(g * g)) + eps), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def meta_optimizer(lr: float) -> optax.GradientTransformation:
    """``chain(normalize_per_tensor(), adam(lr))``. Optimisers of different ``lr`` share one
    state structure, so a run may switch rate between phases (imitation, then meta-loss).

    Example:
        >>> import jax.numpy as jnp
        >>> opt = meta_optimizer(1e-3)
        >>> s = opt.init({"w": jnp.zeros(2)})
        >>> u, s = opt.update({"w": jnp.array([1.0, 0.0])}, s)
        >>> u["w"].shape
        (2,)
    """
    return optax.chain(normalize_per_tensor(), optax.adam(lr))
