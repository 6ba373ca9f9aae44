"""Where fetched datasets live: one directory, chosen once.

Resolution order: an explicit argument, else the environment variable ``AGENTGRAPH_DATA``, else
``~/.cache/agentgraph``. Nothing in agentgraph reads the network at run time; the cache is filled
only by the explicit ``python -m agentgraph.data fetch NAME``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

__all__ = ["ENV_VAR", "cache_dir", "fetch_command"]

ENV_VAR = "AGENTGRAPH_DATA"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The dataset cache directory: ``override``, else ``$AGENTGRAPH_DATA``, else
    ``~/.cache/agentgraph`` (not created here).

    Example:
        >>> str(cache_dir("/tmp/my-cache"))
        '/tmp/my-cache'
    """
    if override is not None and os.fspath(override):
        return Path(os.fspath(override)).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "agentgraph"


def fetch_command(name: str, override: str | os.PathLike | None = None) -> str:
    """The one shell command that fills the cache with dataset ``name``; names the directory
    only when it was given explicitly (the environment variable is seen by the command too).

    Example:
        >>> fetch_command("mnist")
        'python -m agentgraph.data fetch mnist'
        >>> fetch_command("mnist", "/data")
        'python -m agentgraph.data fetch mnist --cache-dir /data'
    """
    cmd = f"python -m agentgraph.data fetch {name}"
    if override is not None and os.fspath(override):
        cmd += f" --cache-dir {shlex.quote(os.fspath(override))}"
    return cmd
