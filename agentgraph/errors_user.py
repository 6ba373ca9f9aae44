"""Errors in a user's own code: a protocol factory (``protocol.rule: "pkg.mod:factory"``), a
network builder (``net.kind: "pkg.mod:function"``), a task factory (``data.task:
"pkg.mod:function"``) or anything they return (hooks, samplers) that raises, or that JAX cannot
trace, becomes one :class:`~agentgraph.errors.AgentGraphError` naming the config field, the
user's function, the file and line where it failed, what it raised and the fix — not a traceback
from deep inside agentgraph or JAX.

Only exceptions raised *in the user's code* are translated (a frame of the traceback lies in a
file outside agentgraph, JAX, the installed packages and the standard library); a bug in the
library itself still surfaces as the traceback it is.

Example:
    >>> from agentgraph.meta.config import parse_config
    >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
    >>> with blame_user_code(cfg, "building the network"):
    ...     1 + 1
    2
"""

from __future__ import annotations

import contextlib
import os
import sysconfig
import types
from collections.abc import Iterator
from typing import Any

from agentgraph.errors import AgentGraphError

__all__ = ["blame_user_code", "user_code_error", "user_targets"]

_LIB_DIRS = tuple(os.path.realpath(p) + os.sep for p in {
    os.path.dirname(os.path.abspath(__file__)),  # agentgraph/
    *(sysconfig.get_paths().get(k) or "/nonexistent" for k in ("stdlib", "platstdlib", "purelib", "platlib")),
})

#: What each field names, in the message.
_WHAT = {"protocol.rule": "protocol factory", "net.kind": "network builder", "data.task": "task factory"}

#: JAX's errors for code that reads a traced value as a concrete one.
_TRACER_ERRORS = ("ConcretizationTypeError", "TracerArrayConversionError", "TracerBoolConversionError",
                  "TracerIntegerConversionError", "UnexpectedTracerError", "NonConcreteBooleanIndexError")


def user_targets(cfg: Any) -> dict[str, str]:
    """``{field: "package.module:function"}`` of the user's own code a config names.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> user_targets(parse_config({"data": {"task": "mypkg.tasks:sine"}, "net": {"kind": "mypkg.nets:tiny"}}))
        {'net.kind': 'mypkg.nets:tiny', 'data.task': 'mypkg.tasks:sine'}
    """
    from agentgraph.protocols.base import PROTOCOLS

    out = {}
    rule = cfg.protocol.get("rule", "mplp") if isinstance(cfg.protocol, dict) else None
    if isinstance(rule, str) and rule not in PROTOCOLS and ":" in rule:
        out["protocol.rule"] = rule
    if ":" in cfg.net.kind:
        out["net.kind"] = cfg.net.kind
    if ":" in cfg.data.task:
        out["data.task"] = cfg.data.task
    return out


def _is_user_file(path: str) -> bool:
    if not path or path.startswith("<"):
        return False
    return not os.path.realpath(path).startswith(_LIB_DIRS)


def _user_frames(tb: types.TracebackType | None, modules: frozenset[str] = frozenset()) -> list[tuple[str, str, str, int]]:
    """``(module, qualified name, file, line)`` of the traceback's frames in user files (or in
    ``modules``, the user's named modules wherever installed), outermost first."""
    out = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if _is_user_file(code.co_filename) or tb.tb_frame.f_globals.get("__name__") in modules:
            qual = getattr(code, "co_qualname", code.co_name)
            out.append((tb.tb_frame.f_globals.get("__name__", "?"), qual, code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return out


def user_code_error(err: BaseException, targets: dict[str, str] | None = None, doing: str = "") -> AgentGraphError | None:
    """The :class:`AgentGraphError` for ``err`` when it was raised in the user's code (module
    docstring) — in a frame below the one that caught it — else ``None``. ``targets`` (:func:`user_targets`) map the failing function to the
    config field that named it; ``doing`` says what agentgraph was doing.

    Example:
        >>> def my_builder():
        ...     raise ValueError("no such layer")
        >>> try:
        ...     my_builder()
        ... except ValueError as e:
        ...     err = user_code_error(e, {"net.kind": "__main__:my_builder"})
        >>> err is None or "ValueError: no such layer" in str(err)
        True
    """
    tb = err.__traceback__
    modules = frozenset(t.partition(":")[0] for t in (targets or {}).values())
    frames = _user_frames(tb.tb_next if tb is not None else None, modules)  # below the frame that caught it
    if not frames:
        return None
    _, qual, path, line = frames[-1]  # where it failed
    field = target = None
    for f, t in (targets or {}).items():
        t_mod, _, t_fn = t.partition(":")
        if any(m == t_mod and (q == t_fn or q.startswith(t_fn + ".")) for m, q, _, _ in frames):
            field, target = f, t
            break
    if field is None:  # a hook in the target's module (a Protocol's functions are often module-level)
        for f, t in (targets or {}).items():
            if any(m == t.partition(":")[0] for m, _, _, _ in frames):
                field, target = f, t
                break
    who = (f"{field} {target!r} (your {_WHAT[field]})" if field else "your code")
    where = f"{qual} at {os.path.basename(path)}:{line}"
    first = (str(err).strip().splitlines() or [""])[0][:300]
    doing = f" while {doing}" if doing else ""
    if type(err).__name__ in _TRACER_ERRORS:
        fix = ("it must be traceable by JAX (agentgraph jits and vmaps it): compute with jax.numpy on its "
               "arguments, with no np.asarray/int()/float() of them and no Python if/for on their values "
               "(use jnp.where, lax.cond, lax.fori_loop)")
    else:
        fix = (f"fix it there, or check what it receives (its arguments come from {field} and the config)" if field
               else "fix it there")
    return AgentGraphError(f"{who} failed{doing}: {where} raised {type(err).__name__}: {first}. The function "
                           f"{where.split(' at ')[0]!r} is yours: {fix}.")


@contextlib.contextmanager
def blame_user_code(cfg: Any = None, doing: str = "") -> Iterator[None]:
    """Translate an exception raised in the user's code inside the block into an
    :class:`AgentGraphError` (:func:`user_code_error`); any other exception passes unchanged.

    Example:
        >>> try:
        ...     with blame_user_code(None, "testing"):
        ...         {}["missing"]
        ... except KeyError:
        ...     print("library errors pass through")
        library errors pass through
    """
    try:
        yield
    except AgentGraphError as e:
        targets = user_targets(cfg) if cfg is not None else {}
        rule = targets.get("protocol.rule")
        if rule and rule not in str(e) and "kind" in str(e):  # a library kind's error, caused by the user's protocol
            raise AgentGraphError(f"{e} (The network's agents and their parameters come from your protocol factory "
                                  f"protocol.rule {rule!r}: check what its network and params hooks return for "
                                  "that group.)") from None
        raise
    except Exception as e:
        mapped = user_code_error(e, user_targets(cfg) if cfg is not None else None, doing)
        if mapped is None:
            raise
        raise mapped from None

