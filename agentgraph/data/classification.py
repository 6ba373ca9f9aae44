"""Classification tasks for an inner loop, sampled in pure JAX from an in-memory dataset.

Examples are drawn uniformly **with replacement**, independently for every slot: an image may
appear twice in one batch, and the held-out (``"cv"``) images are drawn from the same arrays as
the training batches (pass the test split's arrays, or overwrite ``"cv"``, for a true held-out
set). Every function is a pure function of a PRNG key: ``jax.vmap`` over keys samples an outer
batch of tasks, and ``jit`` works with ``n_classes, steps, batch, cv_batch`` static.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["sample_classification_task"]


def sample_classification_task(
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    n_classes: int,
    steps: int,
    batch: int,
    cv_batch: int,
) -> dict[str, dict[str, jax.Array]]:
    """``steps`` training batches of ``batch`` examples plus ``cv_batch`` held-out examples.

    Args:
        x: inputs ``[N, d]`` (e.g. :class:`~agentgraph.data.Dataset` ``x_train``).
        y: integer labels ``[N]`` in ``0 .. n_classes - 1``.

    Returns:
        ``{"train": {"x": [K, B, d], "y": [K, B, C]}, "cv": {"x": [Bcv, d], "y": [Bcv, C]}}`` with
        one-hot float32 targets (``C = n_classes``); ``x`` keeps its dtype.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x, y = jnp.ones((5, 3)), jnp.arange(5)
        >>> keys = jax.random.split(jax.random.PRNGKey(0), 2)
        >>> t = jax.vmap(lambda k: sample_classification_task(k, x, y, 5, 4, 8, 6))(keys)
        >>> t["train"]["x"].shape, t["train"]["y"].shape, t["cv"]["y"].shape
        ((2, 4, 8, 3), (2, 4, 8, 5), (2, 6, 5))
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    k_train, k_cv = jax.random.split(key)
    i = jax.random.randint(k_train, (steps, batch), 0, x.shape[0])
    j = jax.random.randint(k_cv, (cv_batch,), 0, x.shape[0])
    hot = lambda labels: jax.nn.one_hot(labels, n_classes, dtype=jnp.float32)  # noqa: E731
    return {
        "train": {"x": x[i], "y": hot(y[i])},
        "cv": {"x": x[j], "y": hot(y[j])},
    }
