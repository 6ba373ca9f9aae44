"""Loading a user's function by name: ``"package.module:function"`` (protocol factories, network
builders, task families named in a config).

Example:
    >>> load_callable("agentgraph.builders:mlp", "net.kind").__name__
    'mlp'
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from agentgraph.errors import AgentGraphError

__all__ = ["load_callable"]


def load_callable(target: str, what: str) -> Callable:
    """The function ``"package.module:function"`` names; errors name ``what`` (the config field
    or flag that named it) and the target. A module not found on ``sys.path`` is also looked for
    in the current directory, as ``python -m`` does.

    Raises:
        AgentGraphError: ``target`` has no ``:``, its module cannot be imported (the import's
            own error is quoted), or it has no callable of that name.

    Example:
        >>> load_callable("agentgraph.builders:mlp", "net.builder").__name__
        'mlp'
    """
    if ":" not in target:
        raise AgentGraphError(f"{what} {target!r} is neither a library name nor 'package.module:function'.")
    mod_name, _, attr = target.partition(":")
    try:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name != mod_name.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.append(os.getcwd())  # like `python -m`, the current directory is searched
            mod = importlib.import_module(mod_name)
    except Exception as e:  # a missing module or an error while importing it
        raise AgentGraphError(f"{what} {target!r}: cannot import module {mod_name!r} ({type(e).__name__}: {e}); "
                              "is it installed, on PYTHONPATH or in the current directory?") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise AgentGraphError(f"{what} {target!r}: module {mod_name!r} has no function {attr!r}.")
    return fn
