"""A run directory: one writer at a time, checked before compute, its metrics and its config.

``agentgraph train`` writes a run into one directory (``run.out_dir``): checkpoints
(:mod:`agentgraph.checkpoint`), ``metrics.jsonl`` and a lock file. This module holds what
makes that directory safe:

* :func:`locked` — an exclusive OS file lock (``flock``) on ``<dir>/.agentgraph.lock`` for the
  whole run. The kernel drops it when its process ends however it ends (``kill -9`` included),
  so a stale lock never blocks a later run; a second writer is refused with the first one's
  process id, host, start time and command.
* :func:`prepare_dir` — the directory is created, written to and measured *before* any compute:
  a path that is a file, a read-only or full disk, missing permissions are reported up front
  as :class:`~agentgraph.errors.AgentGraphError` naming the path and the fix.
* :func:`read_metrics` / :func:`rewrite_metrics` — ``metrics.jsonl`` is appended one line per
  meta-step; a torn last line (the process was killed while writing it) is dropped on reading,
  and rewriting (resume trims the steps it will redo) is atomic.
* :func:`config_changes` — the dotted config fields that differ between a checkpoint's config and
  the current one; :data:`RESUMABLE` are those a resumed run may change.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from agentgraph.errors import AgentGraphError, io_error

try:
    import fcntl
except ImportError:  # not POSIX: no OS lock (documented in docs/reliability.md)
    fcntl = None

__all__ = ["LOCK_NAME", "METRICS", "RESUMABLE", "config_changes", "locked", "prepare_dir", "read_metrics",
           "rewrite_metrics"]

LOCK_NAME = ".agentgraph.lock"
METRICS = "metrics.jsonl"

#: Config fields a resumed run may change: where the run lives, how long it runs, how often it
#: saves and scores itself. None of them changes the numbers of the meta-steps it has taken.
RESUMABLE = ("run.out_dir", "meta.meta_steps", "run.checkpoint_every", "run.keep", "run.eval_every",
             "run.eval_runs", "meta.optimizer.chunk",  # chunk: how candidates are batched, not what they score
             "run.max_phase_runs")  # a compile-size guard, not a number of the run


def prepare_dir(path: str, field: str = "run.out_dir", need_bytes: int = 0) -> None:
    """Create the directory ``path`` if missing and check, before any compute, that files can be
    written there and that about ``need_bytes`` are free.

    Raises:
        AgentGraphError: ``path`` is a file, cannot be created or written (read-only file
            system, permissions), or its disk has less than ``need_bytes`` free; the message
            names the path, the cause, the fix and ``field``.

    Example:
        >>> import os, tempfile
        >>> d = os.path.join(tempfile.mkdtemp(), "run")
        >>> prepare_dir(d); os.path.isdir(d)
        True
        >>> open(os.path.join(d, "f"), "w").close()
        >>> try:
        ...     prepare_dir(os.path.join(d, "f"))
        ... except AgentGraphError as e:
        ...     print("is a file" in str(e))
        True
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise AgentGraphError(f"{field} {path!r} is a file, not a directory: remove it or choose another {field}.")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise io_error(path, e, "create the run directory", field) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        try:
            os.write(fd, b"agentgraph")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as e:
        raise io_error(path, e, "write into the run directory", field) from None
    if need_bytes:
        free = shutil.disk_usage(path).free
        if free < need_bytes:
            raise AgentGraphError(
                f"{field} {path!r}: its disk has {free / 2**20:.1f} MiB free but this run's checkpoints need about "
                f"{need_bytes / 2**20:.1f} MiB: free space there, lower run.keep, or choose another {field}.")


def _holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8"))
        return (f"process {info['pid']} on {info['host']}, started {info['started']}: "
                f"{info.get('command', '?')}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its details"


@contextlib.contextmanager
def locked(path: str, field: str = "run.out_dir", need_bytes: int = 0) -> Iterator[str]:
    """Hold the run directory ``path`` exclusively while the ``with`` block runs (after
    :func:`prepare_dir`); yields the lock file's path.

    The lock is ``flock`` on ``<path>/.agentgraph.lock``: the operating system releases it when
    the process ends in any way, so a killed run never leaves a stale lock. The file records the
    holder (pid, host, start time, command) for the message a second writer gets.

    Raises:
        AgentGraphError: another process holds the directory (named in the message), or
            :func:`prepare_dir` fails.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with locked(d):
        ...     try:
        ...         with locked(d):
        ...             pass
        ...     except AgentGraphError as e:
        ...         print("in use by" in str(e))
        True
    """
    prepare_dir(path, field, need_bytes)
    lock = os.path.join(path, LOCK_NAME)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise io_error(lock, e, "open the lock file", field) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise AgentGraphError(
                    f"Run directory {path!r} is in use by {_holder(fd)}. One run writes a directory at a time: "
                    f"wait for that run to end (or stop it), or choose another {field}.") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError as e:
            raise io_error(lock, e, "write the lock file", field) from None
        yield lock
    finally:
        os.close(fd)  # releases the lock


#: The fields of a ``metrics.jsonl`` row that measure time (wall clock and process CPU): they differ
#: between two runs that compute the same numbers, so comparisons of runs leave them out.
TIMING_FIELDS: tuple[str, ...] = ("seconds", "setup_seconds", "cpu_seconds", "setup_cpu_seconds")


def read_metrics(path: str) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (``[]`` if there is none). A last line cut short by a kill
    is dropped; any other unreadable line is an error.

    Raises:
        AgentGraphError: a line before the last is not a JSON object with a ``step`` (the message
            names the file and line).

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
        >>> _ = open(p, "w").write('{"step": 0, "meta_loss": 2.3}\\n{"step": 1, "meta_l')
        >>> read_metrics(p)
        [{'step': 0, 'meta_loss': 2.3}]
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise io_error(path, e, "read the metrics file") from None
    rows = []
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            row = json.loads(ln)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not an object with an integer 'step'")
        except ValueError as e:
            if i == last:  # torn by a kill mid-write: that step is redone on resume
                break
            raise AgentGraphError(
                f"Metrics file {path!r}, line {i + 1}, is unreadable ({e}); it was not written by agentgraph "
                "or was edited. Move it away to resume (the checkpoints do not depend on it).") from None
        rows.append(row)
    return rows


def rewrite_metrics(path: str, rows: list[dict]) -> None:
    """Replace ``metrics.jsonl`` by ``rows``, atomically (a kill leaves the old file or the new).

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
        >>> rewrite_metrics(p, [{"step": 0}]); read_metrics(p)
        [{'step': 0}]
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".metrics-", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise io_error(path, e, "write the metrics file", "run.out_dir") from None


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def config_changes(saved: dict, now: dict) -> list[tuple[str, Any, Any]]:
    """``[(dotted field, saved value, current value), ...]`` for every field that differs
    between two config mappings (``"<absent>"`` where one lacks the field), sorted.

    Example:
        >>> config_changes({"meta": {"meta_steps": 10, "meta_lr": 1e-3}}, {"meta": {"meta_steps": 20, "meta_lr": 1e-3}})
        [('meta.meta_steps', 10, 20)]
    """
    a, b = _flat(saved), _flat(now)
    return [(k, a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
            or (k in a) != (k in b)]
