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

__all__ = ["sample_classification_task", "sample_permuted_sequence"]


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


def sample_permuted_sequence(
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    n_classes: int,
    tasks: int,
    steps: int,
    batch: int,
    cv_batch: int,
    x_cv: jax.Array | None = None,
    y_cv: jax.Array | None = None,
) -> dict[str, dict[str, jax.Array]]:
    """A sequence of ``tasks`` permuted tasks: each the data with its ``d`` inputs in a fresh random
    order, ``steps // tasks`` training batches each (in sequence order) and ``cv_batch // tasks``
    held-out examples each (in the same order), drawn from ``x_cv, y_cv`` when given (a test split).

    Returns:
        as :func:`sample_classification_task`: ``train [steps, batch, d]``, ``cv [cv_batch, d]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> t = sample_permuted_sequence(jax.random.PRNGKey(0), jnp.arange(12.0).reshape(4, 3), jnp.arange(4), 4,
        ...                              2, 4, 1, 2)
        >>> t["train"]["x"].shape, t["cv"]["x"].shape
        ((4, 1, 3), (2, 3))
    """
    k_task, k_perm = jax.random.split(key)
    d = x.shape[1]
    perms = jax.vmap(lambda k: jax.random.permutation(k, d))(jax.random.split(k_perm, tasks))  # [S, d]
    base = sample_classification_task(k_task, x, y, n_classes, steps, batch, cv_batch)
    if x_cv is not None:
        j = jax.random.randint(jax.random.fold_in(k_task, 1), (cv_batch,), 0, x_cv.shape[0])
        base["cv"] = {"x": jnp.asarray(x_cv)[j], "y": jax.nn.one_hot(jnp.asarray(y_cv)[j], n_classes, dtype=jnp.float32)}
    per_step = jnp.repeat(perms, steps // tasks, axis=0)  # [K, d]: the permutation of each step
    per_cv = jnp.repeat(perms, cv_batch // tasks, axis=0)  # [C, d]
    base["train"]["x"] = jnp.take_along_axis(base["train"]["x"], per_step[:, None, :], axis=2)
    base["cv"]["x"] = jnp.take_along_axis(base["cv"]["x"], per_cv, axis=1)
    return base
