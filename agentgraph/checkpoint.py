"""Checkpoints for meta-training: one ``.npz`` per save, written atomically, verified on load.

File layout (format version 1). A checkpoint is an ordinary NumPy ``.npz`` archive holding

* ``l0, l1, ...``: the leaves of the pytree, flattened with
  :func:`jax.tree_util.tree_flatten_with_path`, as NumPy arrays (dtypes NumPy cannot store
  natively, such as ``bfloat16``, are stored as same-width unsigned integers and viewed back);
* ``__checkpoint__``: a UTF-8 JSON header (as a ``uint8`` array) with the format name and
  version, one record per leaf (``jax.tree_util.keystr`` key path, shape, dtype), the user
  ``metadata`` (config, step, seed, ...) and a sha256 over the header and every leaf's bytes.

Guarantees:

* **Atomic writes.** :func:`save` writes to a temporary file in the target's directory, flushes
  and ``fsync``\\ s it, then ``os.replace``\\ s it onto the target: a process killed mid-write
  leaves the previous checkpoint (if any) byte-for-byte intact and never a partial file at the
  target path.
* **No bad states.** Trees containing NaN/inf are refused, so a diverged state never overwrites a
  good checkpoint.
* **Verified reads.** :func:`load` raises :class:`~agentgraph.errors.AgentGraphError` for a
  missing file, for a truncated or corrupted one (the message says the checkpoint is *corrupt*),
  and, given a ``template`` pytree, for any difference in key paths, shapes or dtypes (first few
  differences of each kind plus counts).

Step-numbered checkpoints ``ckpt_{step:08d}.npz`` in a run directory: :func:`save_step` (with
``keep=N`` rotation), :func:`latest`, :func:`list_checkpoints`. Part of a checkpoint (e.g. only
the learned protocol out of a full training state) loads with :func:`load_subtree`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from agentgraph.data.formats import write_npz
from agentgraph.errors import AgentGraphError, io_error

__all__ = ["FORMAT", "VERSION", "save", "load", "load_subtree", "latest", "list_checkpoints", "save_step",
           "step_path"]

FORMAT = "agentgraph-checkpoint"
VERSION = 1

_HEADER = "__checkpoint__"
_LEGACY_META = "__metadata__"  # format 0 (agentgraph before format versions): arrays keyed by key path
_NAME = re.compile(r"^ckpt_(\d{8,})\.npz$")
_TMP = re.compile(r"^\.ckpt_\d{8,}\.npz\.tmp-")
_SHOW = 5  # differences listed per kind in error messages

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------------
# helpers


def _corrupt(path: str, why: str) -> AgentGraphError:
    return AgentGraphError(f"Checkpoint {path!r} is corrupt ({why}); it cannot be loaded.")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"{type(o).__name__} {o!r} is not JSON-serialisable")


def _is_native(dtype: np.dtype) -> bool:
    """Whether ``np.save`` stores ``dtype`` faithfully (ml_dtypes such as bfloat16 are not)."""
    return dtype.type.__module__ == "numpy"


def _resolve_dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # a JAX dependency; registers bfloat16, float8_*, int4, ...

        return np.dtype(getattr(ml_dtypes, name))


def _hash_update(h: Any, arr: np.ndarray) -> None:
    h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _digest(header: dict, stored: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in header.items() if k != "sha256"}, sort_keys=True).encode())
    for arr in stored:
        h.update(b"\0")
        _hash_update(h, arr)
    return h.hexdigest()


def _non_finite(v: np.ndarray) -> int:
    if v.dtype.kind not in "fcV" and _is_native(v.dtype):
        return 0
    try:
        return int(v.size - np.count_nonzero(np.isfinite(v)))
    except TypeError:  # an extension dtype without isfinite (e.g. int4)
        return 0


def _keystr(prefix: str | Sequence[Any]) -> str:
    if isinstance(prefix, str):
        return prefix
    keys = []
    for k in prefix:
        if isinstance(k, str):
            keys.append(jax.tree_util.DictKey(k))
        elif isinstance(k, int):
            keys.append(jax.tree_util.SequenceKey(k))
        else:
            keys.append(k)
    return jax.tree_util.keystr(tuple(keys))


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode(path: str) -> int:
    """The mode a checkpoint file gets: the replaced file's, else ``0o666`` less the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        pass
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


# ---------------------------------------------------------------------------------------------
# save / load


def save(path: PathLike, tree: Any, *, metadata: dict | None = None) -> None:
    """Write ``tree`` and ``metadata`` to the checkpoint file ``path``, atomically.

    Args:
        path: target file (conventionally ``*.npz``); its directory is created if missing. An
            existing file there is replaced only once the new one is completely on disk.
        tree: any JAX pytree (dicts, lists, tuples, NamedTuples such as optax states) whose
            leaves are JAX/NumPy arrays or Python/NumPy scalars.
        metadata: JSON-serialisable dict (config, step, seed, ...), returned by :func:`load`.
            NumPy/JAX scalars and arrays in it are stored as Python numbers/lists; tuples come
            back as lists and non-string dict keys as strings (JSON).

    Raises:
        AgentGraphError: a leaf contains NaN or inf (the first offending key path is named;
            nothing is written), a leaf is not numeric/array-like, ``metadata`` is not
            JSON-serialisable, or the file cannot be written (disk full, read-only, permissions:
            the message names the path and the fix; nothing is replaced).

    Example:
        >>> import os, tempfile, numpy as np
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "state.npz")
        ...     save(p, {"w": np.ones((2, 3)), "step": 3}, metadata={"seed": 0})
        ...     flat, meta = load(p)
        >>> sorted(flat), meta
        (["['step']", "['w']"], {'seed': 0})
    """
    path = os.fspath(path)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise AgentGraphError(f"Checkpoint metadata must be a dict, got {type(metadata).__name__}.")
    try:
        # round-trip now so what load() returns is exactly what a JSON reader sees
        user = json.loads(json.dumps(metadata, default=_json_default))
    except (TypeError, ValueError) as e:
        raise AgentGraphError(f"Checkpoint metadata for {path!r} is not JSON-serialisable: {e}.") from None

    records, stored, bad = [], [], []
    for i, (kp, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(tree)[0]):
        key = jax.tree_util.keystr(kp)
        try:
            v = np.asarray(leaf)
        except Exception as e:  # noqa: BLE001 - anything that is not array-like
            raise AgentGraphError(f"Cannot checkpoint leaf {key} ({type(leaf).__name__}): {e}.") from None
        if v.dtype.kind == "O":
            raise AgentGraphError(
                f"Cannot checkpoint leaf {key}: {type(leaf).__name__} is not a numeric array or scalar."
            )
        n_bad = _non_finite(v)
        if n_bad:
            bad.append((key, n_bad, v.size))
        dtype_name = str(v.dtype)
        if not _is_native(v.dtype):
            v = np.ascontiguousarray(v).view(np.dtype(f"u{v.dtype.itemsize}"))
        stored.append(v)
        records.append({"path": key, "shape": list(v.shape), "dtype": dtype_name, "stored": v.dtype.str})
    if bad:
        key, n_bad, size = bad[0]
        others = f" (and {len(bad) - 1} more leaves)" if len(bad) > 1 else ""
        raise AgentGraphError(
            f"Refusing to save checkpoint {path!r}: leaf {key} contains NaN or inf ({n_bad} of {size} values)"
            f"{others}. Nothing was written; an existing checkpoint there is untouched."
        )
    paths = [r["path"] for r in records]
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise AgentGraphError(f"Cannot checkpoint: two leaves share the key path {dup}.")

    header = {"format": FORMAT, "version": VERSION, "leaves": records, "metadata": user}
    header["sha256"] = _digest(header, stored)
    members = {f"l{i}": v for i, v in enumerate(stored)}
    members[_HEADER] = np.frombuffer(json.dumps(header).encode(), np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=directory)
    except OSError as e:
        raise io_error(path, e, "write the checkpoint") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write_npz(f, members)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise io_error(path, e, "write the checkpoint", note="Nothing was replaced: an existing file there is "
                           "intact.") from None
        raise
    _fsync_dir(directory)


def _read(path: PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """``({keypath: array}, user metadata)`` from the file, fully verified."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AgentGraphError(f"Checkpoint {path!r} does not exist.")
    if os.path.isdir(path):
        raise AgentGraphError(f"Checkpoint {path!r} is a directory, not a checkpoint file (see latest()).")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise _corrupt(path, "not an .npz archive")
        with z:
            if _HEADER in z.files:
                header = json.loads(z[_HEADER].tobytes().decode("utf-8"))
                if not isinstance(header, dict) or header.get("format") != FORMAT:
                    raise _corrupt(path, "unrecognised header")
                if not isinstance(header.get("version"), int) or header["version"] > VERSION:
                    raise AgentGraphError(
                        f"Checkpoint {path!r} has format version {header.get('version')!r}; this agentgraph "
                        f"reads versions up to {VERSION}. Upgrade agentgraph to load it."
                    )
                records = header["leaves"]
                stored = [z[f"l{i}"] for i in range(len(records))]
                if len(z.files) != len(records) + 1:
                    raise _corrupt(path, f"{len(z.files) - 1} arrays for {len(records)} leaves")
                for r, v in zip(records, stored):
                    if list(v.shape) != r["shape"] or v.dtype.str != r["stored"]:
                        raise _corrupt(path, f"leaf {r['path']} has shape {v.shape} and dtype {v.dtype.str}, "
                                             f"header says {tuple(r['shape'])} and {r['stored']}")
                if header.get("sha256") != _digest(header, stored):
                    raise _corrupt(path, "checksum mismatch")
                out = {}
                for r, v in zip(records, stored):
                    out[r["path"]] = v if r["dtype"] == str(v.dtype) else v.view(_resolve_dtype(r["dtype"]))
                user = header["metadata"]
                if not isinstance(user, dict):
                    raise _corrupt(path, "metadata is not a dict")
                return out, user
            if _LEGACY_META in z.files:
                return _read_legacy(path, z)
            raise _corrupt(path, "no checkpoint header")
    except AgentGraphError:
        raise
    except Exception as e:  # noqa: BLE001 - bad zip, truncated member, bad npy header, bad JSON, ...
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None


def _read_legacy(path: str, z: Any) -> tuple[dict[str, np.ndarray], dict]:
    """Format 0: arrays stored under their key paths, JSON ``__metadata__`` with ``_sha256``/``_keys``."""
    arrays = {k: z[k] for k in z.files if k != _LEGACY_META}
    meta = json.loads(z[_LEGACY_META].tobytes().decode("utf-8"))
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    if meta.get("_sha256") != h.hexdigest() or sorted(meta.get("_keys", [])) != sorted(arrays):
        raise _corrupt(path, "checksum mismatch")
    arrays = {k: arrays[k] for k in meta["_keys"]}
    return arrays, {k: v for k, v in meta.items() if not k.startswith("_")}


def _leaf_dtype(leaf: Any) -> np.dtype | None:
    """The dtype a template leaf asks for; ``None`` for Python scalars (only the kind is checked)."""
    if isinstance(leaf, (bool, int, float, complex)):
        return None
    dt = getattr(leaf, "dtype", None)
    return np.dtype(dt) if dt is not None else np.asarray(leaf).dtype


def _kind_ok(leaf: Any, dtype: np.dtype) -> bool:
    if isinstance(leaf, bool):
        return dtype.kind == "b"
    if isinstance(leaf, int):
        return dtype.kind in "iu"
    if isinstance(leaf, float):
        return dtype.kind == "f"
    return dtype.kind == "c"


def _restore(leaf: Any, v: np.ndarray) -> Any:
    if isinstance(leaf, (bool, int, float, complex)) and v.shape == ():
        return type(leaf)(v.item())
    if isinstance(leaf, np.generic) and v.shape == ():
        return v[()]
    return v


def _fit(what: str, prefix: str, arrays: dict[str, np.ndarray], template: Any, allow_extra: bool) -> Any:
    """Unflatten ``arrays`` (relative key paths) into ``template``'s structure, or raise listing all
    differences."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    want = [(jax.tree_util.keystr(kp), leaf) for kp, leaf in leaves]
    missing, shapes, dtypes = [], [], []
    for key, leaf in want:
        if key not in arrays:
            missing.append(f"{prefix}{key}")
            continue
        v = arrays[key]
        shape = tuple(leaf.shape) if hasattr(leaf, "shape") else np.shape(leaf)
        if v.shape != shape:
            shapes.append(f"{prefix}{key}: checkpoint {v.shape} vs expected {shape}")
            continue
        dt = _leaf_dtype(leaf)
        if (dt is None and not _kind_ok(leaf, v.dtype)) or (dt is not None and v.dtype != dt):
            shown = type(leaf).__name__ if dt is None else str(dt)
            dtypes.append(f"{prefix}{key}: checkpoint {v.dtype} vs expected {shown}")
    wanted = {k for k, _ in want}
    extra = [] if allow_extra else [f"{prefix}{k}" for k in arrays if k not in wanted]
    if missing or extra or shapes or dtypes:
        lines = []
        for label, items in (("missing", missing), ("extra", extra), ("shape", shapes), ("dtype", dtypes)):
            lines += [f"  {label} {s}" for s in items[:_SHOW]]
            if len(items) > _SHOW:
                lines.append(f"  ... and {len(items) - _SHOW} more {label}")
        raise AgentGraphError(
            f"{what} does not match the expected tree: {len(missing)} missing key paths, {len(extra)} extra, "
            f"{len(shapes)} shape mismatches, {len(dtypes)} dtype mismatches:\n" + "\n".join(lines)
        )
    return jax.tree_util.tree_unflatten(treedef, [_restore(leaf, arrays[k]) for k, leaf in want])


def load(path: PathLike, template: Any = None, *, allow_extra: bool = False) -> tuple[Any, dict]:
    """Read the checkpoint at ``path``: ``(tree, metadata)``.

    Args:
        path: a file written by :func:`save` / :func:`save_step`.
        template: ``None`` to get the leaves as ``{keypath: np.ndarray}`` (in saved order); or a
            pytree (arrays, ``jax.ShapeDtypeStruct``\\ s, scalars) whose key paths, shapes and
            dtypes must all match the checkpoint, in which case the leaves come back as NumPy
            arrays in the template's structure (an optax state NamedTuple comes back as itself;
            Python-scalar template leaves come back as Python scalars).
        allow_extra: with a template, ignore checkpoint entries the template does not ask for.

    Returns:
        ``(tree, metadata)`` with the user metadata dict given to :func:`save`.

    Raises:
        AgentGraphError: the file is missing; it is truncated or corrupted ("... is corrupt");
            or the template differs (lists missing/extra key paths and shape/dtype mismatches
            such as ``['w']: checkpoint (4, 12) vs expected (4, 20)``, with counts).

    Example:
        >>> import os, tempfile, numpy as np, optax
        >>> params = {"w": np.zeros((2, 2), np.float32)}
        >>> state = {"params": params, "opt": optax.adam(1e-3).init(params)}
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save(os.path.join(d, "c.npz"), state, metadata={"step": 7})
        ...     tree, meta = load(os.path.join(d, "c.npz"), template=state)
        >>> type(tree["opt"][0]).__name__, tree["opt"][0].mu["w"].shape, meta["step"]
        ('ScaleByAdamState', (2, 2), 7)
    """
    arrays, meta = _read(path)
    if template is None:
        return arrays, meta
    return _fit(f"Checkpoint {os.fspath(path)!r}", "", arrays, template, allow_extra), meta


def load_subtree(path: PathLike, prefix: str | Sequence[Any], template: Any = None, *,
                 allow_extra: bool = False) -> tuple[Any, dict]:
    """Read only the part of a checkpoint under ``prefix``, e.g. the learned protocol out of a full
    training state (params + optimizer state), to transfer it into another architecture.

    Args:
        path: a file written by :func:`save` / :func:`save_step`.
        prefix: the subtree's key path, either as ``jax.tree_util.keystr`` text such as
            ``"['trainable']['protocol']"``, or as a sequence of keys: ``str`` (dict key),
            ``int`` (index) or JAX key entries (``jax.tree_util.GetAttrKey("mu")`` for a
            NamedTuple field). ``""`` / ``()`` is the whole tree.
        template: ``None`` for ``{relative keypath: np.ndarray}``, or a pytree shaped like the
            subtree (checked and unflattened as in :func:`load`).
        allow_extra: with a template, ignore entries under ``prefix`` the template does not ask for.

    Returns:
        ``(subtree, metadata)``.

    Raises:
        AgentGraphError: as :func:`load`; also when nothing in the checkpoint lies under
            ``prefix`` (the message lists the top-level keys that do exist). Mismatches are
            reported with full key paths.

    Example:
        >>> import os, tempfile, numpy as np
        >>> state = {"params": {"w": np.ones(3)}, "opt": (np.zeros(3), np.zeros(3))}
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save(os.path.join(d, "c.npz"), state, metadata={})
        ...     params, _ = load_subtree(os.path.join(d, "c.npz"), ("params",), {"w": np.empty(3)})
        >>> params["w"].tolist()
        [1.0, 1.0, 1.0]
    """
    pre = _keystr(prefix)
    arrays, meta = _read(path)
    sub = {}
    for k, v in arrays.items():
        if k.startswith(pre):
            rest = k[len(pre):]
            if rest == "" or rest[0] in "[.":
                sub[rest] = v
    if not sub:
        tops = sorted({re.match(r"^(\[[^\]]*\]|\.[^.\[]*)", k).group(1) for k in arrays if re.match(r"^[\[.]", k)})
        raise AgentGraphError(
            f"Checkpoint {os.fspath(path)!r} has nothing under {pre!r}; its top-level keys are "
            f"{', '.join(tops) or '(none)'}."
        )
    if template is None:
        return sub, meta
    return _fit(f"Subtree {pre!r} of checkpoint {os.fspath(path)!r}", pre, sub, template, allow_extra), meta


# ---------------------------------------------------------------------------------------------
# step-numbered checkpoints in a run directory


def step_path(directory: PathLike, step: int) -> str:
    """The file name :func:`save_step` uses for ``step``: ``<directory>/ckpt_{step:08d}.npz``.

    Example:
        >>> step_path("run", 42).replace(os.sep, "/")
        'run/ckpt_00000042.npz'
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise AgentGraphError(f"Checkpoint step must be a non-negative integer, got {step!r}.")
    return os.path.join(os.fspath(directory), f"ckpt_{int(step):08d}.npz")


def list_checkpoints(directory: PathLike) -> list[tuple[int, str]]:
    """``[(step, path), ...]`` of the ``ckpt_<step>.npz`` files in ``directory``, by increasing step
    (``[]`` if the directory does not exist). Temporary files of unfinished saves are ignored.

    Example:
        >>> import tempfile, numpy as np
        >>> with tempfile.TemporaryDirectory() as d:
        ...     for s in (5, 10):
        ...         _ = save_step(d, s, {"w": np.ones(1)})
        ...     print([step for step, _ in list_checkpoints(d)])
        [5, 10]
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    found = [(int(m.group(1)), f) for f in os.listdir(directory) if (m := _NAME.match(f))]
    return [(s, os.path.join(directory, f)) for s, f in sorted(found)]


def latest(directory: PathLike) -> str | None:
    """The path of the ``ckpt_<step>.npz`` with the highest step in ``directory``, or ``None``.

    Example:
        >>> import os, tempfile, numpy as np
        >>> with tempfile.TemporaryDirectory() as d:
        ...     print(latest(d))
        ...     for s in (9, 100, 10):
        ...         _ = save_step(d, s, {"w": np.ones(1)}, keep=None)
        ...     print(os.path.basename(latest(d)))
        None
        ckpt_00000100.npz
    """
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_step(directory: PathLike, step: int, tree: Any, metadata: dict | None = None,
              keep: int | None = 3) -> str:
    """Save ``tree`` as ``ckpt_{step:08d}.npz`` in ``directory`` (atomically, see :func:`save`) with
    ``metadata["step"] = step``, then delete all but the ``keep`` highest-step checkpoints.

    Older checkpoints are deleted only after the new one is safely in place, and never the one just
    written. Leftover temporary files of saves that were killed mid-write are removed too (one
    writer per directory is assumed). Returns the new checkpoint's path.

    Args:
        directory: run directory (created if missing).
        step: non-negative step number.
        tree: the pytree to save.
        metadata: user metadata (``step`` is set/overwritten).
        keep: how many checkpoints to retain (>= 1), or ``None`` to keep all.

    Example:
        >>> import os, tempfile, numpy as np
        >>> with tempfile.TemporaryDirectory() as d:
        ...     for s in range(4):
        ...         p = save_step(d, s, {"w": np.full(2, s)}, {"seed": 0}, keep=2)
        ...     print(sorted(os.listdir(d)), load(p)[1])
        ['ckpt_00000002.npz', 'ckpt_00000003.npz'] {'seed': 0, 'step': 3}
    """
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise AgentGraphError(f"save_step keep must be a positive integer or None, got {keep!r}.")
    path = step_path(directory, step)
    save(path, tree, metadata={**(metadata or {}), "step": int(step)})
    directory = os.fspath(directory)
    for f in os.listdir(directory):
        if _TMP.match(f):
            try:
                os.remove(os.path.join(directory, f))
            except OSError:
                pass
    if keep is not None:
        found = list_checkpoints(directory)
        for _, old in found[:-keep]:
            if os.path.abspath(old) != os.path.abspath(path):
                os.remove(old)
    return path
