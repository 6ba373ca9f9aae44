"""Directories of MNIST-layout IDX files, and Fashion-MNIST from the Debian package.

A *MNIST-layout directory* holds four IDX files named as LeCun's and Zalando's distributions
name them: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` — each optionally gzip-compressed (``.gz``), and ``.idx`` spellings
(``train-images.idx3-ubyte``) accepted too.

Fashion-MNIST (10 classes, 60k train / 10k test, 28×28 uint8) ships in Debian's
``dataset-fashion-mnist`` as such a directory at ``/usr/share/datasets/fashion-mnist/``
(checked with ``dpkg -c`` on ``0.0~git20200523.55506a9-1``: the four ``*.gz`` files). It is
looked for in ``<cache>/fashion-mnist/`` first, then there. ``python -m agentgraph.data fetch
fashion_mnist`` fills the cache without installing anything: ``apt-get download`` the package,
``dpkg-deb -x`` it into a temporary directory, copy the four files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agentgraph.data.cache import cache_dir as _cache_dir
from agentgraph.data.cache import fetch_command
from agentgraph.data.formats import load_idx
from agentgraph.errors import AgentGraphError

__all__ = ["IDX_FILES", "SYSTEM_DIR", "DEBIAN_PACKAGE", "find_idx_files", "load_idx_dir",
           "fashion_mnist_dirs", "load_fashion_mnist_raw", "fetch_fashion_mnist"]

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"


def _candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")
    return [stem + ".gz", stem, dotted + ".gz", dotted]


def find_idx_files(directory: str | os.PathLike) -> dict[str, Path] | None:
    """The four IDX files of a MNIST-layout ``directory`` keyed ``x_train, y_train, x_test,
    y_test``, or ``None`` when any is missing.

    Example:
        >>> import tempfile
        >>> find_idx_files(tempfile.mkdtemp()) is None
        True
    """
    d = Path(directory)
    found: dict[str, Path] = {}
    for key, stem in IDX_FILES.items():
        hit = next((d / n for n in _candidates(stem) if (d / n).is_file()), None)
        if hit is None:
            return None
        found[key] = hit
    return found


def load_idx_dir(directory: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read a MNIST-layout directory: ``(x_train [N, H, W], y_train [N], x_test [M, H, W],
    y_test [M])`` in the files' dtypes (uint8 for MNIST and Fashion-MNIST).

    Raises:
        AgentGraphError: a file is missing (the message lists the names looked for) or the
            image and label counts disagree.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from agentgraph.data.formats import write_idx
        >>> d = tempfile.mkdtemp()
        >>> for key, stem in IDX_FILES.items():
        ...     n = 3 if "train" in key else 2
        ...     write_idx(os.path.join(d, stem + ".gz"), np.zeros((n, 4, 4) if key[0] == "x" else n, np.uint8))
        >>> [a.shape for a in load_idx_dir(d)]
        [(3, 4, 4), (3,), (2, 4, 4), (2,)]
    """
    files = find_idx_files(directory)
    if files is None:
        names = ", ".join(f"{s}[.gz]" for s in IDX_FILES.values())
        raise AgentGraphError(f"{os.fspath(directory)!r} lacks the MNIST-layout IDX files ({names}).")
    a = {k: load_idx(p) for k, p in files.items()}
    for split in ("train", "test"):
        x, y = a[f"x_{split}"], a[f"y_{split}"]
        if x.ndim not in (3, 4) or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise AgentGraphError(
                f"{files[f'x_{split}']} holds {x.shape} but {files[f'y_{split}']} holds {y.shape}: "
                "want images [N, H, W] and labels [N]."
            )
    return a["x_train"], a["y_train"], a["x_test"], a["y_test"]


def fashion_mnist_dirs(path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where Fashion-MNIST is looked for, in order: ``[path]`` when given, else
    ``[<cache>/fashion-mnist, /usr/share/datasets/fashion-mnist]``.

    Example:
        >>> [p.as_posix() for p in fashion_mnist_dirs(cache_dir="/c")]
        ['/c/fashion-mnist', '/usr/share/datasets/fashion-mnist']
    """
    if path is not None:
        return [Path(path)]
    return [_cache_dir(cache_dir) / "fashion-mnist", SYSTEM_DIR]


def load_fashion_mnist_raw(
    path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST bytes from the first directory of :func:`fashion_mnist_dirs` that has them:
    ``(x_train uint8 [60000, 28, 28], y_train, x_test uint8 [10000, 28, 28], y_test)``.

    Raises:
        AgentGraphError: no directory has the files; the message names every path tried and the
            commands that provide them.

    Example:
        >>> x_train, y_train, x_test, y_test = load_fashion_mnist_raw()  # doctest: +SKIP
        >>> x_train.shape  # doctest: +SKIP
        (60000, 28, 28)
    """
    dirs = fashion_mnist_dirs(path, cache_dir)
    for d in dirs:
        if find_idx_files(d) is not None:
            return load_idx_dir(d)
    tried = ", ".join(str(d) for d in dirs)
    if path is not None:
        raise AgentGraphError(f"Fashion-MNIST IDX files not found in {tried} (train-images-idx3-ubyte[.gz] and the 3 others).")
    raise AgentGraphError(
        f"Fashion-MNIST not found (looked in {tried}). Fetch it once with: "
        f"{fetch_command('fashion_mnist', cache_dir)}  (or: apt-get install {DEBIAN_PACKAGE})"
    )


def _run(cmd: list[str], cwd: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise AgentGraphError(
            f"`{cmd[0]}` is not available: install {DEBIAN_PACKAGE} another way, or pass the directory "
            "of your IDX files as path."
        ) from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-600:]
        raise AgentGraphError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {tail}")


def fetch_fashion_mnist(cache_dir: str | os.PathLike | None = None, *, force: bool = False) -> dict[str, Any]:
    """Copy Fashion-MNIST's IDX files into ``<cache>/fashion-mnist/``: from the system directory
    when the Debian package is installed, else by ``apt-get download`` + ``dpkg-deb -x`` of
    ``dataset-fashion-mnist`` in a temporary directory (network: Debian's archive; no install).

    Returns:
        ``{"path", "files", "seconds", "cached", "source"}``.

    Example:
        >>> fetch_fashion_mnist()["path"]  # doctest: +SKIP
        '/root/.cache/agentgraph/fashion-mnist'
    """
    t0 = time.perf_counter()
    out = _cache_dir(cache_dir) / "fashion-mnist"
    if find_idx_files(out) is not None and not force:
        return {"path": str(out), "files": sorted(p.name for p in find_idx_files(out).values()),
                "seconds": time.perf_counter() - t0, "cached": True, "source": str(out)}
    with tempfile.TemporaryDirectory(prefix="agentgraph-fashion-") as tmp:
        src = SYSTEM_DIR
        if find_idx_files(src) is None:
            _run(["apt-get", "download", DEBIAN_PACKAGE], tmp)
            debs = sorted(Path(tmp).glob(f"{DEBIAN_PACKAGE}_*.deb"))
            if len(debs) != 1:
                raise AgentGraphError(f"apt-get download left {[d.name for d in debs]}; expected one .deb.")
            _run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "root")], tmp)
            src = Path(tmp) / "root" / SYSTEM_DIR.relative_to("/")
        files = find_idx_files(src)
        if files is None:
            raise AgentGraphError(f"{DEBIAN_PACKAGE} did not provide the IDX files in {src}.")
        out.mkdir(parents=True, exist_ok=True)
        for p in files.values():
            shutil.copyfile(p, out / (p.name + ".part"))
            os.replace(out / (p.name + ".part"), out / p.name)
        load_idx_dir(out)  # validate what was copied
        source = str(SYSTEM_DIR) if src == SYSTEM_DIR else f"apt-get download {DEBIAN_PACKAGE}"
    return {"path": str(out), "files": sorted(p.name for p in files.values()),
            "seconds": time.perf_counter() - t0, "cached": False, "source": source}
