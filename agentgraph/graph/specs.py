"""Declarations: the pydantic specs of one agent (:class:`AgentSpec`) and one arrow
(:class:`ArrowSpec`), and how declarations are checked and recorded into an
:class:`~agentgraph.graph.AgentGraph`'s column store — one by one (validated by pydantic and
checked at once) or in blocks (checked vectorised, fully by :meth:`AgentGraph.validate`).

The ``declare_*`` functions are the bodies of :meth:`AgentGraph.add_agent`,
:meth:`AgentGraph.add_arrow`, :meth:`AgentGraph.add_agents` and :meth:`AgentGraph.add_arrows`:
the graph hands them its :class:`~agentgraph.graph.columns.Columns` to record into, and they
read the graph (kinds, schedule) only through its public methods.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic

from agentgraph.arrows.types import ArrowType
from agentgraph.errors import AgentGraphError
from agentgraph.graph.validate import check_arrow_combo, unknown_kind

if TYPE_CHECKING:
    from agentgraph.graph.agent_graph import AgentGraph
    from agentgraph.graph.columns import Columns

__all__ = [
    "AgentSpec", "ArrowSpec", "declare_agent", "declare_agents", "declare_arrow", "declare_arrows",
    "default_port", "pydantic_message",
]


class AgentSpec(pydantic.BaseModel):
    """The declaration of one agent, validated when it is added.

    Example:
        >>> AgentSpec(name="w0", kind="synapse", state={"w": 0.1}).group is None
        True
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: Any
    kind: pydantic.StrictStr
    group: pydantic.StrictStr | None = None
    state: dict[str, Any] | None = None
    slot: pydantic.StrictInt | None = pydantic.Field(default=None, ge=0)

    @pydantic.field_validator("name")
    @classmethod
    def _hashable(cls, v: Any) -> Any:
        if v is None or not isinstance(v, Hashable):
            raise ValueError("agent names must be hashable and not None")
        return v


class ArrowSpec(pydantic.BaseModel):
    """The declaration of one arrow, validated when it is added.

    Example:
        >>> ArrowSpec(src="a", dst="b", type="forward", port="x").src_port
        'out'
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    src: Any
    dst: Any
    type: pydantic.StrictStr = "forward"
    port: pydantic.StrictStr | None = None
    src_port: pydantic.StrictStr = "out"
    delay: pydantic.StrictBool = False

    @pydantic.field_validator("type")
    @classmethod
    def _type_name(cls, v: str) -> str:
        return check_type_name(v)


def check_scheduled(graph: AgentGraph, t: str, who: str) -> None:
    """``t`` is a type the graph's schedule runs (else an error naming ``who``)."""
    if t not in graph.schedule.types():
        raise AgentGraphError(
            f"{who}: unknown arrow type {t!r}; the graph's schedule runs {graph.schedule.types()}. "
            f"For a type of your own, give the graph a schedule with Phase({t!r}) "
            "(AgentGraph(schedule=...) or graph.with_schedule(...))."
        )


def check_type_name(t: Any) -> str:
    """An arrow type name: a non-empty str not starting with ``@``; returns it."""
    if not isinstance(t, str) or not t or t.startswith("@"):
        raise AgentGraphError(f"arrow type must be a non-empty str not starting with '@', got {t!r}")
    return t


def pydantic_message(e: pydantic.ValidationError) -> str:
    """A pydantic validation error as one line: ``field: message; ...``."""
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())


def default_port(graph: AgentGraph, spec: ArrowSpec) -> str | None:
    """The port ``spec`` delivers into: its own, or the destination kind's only port of its type."""
    if graph.schedule.is_self(spec.type) or spec.port is not None:
        return spec.port
    ports = graph.kind_of(spec.dst).ports(spec.type)
    if len(ports) == 1:
        return next(iter(ports))
    raise AgentGraphError(
        f"Arrow {spec.src!r} -> {spec.dst!r} ({spec.type}) needs a port: kind "
        f"{graph.kind_of(spec.dst).name!r} has {spec.type} ports {sorted(ports)}; pass port=..."
    )


def declare_agent(graph: AgentGraph, columns: Columns, name: Hashable, kind: str, group: str | None,
                  state: Mapping[str, Any] | None, slot: int | None) -> Hashable:
    """Check one agent and record it into ``columns``, the store of ``graph`` (see
    :meth:`AgentGraph.add_agent`); returns its name."""
    if state is not None and not isinstance(state, Mapping):
        raise AgentGraphError(
            f"Invalid declaration of agent {name!r}: state must be a mapping {{field: value}}, "
            f"got {type(state).__name__}."
        )
    try:
        spec = AgentSpec(name=name, kind=kind, group=group, state=None if state is None else dict(state), slot=slot)
    except pydantic.ValidationError as e:
        raise AgentGraphError(f"Invalid declaration of agent {name!r}: {pydantic_message(e)}") from None
    if spec.name in columns:
        raise AgentGraphError(f"Agent {spec.name!r} already exists; agent names must be unique.")
    if spec.kind not in graph.kinds:
        raise unknown_kind(graph, spec.name, spec.kind)
    init = graph.kinds[spec.kind].initial_state(spec.state, agent=spec.name)
    rows = columns.add_agents([spec.name], spec.kind, [spec.group], None if spec.slot is None else [spec.slot])
    for f in spec.state or {}:
        columns.add_state(rows, f, init[f][None])
    return spec.name


def declare_arrow(graph: AgentGraph, columns: Columns, src: Hashable, dst: Hashable, type: ArrowType,
                  port: str | None, src_port: str, delay: bool = False) -> int:
    """Check one arrow and record it into ``columns``, the store of ``graph`` (see
    :meth:`AgentGraph.add_arrow`); returns its networkx key."""
    try:
        spec = ArrowSpec(src=src, dst=dst, type=type, port=port, src_port=src_port, delay=delay)
    except pydantic.ValidationError as e:
        raise AgentGraphError(
            f"Invalid declaration of arrow {src!r} -> {dst!r}: {pydantic_message(e)}"
        ) from None
    for end in (spec.src, spec.dst):
        if end not in columns:
            raise AgentGraphError(
                f"Arrow {spec.src!r} -> {spec.dst!r} ({spec.type}) names agent {end!r}, which "
                "does not exist; add the agent first."
            )
    check_scheduled(graph, spec.type, f"Arrow {spec.src!r} -> {spec.dst!r}")
    s, d = columns.index(spec.src), columns.index(spec.dst)
    port_name = default_port(graph, spec)
    check_arrow_combo(graph, spec.src, spec.dst, spec.type, port_name, spec.src_port, delay=spec.delay)
    key = columns.arrows_between(s, d)
    columns.add_arrows(np.array([s]), np.array([d]), spec.type, port_name, spec.src_port, spec.delay)
    return key


def declare_agents(graph: AgentGraph, columns: Columns, names: Iterable[Hashable], kind: str,
                   groups: str | Iterable[str] | None, states: Mapping[str, Any] | None,
                   slots: Iterable[int] | None) -> np.ndarray:
    """Check a block of agents and record it into ``columns``, the store of ``graph`` (see
    :meth:`AgentGraph.add_agents`); returns ``int64 [n]``."""
    names = list(names)
    n = len(names)
    if not isinstance(kind, str) or kind not in graph.kinds:
        raise unknown_kind(graph, names[0] if names else None, kind)
    if states is not None and not isinstance(states, Mapping):
        raise AgentGraphError(
            f"add_agents: states must be a mapping {{field: [n, *shape] values}}, got "
            f"{type(states).__name__} (declaring agent {names[0] if names else None!r} ...)."
        )
    if groups is not None and not isinstance(groups, str):
        groups = list(groups)
        bad = [i for i, x in enumerate(groups) if x is not None and not isinstance(x, str)]
        if bad:
            raise AgentGraphError(
                f"add_agents: agent {names[bad[0]] if bad[0] < n else bad[0]!r} has group "
                f"{groups[bad[0]]!r}; groups must be str (or None for the kind's name)."
            )
    if slots is not None:
        slots = list(slots)
        bad = [i for i, x in enumerate(slots)
               if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0]
        if bad:
            raise AgentGraphError(
                f"add_agents: agent {names[bad[0]] if bad[0] < n else bad[0]!r} has slot "
                f"{slots[bad[0]]!r}; slots must be non-negative ints."
            )
    idx = columns.add_agents(names, kind, groups, slots)
    fields = graph.kinds[kind].fields
    for f, v in (states or {}).items():
        if f not in fields:
            raise AgentGraphError(
                f"add_agents: kind {kind!r} has no state field {f!r}; it has {sorted(fields)}."
            )
        try:
            v = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise AgentGraphError(
                f"add_agents: states[{f!r}] for kind {kind!r} is not numeric ({e})."
            ) from None
        if v.shape != (n, *fields[f].shape):
            raise AgentGraphError(
                f"add_agents: states[{f!r}] has shape {v.shape}; expected {(n, *fields[f].shape)} "
                f"(one row per agent, field shape {fields[f].shape})."
            )
        if not np.all(np.isfinite(v)):
            bad = names[int(np.argwhere(~np.isfinite(v.reshape(n, -1)))[0][0])]
            raise AgentGraphError(f"Agent {bad!r}: state field {f!r} contains NaN or inf; pass finite initial values.")
        columns.add_state(idx, f, v)
    return idx


def declare_arrows(graph: AgentGraph, columns: Columns, srcs: Iterable[Hashable] | np.ndarray,
                   dsts: Iterable[Hashable] | np.ndarray, type: ArrowType, port: str | None, src_port: str,
                   by_index: bool, delay: bool = False) -> None:
    """Check a block of arrows and record it into ``columns``, the store of ``graph`` (see
    :meth:`AgentGraph.add_arrows`)."""
    srcs = srcs if isinstance(srcs, np.ndarray) else list(srcs)
    dsts = dsts if isinstance(dsts, np.ndarray) else list(dsts)
    first = ""
    if len(srcs) and len(dsts):
        s0, d0 = srcs[0], dsts[0]
        if by_index:
            s0, d0 = (columns.names[int(x)] if 0 <= int(x) < len(columns) else x for x in (s0, d0))
        first = f" (first arrow {s0!r} -> {d0!r})"
    try:
        check_type_name(type)
    except AgentGraphError as e:
        raise AgentGraphError(f"add_arrows: {e}{first}.") from None
    check_scheduled(graph, type, f"add_arrows{first}")
    if not isinstance(delay, (bool, np.bool_)):
        raise AgentGraphError(f"add_arrows: delay must be a bool, got {delay!r}{first}.")
    for label, v in (("port", port), ("src_port", src_port)):
        if v is not None and not isinstance(v, str):
            raise AgentGraphError(f"add_arrows: {label} must be a str, got {v!r}{first}.")
    if by_index:
        s = np.asarray(srcs, np.int64)
        d = np.asarray(dsts, np.int64)
        N = len(columns)
        if len(s) and (s.min() < 0 or d.min() < 0 or s.max() >= N or d.max() >= N):
            raise AgentGraphError("add_arrows: agent index out of range.")
    else:
        s, d = (_existing(columns, ends) for ends in (srcs, dsts))
    if len(s) != len(d):
        raise AgentGraphError(f"add_arrows: {len(s)} sources but {len(d)} destinations.")
    columns.add_arrows(s, d, type, port, src_port, delay)


def _existing(columns: Columns, names: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """``int64 [n]``: the indices of ``names``, all of which must exist (else an error naming
    the first that does not)."""
    idx = columns.indices(names)
    if (idx < 0).any():
        raise AgentGraphError(f"add_arrows: agent {names[int(np.argmax(idx < 0))]!r} does not exist; add it first.")
    return idx
