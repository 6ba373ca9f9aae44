"""File formats for datasets: IDX (the MNIST family's format) and ``.npz``.

IDX (LeCun's format): a 4-byte magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then the row-major big-endian data. Dtype codes: ``0x08`` uint8, ``0x09``
int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64. Files may be
gzip-compressed; :func:`load_idx` detects gzip by its magic bytes, not by the file name.

:func:`save_npz` writes a byte-for-byte reproducible ``.npz`` (fixed zip timestamps, sorted
members, :func:`write_npz`), atomically (temporary file + rename), so a cache's sha256 identifies its content.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tempfile
import zipfile

import numpy as np

from agentgraph.errors import AgentGraphError

__all__ = ["load_idx", "write_idx", "load_npz", "save_npz", "write_npz"]

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("=").str: code for code, dt in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian array.

    Returns:
        An array of the file's dtype and shape, e.g. ``uint8 [60000, 28, 28]`` for MNIST images
        and ``uint8 [60000]`` for labels.

    Raises:
        AgentGraphError: the file is missing, has a bad magic number or an unknown dtype code,
            or its size does not match its header (the message names the path).

    Example:
        >>> import os, tempfile, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "a-idx3-ubyte.gz")
        >>> write_idx(p, np.arange(6, dtype=np.uint8).reshape(1, 2, 3))
        >>> load_idx(p).tolist()
        [[[0, 1, 2], [3, 4, 5]]]
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AgentGraphError(f"IDX file {path!r} does not exist.")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except Exception as e:  # noqa: BLE001 - BadGzipFile, EOFError, zlib.error
            raise AgentGraphError(f"IDX file {path!r} is a corrupt gzip stream: {e}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise AgentGraphError(f"{path!r} is not an IDX file: it must start with two zero bytes.")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise AgentGraphError(
            f"IDX file {path!r} has unknown dtype code 0x{code:02X}; "
            f"known: {', '.join(f'0x{c:02X}' for c in _IDX_DTYPES)}."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise AgentGraphError(f"IDX file {path!r} is truncated inside its header ({ndim} dimensions).")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise AgentGraphError(
            f"IDX file {path!r} has {len(raw)} bytes but its header (shape {tuple(shape)}, "
            f"{dtype.newbyteorder('=').name}) needs {expected}."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends with ``.gz``.

    The dtype must be one IDX knows (uint8, int8, int16, int32, float32, float64).

    Example:
        >>> import os, tempfile, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
        >>> write_idx(p, np.array([3, 1, 4], dtype=np.uint8))
        >>> load_idx(p).tolist()
        [3, 1, 4]
    """
    path = os.fspath(path)
    a = np.asarray(array)
    code = _IDX_CODES.get(a.dtype.newbyteorder("=").str)
    if code is None:
        raise AgentGraphError(f"Cannot write dtype {a.dtype} to IDX {path!r}; use uint8, int8, int16, int32, float32 or float64.")
    raw = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    raw += np.ascontiguousarray(a, dtype=_IDX_DTYPES[code]).tobytes()
    if path.endswith(".gz"):
        raw = gzip.compress(raw, mtime=0)
    with open(path, "wb") as f:
        f.write(raw)


def load_npz(path: str | os.PathLike, x_key: str = "x", y_key: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Read two arrays (inputs and labels) from a ``.npz`` file.

    Returns:
        ``(x, y)`` exactly as stored (e.g. ``uint8 [N, H, W]`` and ``int [N]``).

    Raises:
        AgentGraphError: the file is missing or unreadable, or a key is absent (the message lists
            the keys the file has).

    Example:
        >>> import os, tempfile, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "d.npz")
        >>> np.savez(p, images=np.zeros((2, 3, 3)), labels=np.array([0, 1]))
        >>> x, y = load_npz(p, "images", "labels")
        >>> x.shape, y.tolist()
        ((2, 3, 3), [0, 1])
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AgentGraphError(f"npz file {path!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (x_key, y_key) if k not in f.files]
            if missing:
                raise AgentGraphError(
                    f"npz file {path!r} has no key {missing[0]!r}; its keys are {sorted(f.files)}."
                )
            return f[x_key], f[y_key]
    except AgentGraphError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged archive fails in many ways (bad zip, bad npy, zlib, ...)
        raise AgentGraphError(f"Cannot read npz file {path!r}: it is damaged or not an .npz "
                              f"({type(e).__name__}: {e}).") from None


def write_npz(f: io.BufferedIOBase | io.RawIOBase | object, arrays: dict[str, np.ndarray], *,
              compress: bool = False) -> None:
    """Write ``arrays`` as ``.npz`` members into the open binary file ``f``, reproducibly: members
    sorted by name, timestamps fixed at 1980-01-01, so the same arrays give the same bytes (what
    :func:`save_npz` and :func:`agentgraph.checkpoint.save` write).

    Example:
        >>> import io, numpy as np
        >>> a, b = io.BytesIO(), io.BytesIO()
        >>> write_npz(a, {"x": np.arange(3)}); write_npz(b, {"x": np.arange(3)})
        >>> a.getvalue() == b.getvalue(), np.load(io.BytesIO(a.getvalue()))["x"].tolist()
        (True, [0, 1, 2])
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(f, "w", compression=method) as z:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            z.writestr(info, buf.getvalue())


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` to a reproducible compressed ``.npz`` atomically; returns ``path``.

    Same content gives the same bytes (members sorted, timestamps fixed at 1980-01-01), and a
    process killed mid-write leaves any previous file intact.

    Example:
        >>> import os, tempfile, hashlib, numpy as np
        >>> d = tempfile.mkdtemp()
        >>> a = save_npz(os.path.join(d, "a.npz"), {"x": np.arange(3)})
        >>> b = save_npz(os.path.join(d, "b.npz"), {"x": np.arange(3)})
        >>> open(a, "rb").read() == open(b, "rb").read()
        True
        >>> np.load(a)["x"].tolist()
        [0, 1, 2]
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write_npz(f, arrays, compress=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
