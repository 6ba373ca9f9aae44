"""The sinusoid regression task family (MPLP §4.1, after MAML): ``y = A sin(x + p)`` with
``A ~ U[0.1, 0.5]``, ``p ~ U[0, π]``, ``x ~ U[-5, 5]``.

Every function is pure JAX of a PRNG key, so ``jax.vmap(f)(keys)`` samples an outer batch of
tasks and everything runs under ``jit``. Ranges are static Python tuples ``(low, high)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["sinusoid", "sample_sinusoid_params", "sample_sinusoid", "sample_sinusoid_task"]

Range = tuple[float, float]


def sinusoid(x: jax.Array, amplitude: jax.Array, phase: jax.Array) -> jax.Array:
    """``amplitude * sin(x + phase)``, elementwise (any shape; broadcasting).

    Example:
        >>> import jax.numpy as jnp
        >>> float(sinusoid(jnp.array(0.0), 0.5, jnp.pi / 2))
        0.5
    """
    return amplitude * jnp.sin(x + phase)


def sample_sinusoid_params(
    key: jax.Array, *, amplitude: Range = (0.1, 0.5), phase: Range = (0.0, math.pi)
) -> tuple[jax.Array, jax.Array]:
    """One task's ``(A, p)``: two float32 scalars, uniform on the given ranges.

    Example:
        >>> import jax
        >>> A, p = sample_sinusoid_params(jax.random.PRNGKey(0))
        >>> bool(0.1 <= A <= 0.5 and 0 <= p <= 3.1416)
        True
    """
    ka, kp = jax.random.split(key)
    a = jax.random.uniform(ka, (), jnp.float32, amplitude[0], amplitude[1])
    p = jax.random.uniform(kp, (), jnp.float32, phase[0], phase[1])
    return a, p


def sample_sinusoid(
    key: jax.Array,
    n_points: int,
    *,
    amplitude: Range = (0.1, 0.5),
    phase: Range = (0.0, math.pi),
    x_range: Range = (-5.0, 5.0),
) -> tuple[jax.Array, jax.Array, tuple[jax.Array, jax.Array]]:
    """A fresh task and ``n_points`` uniform points of it.

    Returns:
        ``(x [n, 1], y [n, 1], (A, p))``, float32.

    Example:
        >>> import jax
        >>> x, y, (A, p) = sample_sinusoid(jax.random.PRNGKey(0), 10)
        >>> x.shape, y.shape, bool(abs(y).max() <= A)
        ((10, 1), (10, 1), True)
    """
    kparams, kx = jax.random.split(key)
    a, p = sample_sinusoid_params(kparams, amplitude=amplitude, phase=phase)
    x = jax.random.uniform(kx, (n_points, 1), jnp.float32, x_range[0], x_range[1])
    return x, sinusoid(x, a, p), (a, p)


def sample_sinusoid_task(
    key: jax.Array,
    steps: int,
    batch: int,
    cv: int = 100,
    *,
    evenly_spaced: bool = False,
    amplitude: Range = (0.1, 0.5),
    phase: Range = (0.0, math.pi),
    x_range: Range = (-5.0, 5.0),
) -> dict[str, dict[str, jax.Array]]:
    """One sinusoid task for an inner loop: ``steps`` training batches and a held-out set.

    Args:
        steps, batch: ``K`` inner steps of ``B`` uniform points each.
        cv: held-out set size.
        evenly_spaced: held-out ``x`` = ``cv`` evenly spaced points on ``x_range`` (endpoints
            included; the paper's evaluation loss uses 100) instead of uniform draws.

    Returns:
        ``{"train": {"x": [K, B, 1], "y": [K, B, 1]}, "cv": {"x": [cv, 1], "y": [cv, 1]}}``,
        all points from the same ``(A, p)``.

    Example:
        >>> import jax
        >>> keys = jax.random.split(jax.random.PRNGKey(0), 4)
        >>> t = jax.vmap(lambda k: sample_sinusoid_task(k, 5, 10, evenly_spaced=True))(keys)
        >>> t["train"]["x"].shape, t["cv"]["y"].shape
        ((4, 5, 10, 1), (4, 100, 1))
    """
    kparams, ktrain, kcv = jax.random.split(key, 3)
    a, p = sample_sinusoid_params(kparams, amplitude=amplitude, phase=phase)
    lo, hi = x_range
    x = jax.random.uniform(ktrain, (steps, batch, 1), jnp.float32, lo, hi)
    if evenly_spaced:
        x_cv = jnp.linspace(lo, hi, cv, dtype=jnp.float32)[:, None]
    else:
        x_cv = jax.random.uniform(kcv, (cv, 1), jnp.float32, lo, hi)
    return {
        "train": {"x": x, "y": sinusoid(x, a, p)},
        "cv": {"x": x_cv, "y": sinusoid(x_cv, a, p)},
    }
