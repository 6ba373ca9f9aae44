"""Declarations: the pydantic specs of one agent (:class:`AgentSpec`) and one arrow
(:class:`ArrowSpec`), and how declarations are recorded into an
:class:`~agentgraph.graph.AgentGraph`'s column chunks — one by one (validated by pydantic and
checked at once) or in blocks (checked vectorised, fully by :meth:`AgentGraph.validate`).

The ``declare_*`` functions are the bodies of :meth:`AgentGraph.add_agent`,
:meth:`AgentGraph.add_arrow`, :meth:`AgentGraph.add_agents` and :meth:`AgentGraph.add_arrows`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic

from agentgraph.arrows.types import ArrowType
from agentgraph.errors import AgentGraphError
from agentgraph.graph.validate import check_arrow_combo, unknown_kind

if TYPE_CHECKING:
    from agentgraph.graph.agent_graph import AgentGraph

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


def declare_agent(graph: AgentGraph, name: Hashable, kind: str, group: str | None,
                  state: Mapping[str, Any] | None, slot: int | None) -> Hashable:
    """Record one agent (see :meth:`AgentGraph.add_agent`); returns its name."""
    if state is not None and not isinstance(state, Mapping):
        raise AgentGraphError(
            f"Invalid declaration of agent {name!r}: state must be a mapping {{field: value}}, "
            f"got {type(state).__name__}."
        )
    try:
        spec = AgentSpec(name=name, kind=kind, group=group, state=None if state is None else dict(state), slot=slot)
    except pydantic.ValidationError as e:
        raise AgentGraphError(f"Invalid declaration of agent {name!r}: {pydantic_message(e)}") from None
    if spec.name in graph._pos:
        raise AgentGraphError(f"Agent {spec.name!r} already exists; agent names must be unique.")
    if spec.kind not in graph.kinds:
        raise unknown_kind(graph, spec.name, spec.kind)
    init = graph.kinds[spec.kind].initial_state(spec.state, agent=spec.name)
    i = len(graph._names)
    graph._names.append(spec.name)
    graph._pos[spec.name] = i
    graph._agent_chunks.append((
        np.array([graph._kinds_i(spec.kind)], np.int32),
        np.array([-1 if spec.group is None else graph._groups_i(spec.group)], np.int32),
        np.array([-1 if spec.slot is None else spec.slot], np.int64),
    ))
    for f in spec.state or {}:
        graph._state_decls.append((np.array([i]), f, init[f][None]))
    graph._touch()
    return spec.name


def declare_arrow(graph: AgentGraph, src: Hashable, dst: Hashable, type: ArrowType,
                  port: str | None, src_port: str, delay: bool = False) -> int:
    """Record one arrow (see :meth:`AgentGraph.add_arrow`); returns its networkx key."""
    try:
        spec = ArrowSpec(src=src, dst=dst, type=type, port=port, src_port=src_port, delay=delay)
    except pydantic.ValidationError as e:
        raise AgentGraphError(
            f"Invalid declaration of arrow {src!r} -> {dst!r}: {pydantic_message(e)}"
        ) from None
    for end in (spec.src, spec.dst):
        if end not in graph._pos:
            raise AgentGraphError(
                f"Arrow {spec.src!r} -> {spec.dst!r} ({spec.type}) names agent {end!r}, which "
                "does not exist; add the agent first."
            )
    check_scheduled(graph, spec.type, f"Arrow {spec.src!r} -> {spec.dst!r}")
    s, d = graph._pos[spec.src], graph._pos[spec.dst]
    port_name = default_port(graph, spec)
    check_arrow_combo(graph, spec.src, spec.dst, spec.type, port_name, spec.src_port, delay=spec.delay)
    a = graph.arrays()
    key = int(np.count_nonzero((a.src == s) & (a.dst == d)))
    graph._edge_chunks.append((
        np.array([s]), np.array([d]), np.array([graph._types(spec.type)], np.int16),
        np.array([-1 if port_name is None else graph._strings(port_name)], np.int32),
        np.array([graph._strings(spec.src_port)], np.int32), np.array([spec.delay]),
    ))
    graph._touch()
    return key


def declare_agents(graph: AgentGraph, names: Iterable[Hashable], kind: str,
                   groups: str | Iterable[str] | None, states: Mapping[str, Any] | None,
                   slots: Iterable[int] | None) -> np.ndarray:
    """Record a block of agents (see :meth:`AgentGraph.add_agents`); returns ``int64 [n]``."""
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
    start = len(graph._names)
    idx = np.arange(start, start + n)
    pos = graph._pos
    for i, nm in enumerate(names):
        if nm is None or nm in pos:
            for nm2 in names[:i]:
                pos.pop(nm2, None)
            raise AgentGraphError(
                f"add_agents: agent name {nm!r} is None, repeated or already exists; names must be unique."
            )
        pos[nm] = start + i
    graph._names.extend(names)
    if groups is None:
        g = np.full(n, -1, np.int32)
    elif isinstance(groups, str):
        g = np.full(n, graph._groups_i(groups), np.int32)
    else:
        g = np.array([-1 if x is None else graph._groups_i(x) for x in groups], np.int32)
    sl = np.full(n, -1, np.int64) if slots is None else np.asarray(list(slots), np.int64)
    if len(g) != n or len(sl) != n:
        raise AgentGraphError("add_agents: groups and slots need one entry per agent.")
    graph._agent_chunks.append((np.full(n, graph._kinds_i(kind), np.int32), g, sl))
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
        graph._state_decls.append((idx, f, v))
    graph._touch()
    return idx


def declare_arrows(graph: AgentGraph, srcs: Iterable[Hashable] | np.ndarray, dsts: Iterable[Hashable] | np.ndarray,
                   type: ArrowType, port: str | None, src_port: str, by_index: bool, delay: bool = False) -> None:
    """Record a block of arrows (see :meth:`AgentGraph.add_arrows`)."""
    srcs = srcs if isinstance(srcs, np.ndarray) else list(srcs)
    dsts = dsts if isinstance(dsts, np.ndarray) else list(dsts)
    first = ""
    if len(srcs) and len(dsts):
        s0, d0 = srcs[0], dsts[0]
        if by_index:
            s0, d0 = (graph._names[int(x)] if 0 <= int(x) < len(graph._names) else x for x in (s0, d0))
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
        N = len(graph._names)
        if len(s) and (s.min() < 0 or d.min() < 0 or s.max() >= N or d.max() >= N):
            raise AgentGraphError("add_arrows: agent index out of range.")
    else:
        try:
            s = np.array([graph._pos[x] for x in srcs], np.int64)
            d = np.array([graph._pos[x] for x in dsts], np.int64)
        except KeyError as e:
            raise AgentGraphError(f"add_arrows: agent {e.args[0]!r} does not exist; add it first.") from None
    if len(s) != len(d):
        raise AgentGraphError(f"add_arrows: {len(s)} sources but {len(d)} destinations.")
    E = len(s)
    graph._edge_chunks.append((
        s, d, np.full(E, graph._types(type), np.int16),
        np.full(E, -1 if port is None else graph._strings(port), np.int32),
        np.full(E, graph._strings(src_port), np.int32), np.full(E, bool(delay)),
    ))
    graph._touch()
