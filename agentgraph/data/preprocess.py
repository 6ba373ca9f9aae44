"""Image preprocessing the MPLP paper's way: scale to [0, 1], bilinear resize, flatten, one global
standardisation measured on the training split.

**Resize semantics.** :func:`resize_bilinear` is TensorFlow 2's ``tf.image.resize(...,
"bilinear")`` (half-pixel centres, ``antialias=False``), written as two small interpolation
matrices in numpy: output pixel ``i`` samples input coordinate ``(i + 0.5) * in / out - 0.5``,
clamped to the image, and interpolates its two neighbours linearly. Downsampling therefore reads
only the two nearest pixels per axis (no low-pass filter); it equals
``jax.image.resize(x, shape, "bilinear", antialias=False)`` (tested). ``jax.image.resize``'s
default ``antialias=True`` widens the kernel when downsampling and gives different pixels.

**Standardisation.** One scalar mean and one scalar standard deviation (population, ``ddof=0``)
over every pixel of the training split, applied to both splits (MPLP §4.3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.errors import AgentGraphError

__all__ = ["resize_matrix", "resize_bilinear", "standardise", "preprocess_images", "one_hot"]

_CHUNK = 8192  # images resized at once (bounds the float64 working memory)


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The ``[n_out, n_in]`` float64 matrix of 1-d bilinear interpolation (half-pixel centres,
    no antialiasing); each row sums to 1.

    Example:
        >>> resize_matrix(2, 4).tolist()
        [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    """
    if n_in < 1 or n_out < 1:
        raise AgentGraphError(f"Resize sizes must be positive, got {n_in} -> {n_out}.")
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    floor = np.floor(src)
    frac = src - floor
    lo = np.clip(floor, 0, n_in - 1).astype(np.int64)
    hi = np.clip(floor + 1, 0, n_in - 1).astype(np.int64)
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``images [N, H, W]`` or ``[N, H, W, C]`` to ``size = (h, w)``
    (TF2 semantics, see the module docstring); float64 out, ``[N, h, w]`` or ``[N, h, w, C]``.

    Example:
        >>> import numpy as np
        >>> x = np.arange(16.0).reshape(1, 4, 4)
        >>> resize_bilinear(x, (2, 2))[0].tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim not in (3, 4):
        raise AgentGraphError(f"resize_bilinear wants images [N, H, W] or [N, H, W, C], got shape {x.shape}.")
    h, w = size
    mh, mw = resize_matrix(x.shape[1], h), resize_matrix(x.shape[2], w)
    out = np.empty((x.shape[0], h, w, *x.shape[3:]))
    for s in range(0, x.shape[0], _CHUNK):
        c = x[s : s + _CHUNK]
        out[s : s + _CHUNK] = np.einsum("ih,nhw...,jw->nij...", mh, c, mw, optimize=True)
    return out


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Subtract one global mean and divide by one global std, both measured on ``x_train``.

    Returns:
        ``(x_train', x_test', mean, std)`` with the arrays float32 and ``std`` replaced by 1 when
        the training data is constant.

    Example:
        >>> import numpy as np
        >>> tr, te, m, s = standardise(np.array([[0.0, 2.0]]), np.array([[4.0]]))
        >>> tr.tolist(), te.tolist(), m, s
        ([[-1.0, 1.0]], [[3.0]], 1.0, 1.0)
    """
    tr = np.asarray(x_train, dtype=np.float64)
    mean = float(tr.mean())
    std = float(tr.std())
    if not np.isfinite(mean) or not np.isfinite(std):
        raise AgentGraphError("Training images contain NaN or inf; cannot standardise.")
    if std < 1e-12:
        std = 1.0
    out_tr = ((tr - mean) / std).astype(np.float32)
    out_te = ((np.asarray(x_test, dtype=np.float64) - mean) / std).astype(np.float32)
    return out_tr, out_te, mean, std


def _scaled(images: np.ndarray, scale: float, hw: tuple[int, int] | None) -> np.ndarray:
    """``images / scale`` in float64, resized to ``hw`` (``None``: kept), a chunk of images at a
    time: the full-size float64 copy of a 60,000-image set (376 MB for MNIST) is never made
    when the images are resized."""
    if hw is None:
        return images.astype(np.float64) / scale
    out = np.empty((images.shape[0], *hw, *images.shape[3:]))
    for s in range(0, images.shape[0], _CHUNK):
        out[s : s + _CHUNK] = resize_bilinear(images[s : s + _CHUNK].astype(np.float64) / scale, hw)
    return out


def preprocess_images(
    x_train: np.ndarray,
    x_test: np.ndarray,
    *,
    scale: float = 255.0,
    size: int | tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], float, float]:
    """The paper's pipeline: ``x / scale`` → bilinear resize to ``size`` (``None``: keep) →
    flatten → global standardisation with the training split's mean and std.

    Args:
        x_train, x_test: images ``[N, H, W]`` or ``[N, H, W, C]`` (any numeric dtype).
        scale: the raw pixel maximum (255 for bytes, 16 for scikit-learn's digits).
        size: ``h`` (square) or ``(h, w)``.

    Returns:
        ``(x_train [N, d] float32, x_test [M, d] float32, shape, mean, std)`` where ``shape`` is
        one image's shape after resizing and ``d = prod(shape)``; ``mean``/``std`` are in the
        ``x / scale`` units.

    Example:
        >>> import numpy as np
        >>> tr, te, shape, m, s = preprocess_images(np.full((2, 4, 4), 255), np.zeros((1, 4, 4)), size=2)
        >>> tr.shape, te.shape, shape
        ((2, 4), (1, 4), (2, 2))
    """
    tr, te = np.asarray(x_train), np.asarray(x_test)
    for name, a in (("x_train", tr), ("x_test", te)):
        if a.ndim not in (3, 4):
            raise AgentGraphError(f"{name} must be images [N, H, W] or [N, H, W, C], got shape {a.shape}.")
    if tr.shape[1:] != te.shape[1:]:
        raise AgentGraphError(f"x_train images are {tr.shape[1:]} but x_test images are {te.shape[1:]}.")
    hw = None
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if len(hw) != 2 or min(hw) < 1:
            raise AgentGraphError(f"size must be a positive int or (h, w), got {size!r}.")
        if hw == tr.shape[1:3]:
            hw = None
    tr, te = _scaled(tr, scale, hw), _scaled(te, scale, hw)
    shape = tuple(int(s) for s in tr.shape[1:])
    tr_s, te_s, mean, std = standardise(tr.reshape(tr.shape[0], -1), te.reshape(te.shape[0], -1))
    return tr_s, te_s, shape, mean, std


def one_hot(labels: jax.Array | np.ndarray, n_classes: int) -> jax.Array:
    """Integer labels ``[...]`` → float32 one-hot ``[..., n_classes]`` (pure JAX; jit/vmap-able).

    Example:
        >>> one_hot(np.array([2, 0]), 3).tolist()
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    return jax.nn.one_hot(jnp.asarray(labels), n_classes, dtype=jnp.float32)
