"""The project's one exception type.

Every problem agentgraph detects in what a user declared or passed in — a graph, a kind, a
batch, a config — raises :class:`AgentGraphError`. Its message names the culprit (the agent,
the arrow, the field) and says how to fix it.
"""

from __future__ import annotations

__all__ = ["AgentGraphError", "io_error"]


class AgentGraphError(ValueError):
    """A declared graph, kind or input is invalid; the message names the culprit and the fix.

    Subclasses ``ValueError`` so generic callers that catch ``ValueError`` keep working.

    Example:
        >>> from agentgraph import AgentGraph, AgentGraphError
        >>> g = AgentGraph()
        >>> try:
        ...     g.add_agent("a", kind="no-such-kind")
        ... except AgentGraphError as e:
        ...     print("unknown kind" in str(e))
        True
    """


_IO_FIXES = {
    "ENOSPC": "the disk is full: free space there, or choose a directory on another disk",
    "EDQUOT": "the disk quota is exhausted: free space there, or choose a directory on another disk",
    "EROFS": "the file system is read-only: choose a writable directory",
    "EACCES": "permission denied: make it writable for this user, or choose another directory",
    "EPERM": "permission denied: make it writable for this user, or choose another directory",
    "ENOTDIR": "a part of the path is a file, not a directory: remove that file or choose another path",
    "EEXIST": "a file is in the way where a directory is needed: remove it or choose another path",
    "EISDIR": "it is a directory, not a file: name a file",
    "ENOENT": "a directory on the way does not exist: create it or fix the path",
    "ENAMETOOLONG": "the path is too long: choose a shorter one",
}


def io_error(path: str, err: OSError, doing: str, field: str | None = None, note: str = "") -> AgentGraphError:
    """The :class:`AgentGraphError` for an operating-system failure while ``doing`` something with
    ``path``: it names the path, the cause (disk full, read-only, permissions, a file in the way)
    and the fix; ``field`` is the config field or option that chose the path, if any; ``note``
    is appended (what was kept, what to do next).

    Example:
        >>> import errno
        >>> e = io_error("runs/a", OSError(errno.ENOSPC, "No space left on device"), "write a checkpoint into",
        ...              "run.out_dir")
        >>> print(e)
        Cannot write a checkpoint into 'runs/a': the disk is full: free space there, or choose a directory on another disk (run.out_dir). [ENOSPC: No space left on device]
    """
    import errno as _errno

    name = _errno.errorcode.get(err.errno or 0, "")
    fix = _IO_FIXES.get(name, "check the path and its permissions")
    where = f" ({field})" if field else ""
    detail = f"{name}: {err.strerror}" if name else f"{type(err).__name__}: {err}"
    note = f" {note}" if note else ""
    return AgentGraphError(f"Cannot {doing} {path!r}: {fix}{where}.{note} [{detail}]")
