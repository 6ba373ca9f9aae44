"""Checkpoints: one ``.npz`` per save, written atomically, checked on load.

A checkpoint holds the leaves of a pytree (``jax.tree_util.keystr`` paths as keys) plus a JSON
metadata entry (format, step, config, a sha256 of the leaves). Writes go to a temporary file in
the same directory which is fsynced and then renamed over the target, so a process killed while
writing leaves the previous checkpoint intact. Trees with NaN/inf are refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from typing import Any

import jax
import numpy as np

from agentgraph.errors import AgentGraphError

__all__ = ["save", "load", "latest", "save_step"]

_META = "__metadata__"
_NAME = re.compile(r"^ckpt_(\d{8})\.npz$")


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def save(path: str, tree: Any, *, metadata: dict | None = None) -> str:
    """Write ``tree`` (any pytree of arrays/scalars) and ``metadata`` (JSON-able) to ``path``
    atomically; returns ``path``.

    Raises:
        AgentGraphError: a leaf contains NaN or inf (named by its key path).

    Example:
        >>> import tempfile, os, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "c.npz")
        >>> _ = save(p, {"w": np.ones(2)}, metadata={"step": 3})
        >>> load(p)[1]["step"]
        3
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {}
    for p, leaf in leaves:
        key = jax.tree_util.keystr(p)
        v = np.asarray(leaf)
        if v.dtype.kind in "fc" and not np.all(np.isfinite(v)):
            raise AgentGraphError(f"Refusing to write checkpoint {path!r}: {key} contains NaN or inf.")
        arrays[key] = v
    meta = dict(metadata or {})
    meta["_sha256"] = _digest(arrays)
    meta["_keys"] = list(arrays)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            buf = io.BytesIO()
            np.savez(buf, **arrays, **{_META: np.frombuffer(json.dumps(meta).encode(), np.uint8)})
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load(path: str, template: Any = None) -> tuple[Any, dict]:
    """Read a checkpoint: ``({keypath: array}, metadata)``, or with ``template`` the tree in the
    template's structure (shapes checked).

    Raises:
        AgentGraphError: missing file, corrupt file, or a template that does not match (lists
            missing/extra paths and shape differences).

    Example:
        >>> import tempfile, os, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "c.npz")
        >>> _ = save(p, {"a": [np.zeros(2), np.ones(3)]})
        >>> load(p, template={"a": [np.empty(2), np.empty(3)]})[0]["a"][1].tolist()
        [1.0, 1.0, 1.0]
    """
    if not os.path.isfile(path):
        raise AgentGraphError(f"Checkpoint {path!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
        raise AgentGraphError(f"Checkpoint {path!r} is corrupt ({type(e).__name__}: {e}).") from None
    if meta.get("_sha256") != _digest(arrays) or meta.get("_keys") != list(arrays):
        raise AgentGraphError(f"Checkpoint {path!r} is corrupt (checksum mismatch).")
    user_meta = {k: v for k, v in meta.items() if not k.startswith("_")}
    if template is None:
        return arrays, user_meta
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    want = {jax.tree_util.keystr(p): leaf for p, leaf in leaves}
    missing = [k for k in want if k not in arrays]
    extra = [k for k in arrays if k not in want]
    wrong = [f"{k}: checkpoint {arrays[k].shape} vs expected {np.shape(v)}"
             for k, v in want.items() if k in arrays and arrays[k].shape != np.shape(v)]
    if missing or extra or wrong:
        lines = [f"  missing {k}" for k in missing[:5]] + [f"  extra {k}" for k in extra[:5]] + [f"  {w}" for w in wrong[:5]]
        raise AgentGraphError(
            f"Checkpoint {path!r} does not match the expected structure ({len(missing)} missing, {len(extra)} extra, "
            f"{len(wrong)} with other shapes):\n" + "\n".join(lines)
        )
    return jax.tree_util.tree_unflatten(treedef, [arrays[jax.tree_util.keystr(p)] for p, _ in leaves]), user_meta


def latest(directory: str) -> str | None:
    """The newest ``ckpt_<step>.npz`` in ``directory`` (highest step), or ``None``.

    Example:
        >>> import tempfile
        >>> latest(tempfile.mkdtemp()) is None
        True
    """
    if not os.path.isdir(directory):
        return None
    steps = sorted((int(m.group(1)), f) for f in os.listdir(directory) if (m := _NAME.match(f)))
    return os.path.join(directory, steps[-1][1]) if steps else None


def save_step(directory: str, step: int, tree: Any, metadata: dict | None = None, keep: int = 3) -> str:
    """Save ``ckpt_<step>.npz`` in ``directory``, then delete all but the newest ``keep``.

    Example:
        >>> import tempfile, numpy as np
        >>> d = tempfile.mkdtemp()
        >>> for s in range(4): _ = save_step(d, s, {"w": np.ones(1)}, keep=2)
        >>> sorted(os.listdir(d))
        ['ckpt_00000002.npz', 'ckpt_00000003.npz']
    """
    path = save(os.path.join(directory, f"ckpt_{step:08d}.npz"), tree, metadata={**(metadata or {}), "step": step})
    steps = sorted((int(m.group(1)), f) for f in os.listdir(directory) if (m := _NAME.match(f)))
    for _, f in steps[:-keep]:
        os.remove(os.path.join(directory, f))
    return path
