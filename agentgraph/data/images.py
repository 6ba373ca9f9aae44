"""Image classification datasets, offline, preprocessed the MPLP paper's way.

=================  ==========================================================================
name               source
=================  ==========================================================================
``digits``         scikit-learn's ``load_digits`` (1,797 real 8×8 digits inside the wheel; the
                   embedded default). Pixels are 0..16, so they are divided by 16, not 255.
                   Split: a fixed permutation (``numpy.random.default_rng(0)``), first 1,397
                   train, last 400 test.
``mnist``          ``<cache>/mnist.npz``, filled once by ``python -m agentgraph.data fetch mnist``
                   (see :mod:`agentgraph.data.mnist`); 60k train / 10k test, ÷255.
``fashion_mnist``  Debian's ``dataset-fashion-mnist`` IDX files (see
                   :mod:`agentgraph.data.idx_dirs`), or ``path``; 60k / 10k, ÷255.
``idx``            your directory ``path`` of MNIST-layout IDX files.
``npz``            your ``.npz`` at ``path`` with ``x_train, y_train, x_test, y_test``.
=================  ==========================================================================

Every dataset goes through :func:`~agentgraph.data.preprocess.preprocess_images`: ``x / scale``
→ bilinear resize to ``size`` (TF2 semantics, no antialiasing; ``None`` keeps the native size) →
flatten → one global mean/std from the training split applied to both splits. For your own
files ``scale`` defaults to 255 for integer pixels and 1 for float pixels.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from agentgraph.data.cache import cache_dir
from agentgraph.data.formats import load_npz
from agentgraph.data.idx_dirs import load_fashion_mnist_raw, load_idx_dir
from agentgraph.data.mnist import load_mnist_raw
from agentgraph.data.preprocess import preprocess_images, standardise
from agentgraph.errors import AgentGraphError

__all__ = ["DATASETS", "Dataset", "load_digits_raw", "load_npz_raw", "load_dataset", "cache_dir"]

DATASETS = ("digits", "mnist", "fashion_mnist", "idx", "npz")
DIGITS_TRAIN = 1397

Raw = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A preprocessed classification dataset.

    Attributes:
        x_train, x_test: float32 ``[N, d]`` / ``[M, d]``, flattened and standardised.
        y_train, y_test: int32 labels ``[N]`` / ``[M]`` in ``0 .. n_classes - 1``.
        n_classes: number of classes.
        shape: one image's shape before flattening (after resizing), ``d = prod(shape)``.
        mean, std: the training split's global statistics that were removed, in ``x / scale``
            units (apply them to other images of the same source, e.g. for transfer).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    shape: tuple[int, ...]
    mean: float = 0.0
    std: float = 1.0


def load_digits_raw(seed: int = 0, n_train: int = DIGITS_TRAIN) -> Raw:
    """scikit-learn's 8×8 digits, split by a fixed permutation: ``(x_train float [n_train, 8, 8]
    (0..16), y_train, x_test [1797 - n_train, 8, 8], y_test)``.

    Raises:
        AgentGraphError: scikit-learn is not installed (the message gives the pip command).

    Example:
        >>> x_train, y_train, x_test, y_test = load_digits_raw()
        >>> x_train.shape, x_test.shape, float(x_train.max())
        ((1397, 8, 8), (400, 8, 8), 16.0)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise AgentGraphError(
            "The 'digits' dataset needs scikit-learn, a dependency of agentgraph: pip install scikit-learn."
        ) from None
    d = load_digits()
    x, y = np.asarray(d.images), np.asarray(d.target)
    perm = np.random.default_rng(seed).permutation(len(y))
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[te], y[te]


def load_npz_raw(path: str | os.PathLike) -> Raw:
    """A user's ``.npz`` with arrays ``x_train [N, H, W(, C)] or [N, d]``, ``y_train [N]``,
    ``x_test``, ``y_test``, returned as stored.

    Example:
        >>> import os, tempfile, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "mine.npz")
        >>> np.savez(p, x_train=np.zeros((4, 2, 2)), y_train=np.arange(4), x_test=np.zeros((1, 2, 2)), y_test=[0])
        >>> [a.shape for a in load_npz_raw(p)]
        [(4, 2, 2), (4,), (1, 2, 2), (1,)]
    """
    x_train, y_train = load_npz(path, "x_train", "y_train")
    x_test, y_test = load_npz(path, "x_test", "y_test")
    return x_train, y_train, x_test, y_test


def _labels(y: np.ndarray, what: str) -> np.ndarray:
    y = np.asarray(y)
    integral = y.dtype.kind in "iub" or (y.dtype.kind == "f" and bool(np.all(y == np.rint(y))))
    if y.ndim != 1 or not integral:
        bad = ""
        if y.ndim == 1 and y.dtype.kind == "f":
            i = int(np.argmax(y != np.rint(y)))
            bad = f" ({what}[{i}] is {y[i]})"
        raise AgentGraphError(f"{what} must be integer class labels [N], got {y.dtype} {y.shape}{bad}.")
    if y.size and y.max() > np.iinfo(np.int32).max:
        i = int(np.argmax(y))
        raise AgentGraphError(f"{what}[{i}] is {y[i]}: labels must be classes 0 .. n_classes - 1.")
    if y.size and y.min() < 0:
        i = int(np.argmin(y))
        raise AgentGraphError(f"{what}[{i}] is {y[i]}: labels must be classes 0 .. n_classes - 1.")
    return y.astype(np.int32)


def _build(raw: Raw, name: str, *, scale: float | None, size: int | tuple[int, int] | None, n_classes: int | None) -> Dataset:
    x_tr, y_tr, x_te, y_te = (np.asarray(a) for a in raw)
    y_tr, y_te = _labels(y_tr, f"{name} y_train"), _labels(y_te, f"{name} y_test")
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if x.ndim == 0 or x.shape[:1] != y.shape:
            raise AgentGraphError(f"{name}: x_{split} has shape {x.shape} but y_{split} has {y.shape[0]} labels; "
                                  "they need one label per example.")
        if x.shape[0] == 0:
            raise AgentGraphError(f"{name}: the {split} split is empty (x_{split} has shape {x.shape}); "
                                  "both splits need examples.")
        if x.dtype.kind not in "biuf":
            raise AgentGraphError(f"{name}: x_{split} has dtype {x.dtype}; images must be numbers (integers or floats).")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            where = np.argwhere(~np.isfinite(x))[0]
            raise AgentGraphError(f"{name}: x_{split} contains NaN or inf (first at index {tuple(int(i) for i in where)}, "
                                  f"{int(np.count_nonzero(~np.isfinite(x)))} values in all); clean the data.")
        if x.dtype.kind == "f" and np.abs(x).max() > np.finfo(np.float32).max:
            raise AgentGraphError(f"{name}: x_{split} does not fit float32 (values up to {np.abs(x).max():.3g}); "
                                  "rescale the data.")
        if n_classes is not None and y.max() >= n_classes:
            i = int(np.argmax(y >= n_classes))
            raise AgentGraphError(f"{name}: y_{split}[{i}] is {int(y[i])} but the dataset has {n_classes} classes "
                                  f"(labels 0 .. {n_classes - 1}).")
    if scale is None:
        scale = 255.0 if x_tr.dtype.kind in "iu" else 1.0
    if x_tr.ndim == 2:
        if size is not None:
            raise AgentGraphError(
                f"{name}: x_train is flat [N, d] = {x_tr.shape}, which cannot be resized; store images as "
                "[N, H, W], or pass size=None (config: data.image_size: null)."
            )
        a, b, mean, std = standardise(x_tr / scale, np.asarray(x_te, np.float64) / scale)
        shape: tuple[int, ...] = (int(x_tr.shape[1]),)
    else:
        a, b, shape, mean, std = preprocess_images(x_tr, x_te, scale=scale, size=size)
    n_cls = n_classes if n_classes is not None else int(max(y_tr.max(initial=0), y_te.max(initial=0)) + 1)
    return Dataset(a, y_tr, b, y_te, n_cls, shape, mean, std)


def load_dataset(
    name: str,
    *,
    size: int | tuple[int, int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    scale: float | None = None,
) -> Dataset:
    """Load and preprocess a dataset by name (see the module docstring for the sources).

    Args:
        name: one of :data:`DATASETS`.
        size: resize images to ``size × size`` (or ``(h, w)``); ``None`` keeps the native size.
        cache_dir: the fetched-data cache (``mnist``, ``fashion_mnist``); default
            ``$AGENTGRAPH_DATA`` or ``~/.cache/agentgraph``.
        path: your file (``npz``) or directory (``idx``, optionally ``fashion_mnist``).
        scale: the raw pixel maximum for ``npz``/``idx`` (default 255 for integer pixels, 1 for
            floats); the named datasets use their own (digits 16, others 255).

    Returns:
        A :class:`Dataset` (``x_* [N, size*size]`` float32 standardised, ``y_*`` int32).

    Raises:
        AgentGraphError: unknown name (the message lists the choices), missing files (the
            message names the path and how to get them), missing scikit-learn for ``digits``.

    Example:
        >>> import os, tempfile, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "mine.npz")
        >>> rng = np.random.default_rng(0)
        >>> np.savez(p, x_train=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8), y_train=np.arange(20) % 3,
        ...          x_test=rng.integers(0, 256, (5, 6, 6), dtype=np.uint8), y_test=np.arange(5) % 3)
        >>> ds = load_dataset("npz", path=p, size=3)
        >>> ds.x_train.shape, ds.x_test.shape, ds.n_classes, ds.shape
        ((20, 9), (5, 9), 3, (3, 3))
        >>> abs(float(ds.x_train.mean())) < 1e-6, round(float(ds.x_train.std()), 5)
        (True, 1.0)
    """
    key = name.replace("-", "_").lower() if isinstance(name, str) else name
    if key not in DATASETS:
        raise AgentGraphError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    if key in ("npz", "idx"):
        if path is None:
            what = "an .npz file" if key == "npz" else "a directory of MNIST-layout IDX files"
            raise AgentGraphError(f"Dataset {key!r} needs path= pointing at {what}.")
        if not os.path.exists(path):
            raise AgentGraphError(f"Dataset {key!r}: {os.fspath(path)!r} does not exist.")
        raw = load_npz_raw(path) if key == "npz" else load_idx_dir(path)
        return _build(raw, f"{key} {os.fspath(path)!r}", scale=scale, size=size, n_classes=None)
    if key == "digits":
        return _build(load_digits_raw(), "digits", scale=16.0, size=size, n_classes=10)
    if key == "mnist":
        return _build(load_mnist_raw(cache_dir), "mnist", scale=255.0, size=size, n_classes=10)
    return _build(load_fashion_mnist_raw(path, cache_dir), "fashion_mnist", scale=255.0, size=size, n_classes=10)
