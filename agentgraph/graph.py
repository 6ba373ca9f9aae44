"""`AgentGraph`: a directed multigraph of stateful agents joined by typed arrows.

The graph *is* a networkx multidigraph — :meth:`AgentGraph.to_networkx` and
:meth:`AgentGraph.from_networkx` convert both ways, and :attr:`AgentGraph.nx` is a (cached)
networkx view — but it is stored column-wise (one NumPy array per attribute, agents in
declaration order), so graphs of millions of per-scalar agents build, validate and compile in
seconds. Agents can be declared one by one (:meth:`add_agent`, :meth:`add_arrow`, validated by
pydantic) or in blocks (:meth:`add_agents`, :meth:`add_arrows`, validated vectorised).

networkx attributes
-------------------
Node attributes
    ``kind`` (str, required) — the name of the agent's :class:`~agentgraph.nodes.Kind`.
    ``group`` (str, default: the kind's name) — the parameter-sharing key: every agent of a group
    receives the same protocol parameters.
    ``state`` (dict field → array-like, optional) — initial values of some state fields; the rest
    take the field's default.
    ``slot`` (int) — for kinds that read external data (inputs, targets): the batch column.

Edge attributes (one edge = one arrow; parallel edges are parallel arrows)
    ``type`` — ``"forward"``, ``"backward"`` or ``"reflexive"`` (a self-loop).
    ``port`` — the destination's input port (may be omitted when the destination kind has a
    single port of that type; ``None`` for reflexive arrows).
    ``src_port`` (default ``"out"``) — which of the source's outputs of that type the arrow carries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
import pydantic

from agentgraph.arrows.types import ARROW_TYPES, ArrowType
from agentgraph.errors import AgentGraphError
from agentgraph.nodes.base import Kind
from agentgraph.nodes.registry import default_kinds

__all__ = ["AgentGraph", "AgentSpec", "ArrowSpec", "GraphArrays"]

_TYPE_ID = {t: i for i, t in enumerate(ARROW_TYPES)}


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
    type: ArrowType = "forward"
    port: pydantic.StrictStr | None = None
    src_port: pydantic.StrictStr = "out"


@dataclasses.dataclass(frozen=True)
class GraphArrays:
    """The graph as plain arrays (jraph style). ``N`` agents, ``E`` arrows.

    Attributes:
        names: ``[N]`` agent names, in declaration order (agent ``i`` is ``names[i]``).
        kind: ``int32 [N]`` index into ``kind_names``.
        kind_names: the kind names used.
        group: ``int32 [N]`` index into ``group_names`` (undeclared groups are the kind's name).
        group_names: the group names used.
        slot: ``int64 [N]`` batch column of external kinds, ``-1`` for none.
        src, dst: ``int64 [E]`` agent indices of each arrow.
        type: ``int8 [E]``: 0 forward, 1 backward, 2 reflexive (``ARROW_TYPES`` order).
        port, src_port: ``int32 [E]`` indices into ``strings`` (``port`` is -1 for reflexive).
        strings: interned port names.
    """

    names: Sequence[Hashable]
    kind: np.ndarray
    kind_names: tuple[str, ...]
    group: np.ndarray
    group_names: tuple[str, ...]
    slot: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    type: np.ndarray
    port: np.ndarray
    src_port: np.ndarray
    strings: tuple[str, ...]


def _pydantic_message(e: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())


class _Interner:
    def __init__(self) -> None:
        self.items: list = []
        self.index: dict = {}

    def __call__(self, s) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.items)
            self.items.append(s)
        return i


class AgentGraph:
    """A directed multigraph of stateful agents joined by typed arrows.

    Args:
        kinds: extra kinds (instances of :class:`~agentgraph.nodes.Kind`) besides the library's;
            a kind with a library name replaces the library kind.

    Example:
        >>> g = AgentGraph()
        >>> g.add_agent("x", kind="input", slot=0)
        'x'
        >>> g.add_agent("w", kind="synapse", state={"w": 0.5})
        'w'
        >>> g.add_arrow("x", "w", "forward", port="x")
        0
        >>> g.number_of_agents(), g.number_of_arrows()
        (2, 1)
    """

    def __init__(self, kinds: Iterable[Kind] | Mapping[str, Kind] | None = None) -> None:
        self._version = 0
        self._validated_at: int | None = None
        self._cache: dict[str, tuple[int, Any]] = {}
        self._names: list[Hashable] = []
        self._pos: dict[Hashable, int] = {}
        self._kinds_i = _Interner()  # kind names
        self._groups_i = _Interner()  # declared group names
        self._strings = _Interner()  # port names
        self._agent_chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # kind, group(-1), slot(-1)
        self._state_decls: list[tuple[np.ndarray, str, np.ndarray]] = []  # rows, field, values [n,*shape]
        self._edge_chunks: list[tuple[np.ndarray, ...]] = []  # src, dst, type, port(-1), src_port
        self.kinds: dict[str, Kind] = default_kinds()
        if kinds is not None:
            for k in kinds.values() if isinstance(kinds, Mapping) else kinds:
                self.add_kind(k)

    # -- kinds ---------------------------------------------------------------------------------
    def add_kind(self, kind: Kind) -> None:
        """Register ``kind`` under ``kind.name`` (replacing a kind of the same name)."""
        if not isinstance(kind, Kind):
            raise AgentGraphError(
                f"{kind!r} is not a Kind instance; subclass agentgraph.Kind and pass an instance."
            )
        kind.check()
        self.kinds[kind.name] = kind
        self._touch()

    def with_kinds(self, kinds: Mapping[str, Kind]) -> AgentGraph:
        """A copy whose kind table is updated by ``kinds`` (same agents and arrows) — how a
        protocol such as MPLP is put on a graph.

        Example:
            >>> from agentgraph import mlp
            >>> from agentgraph.protocols import mplp
            >>> g = mlp([2, 1], loss="l2").with_kinds(mplp.kinds())
            >>> type(g.kind_of(("w", 0, 0, 0))).__name__
            'MPLPKind'
        """
        out = self.copy()
        for k in kinds.values():
            out.add_kind(k)
        return out.validate()

    def kind_of(self, agent: Hashable) -> Kind:
        """The :class:`Kind` of ``agent``."""
        a = self.arrays()
        name = a.kind_names[a.kind[self._index(agent)]]
        try:
            return self.kinds[name]
        except KeyError:
            raise self._unknown_kind(agent, name) from None

    def group_of(self, agent: Hashable) -> str:
        """The parameter-sharing group of ``agent`` (its kind's name unless declared)."""
        a = self.arrays()
        return a.group_names[a.group[self._index(agent)]]

    # -- declaring -----------------------------------------------------------------------------
    def add_agent(
        self,
        name: Hashable,
        kind: str,
        *,
        group: str | None = None,
        state: Mapping[str, Any] | None = None,
        slot: int | None = None,
    ) -> Hashable:
        """Add one agent; returns its name.

        Raises:
            AgentGraphError: duplicate name, unknown kind, bad state (wrong field, shape, NaN).
        """
        if state is not None and not isinstance(state, Mapping):
            raise AgentGraphError(
                f"Invalid declaration of agent {name!r}: state must be a mapping {{field: value}}, "
                f"got {type(state).__name__}."
            )
        try:
            spec = AgentSpec(name=name, kind=kind, group=group, state=None if state is None else dict(state), slot=slot)
        except pydantic.ValidationError as e:
            raise AgentGraphError(f"Invalid declaration of agent {name!r}: {_pydantic_message(e)}") from None
        if spec.name in self._pos:
            raise AgentGraphError(f"Agent {spec.name!r} already exists; agent names must be unique.")
        if spec.kind not in self.kinds:
            raise self._unknown_kind(spec.name, spec.kind)
        init = self.kinds[spec.kind].initial_state(spec.state, agent=spec.name)
        i = len(self._names)
        self._names.append(spec.name)
        self._pos[spec.name] = i
        self._agent_chunks.append((
            np.array([self._kinds_i(spec.kind)], np.int32),
            np.array([-1 if spec.group is None else self._groups_i(spec.group)], np.int32),
            np.array([-1 if spec.slot is None else spec.slot], np.int64),
        ))
        for f in spec.state or {}:
            self._state_decls.append((np.array([i]), f, init[f][None]))
        self._touch()
        return spec.name

    def add_arrow(
        self,
        src: Hashable,
        dst: Hashable,
        type: ArrowType = "forward",
        *,
        port: str | None = None,
        src_port: str = "out",
    ) -> int:
        """Add one arrow ``src -> dst``; parallel arrows are allowed. Returns its networkx key
        (the number of earlier arrows between the same two agents).

        ``port`` may be omitted when the destination kind has exactly one port of this type.

        Raises:
            AgentGraphError: unknown agent, bad type, unknown port, size mismatch.
        """
        try:
            spec = ArrowSpec(src=src, dst=dst, type=type, port=port, src_port=src_port)
        except pydantic.ValidationError as e:
            raise AgentGraphError(
                f"Invalid declaration of arrow {src!r} -> {dst!r}: {_pydantic_message(e)}"
            ) from None
        for end in (spec.src, spec.dst):
            if end not in self._pos:
                raise AgentGraphError(
                    f"Arrow {spec.src!r} -> {spec.dst!r} ({spec.type}) names agent {end!r}, which "
                    "does not exist; add the agent first."
                )
        s, d = self._pos[spec.src], self._pos[spec.dst]
        port_name = self._default_port(spec)
        self._check_arrow_combo(spec.src, spec.dst, spec.type, port_name, spec.src_port)
        a = self.arrays()
        key = int(np.count_nonzero((a.src == s) & (a.dst == d)))
        self._edge_chunks.append((
            np.array([s]), np.array([d]), np.array([_TYPE_ID[spec.type]], np.int8),
            np.array([-1 if port_name is None else self._strings(port_name)], np.int32),
            np.array([self._strings(spec.src_port)], np.int32),
        ))
        self._touch()
        return key

    def add_agents(
        self,
        names: Iterable[Hashable],
        kind: str,
        *,
        groups: str | Iterable[str] | None = None,
        states: Mapping[str, Any] | None = None,
        slots: Iterable[int] | None = None,
    ) -> np.ndarray:
        """Declare a block of agents of one kind (fast, vectorised; fully checked by
        :meth:`validate`). Returns their indices ``int64 [n]``.

        Args:
            names: ``n`` new agent names.
            kind: their kind.
            groups: one group for all, or one per agent.
            states: ``{field: array [n, *shape]}`` initial values, one row per agent.
            slots: one slot per agent (external kinds only).

        Example:
            >>> g = AgentGraph()
            >>> g.add_agents([("w", i) for i in range(3)], "synapse", states={"w": [0.1, 0.2, 0.3]})
            array([0, 1, 2])
        """
        names = list(names)
        n = len(names)
        if not isinstance(kind, str) or kind not in self.kinds:
            raise self._unknown_kind(names[0] if names else None, kind)
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
        start = len(self._names)
        idx = np.arange(start, start + n)
        pos = self._pos
        for i, nm in enumerate(names):
            if nm is None or nm in pos:
                for nm2 in names[:i]:
                    pos.pop(nm2, None)
                raise AgentGraphError(
                    f"add_agents: agent name {nm!r} is None, repeated or already exists; names must be unique."
                )
            pos[nm] = start + i
        self._names.extend(names)
        if groups is None:
            g = np.full(n, -1, np.int32)
        elif isinstance(groups, str):
            g = np.full(n, self._groups_i(groups), np.int32)
        else:
            g = np.array([-1 if x is None else self._groups_i(x) for x in groups], np.int32)
        sl = np.full(n, -1, np.int64) if slots is None else np.asarray(list(slots), np.int64)
        if len(g) != n or len(sl) != n:
            raise AgentGraphError("add_agents: groups and slots need one entry per agent.")
        self._agent_chunks.append((np.full(n, self._kinds_i(kind), np.int32), g, sl))
        fields = self.kinds[kind].fields
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
            self._state_decls.append((idx, f, v))
        self._touch()
        return idx

    def add_arrows(
        self,
        srcs: Iterable[Hashable] | np.ndarray,
        dsts: Iterable[Hashable] | np.ndarray,
        type: ArrowType = "forward",
        *,
        port: str | None = None,
        src_port: str = "out",
        by_index: bool = False,
    ) -> None:
        """Declare a block of arrows of one type and port (fast; checked by :meth:`validate`).

        Args:
            srcs, dsts: agent names, or agent indices (``int [E]``) with ``by_index=True``.
            type, port, src_port: as in :meth:`add_arrow`; ``port=None`` picks the destination
                kind's only port of that type.

        Example:
            >>> g = AgentGraph()
            >>> i = g.add_agents(["a", "b"], "relu")
            >>> g.add_arrows(i[:1], i[1:], "forward", by_index=True); g.number_of_arrows()
            1
        """
        srcs = srcs if isinstance(srcs, np.ndarray) else list(srcs)
        dsts = dsts if isinstance(dsts, np.ndarray) else list(dsts)
        first = ""
        if len(srcs) and len(dsts):
            s0, d0 = srcs[0], dsts[0]
            if by_index:
                s0, d0 = (self._names[int(x)] if 0 <= int(x) < len(self._names) else x for x in (s0, d0))
            first = f" (first arrow {s0!r} -> {d0!r})"
        if not isinstance(type, str) or type not in ARROW_TYPES:
            raise AgentGraphError(f"add_arrows: unknown arrow type {type!r}{first}; choose one of {ARROW_TYPES}.")
        for label, v in (("port", port), ("src_port", src_port)):
            if v is not None and not isinstance(v, str):
                raise AgentGraphError(f"add_arrows: {label} must be a str, got {v!r}{first}.")
        if by_index:
            s = np.asarray(srcs, np.int64)
            d = np.asarray(dsts, np.int64)
            N = len(self._names)
            if len(s) and (s.min() < 0 or d.min() < 0 or s.max() >= N or d.max() >= N):
                raise AgentGraphError("add_arrows: agent index out of range.")
        else:
            try:
                s = np.array([self._pos[x] for x in srcs], np.int64)
                d = np.array([self._pos[x] for x in dsts], np.int64)
            except KeyError as e:
                raise AgentGraphError(f"add_arrows: agent {e.args[0]!r} does not exist; add it first.") from None
        if len(s) != len(d):
            raise AgentGraphError(f"add_arrows: {len(s)} sources but {len(d)} destinations.")
        E = len(s)
        self._edge_chunks.append((
            s, d, np.full(E, _TYPE_ID[type], np.int8),
            np.full(E, -1 if port is None else self._strings(port), np.int32),
            np.full(E, self._strings(src_port), np.int32),
        ))
        self._touch()

    # -- reading -------------------------------------------------------------------------------
    def arrays(self) -> GraphArrays:
        """The graph as plain arrays (:class:`GraphArrays`); cached until the graph changes.

        Ports left implicit are resolved here (to the destination kind's only port).
        """
        cached = self._cache.get("arrays")
        if cached is not None and cached[0] == self._version:
            return cached[1]
        if len(self._agent_chunks) > 1:
            self._agent_chunks = [tuple(np.concatenate(c) for c in zip(*self._agent_chunks))]
        if len(self._edge_chunks) > 1:
            self._edge_chunks = [tuple(np.concatenate(c) for c in zip(*self._edge_chunks))]
        if self._agent_chunks:
            kind, group, slot = self._agent_chunks[0]
        else:
            kind, group, slot = np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int64)
        if self._edge_chunks:
            src, dst, typ, port, sport = self._edge_chunks[0]
        else:
            src = dst = np.zeros(0, np.int64)
            typ, port, sport = np.zeros(0, np.int8), np.zeros(0, np.int32), np.zeros(0, np.int32)
        kind_names = tuple(self._kinds_i.items)
        # groups: declared ones, then kind names as defaults
        group_names = list(self._groups_i.items)
        gidx = {gname: i for i, gname in enumerate(group_names)}
        default = np.array([gidx.setdefault(k, len(gidx)) for k in kind_names], np.int32)
        group_names = sorted(gidx, key=gidx.get)
        group = np.where(group >= 0, group, default[kind] if len(kind) else group).astype(np.int32)
        # implicit ports: the destination kind's only port of that type
        missing = np.flatnonzero((port < 0) & (typ != _TYPE_ID["reflexive"]))
        if len(missing):
            port = port.copy()
            combos = np.unique(np.stack([kind[dst[missing]], typ[missing]], 1), axis=0)
            for k, t in combos:
                ports = self.kinds[kind_names[k]].ports(ARROW_TYPES[t]) if kind_names[k] in self.kinds else {}
                sel = missing[(kind[dst[missing]] == k) & (typ[missing] == t)]
                if len(ports) != 1:
                    e = int(sel[0])
                    raise AgentGraphError(
                        f"Arrow {self._names[src[e]]!r} -> {self._names[dst[e]]!r} ({ARROW_TYPES[t]}) "
                        f"needs a port: kind {kind_names[k]!r} has {ARROW_TYPES[t]} ports "
                        f"{sorted(ports)}; pass port=..."
                    )
                port[sel] = self._strings(next(iter(ports)))
            self._edge_chunks = [(src, dst, typ, port, sport)]
        out = GraphArrays(
            names=self._names, kind=kind, kind_names=kind_names, group=group,
            group_names=tuple(group_names), slot=slot, src=src, dst=dst, type=typ, port=port,
            src_port=sport, strings=tuple(self._strings.items),
        )
        self._cache["arrays"] = (self._version, out)
        return out

    def declared_state(self, agent: Hashable) -> dict[str, np.ndarray]:
        """The initial state values declared for ``agent`` (fields not declared are absent)."""
        i = self._index(agent)
        out = {}
        for rows, f, vals in self._state_decls:
            hit = np.flatnonzero(rows == i)
            if len(hit):
                out[f] = vals[hit[-1]]
        return out

    def initial_states(self, kind: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """All agents of ``kind`` and their initial state, vectorised.

        Returns:
            ``(agents int64 [n], {field: float64 [n, *shape]})`` — declared values over defaults.
        """
        a = self.arrays()
        if kind not in a.kind_names:
            return np.zeros(0, np.int64), {}
        k = a.kind_names.index(kind)
        agents = np.flatnonzero(a.kind == k)
        spec = self.kinds[kind].fields
        vals = {f: np.full((len(agents), *s.shape), s.init, np.float64) for f, s in spec.items()}
        local = np.full(len(a.kind), -1, np.int64)
        local[agents] = np.arange(len(agents))
        for rows, f, v in self._state_decls:
            r = local[rows]
            m = r >= 0
            if m.any() and f in vals:
                vals[f][r[m]] = v[m]
        return agents, vals

    @property
    def nx(self) -> nx.MultiDiGraph:
        """The graph as a read-only networkx view (built on first use, cached until a change)."""
        cached = self._cache.get("nx")
        if cached is None or cached[0] != self._version:
            cached = (self._version, self.to_networkx().copy(as_view=True))
            self._cache["nx"] = cached
        return cached[1]

    def agents(self, kind: str | None = None) -> list[Hashable]:
        """Agent names in declaration order, optionally only those of ``kind``."""
        if kind is None:
            return list(self._names)
        a = self.arrays()
        if kind not in a.kind_names:
            return []
        return [self._names[i] for i in np.flatnonzero(a.kind == a.kind_names.index(kind))]

    def arrows(self, type: ArrowType | None = None) -> list[tuple[Hashable, Hashable, int, dict]]:
        """``(src, dst, key, attrs)`` for every arrow (of ``type``), in declaration order."""
        a = self.arrays()
        keys = self._edge_keys()
        out = []
        for e in range(len(a.src)):
            t = ARROW_TYPES[a.type[e]]
            if type is not None and t != type:
                continue
            attrs = {"type": t, "port": None if a.port[e] < 0 else a.strings[a.port[e]],
                     "src_port": a.strings[a.src_port[e]]}
            out.append((self._names[a.src[e]], self._names[a.dst[e]], int(keys[e]), attrs))
        return out

    def number_of_agents(self) -> int:
        """How many agents the graph has."""
        return len(self._names)

    def number_of_arrows(self, type: ArrowType | None = None) -> int:
        """How many arrows (of ``type``) the graph has."""
        a = self.arrays()
        return len(a.type) if type is None else int(np.count_nonzero(a.type == _TYPE_ID[type]))

    def groups(self) -> list[str]:
        """Every group used by some agent, sorted."""
        a = self.arrays()
        return sorted(a.group_names[i] for i in np.unique(a.group))

    def __contains__(self, agent: object) -> bool:
        return agent in self._pos

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        a = self.arrays()
        counts = np.bincount(a.type.astype(np.int64), minlength=3)
        return (
            f"AgentGraph({len(self._names)} agents, "
            + ", ".join(f"{counts[i]} {t}" for i, t in enumerate(ARROW_TYPES))
            + " arrows)"
        )

    # -- networkx round trip -------------------------------------------------------------------
    def to_networkx(self) -> nx.MultiDiGraph:
        """A new plain ``networkx.MultiDiGraph`` with the documented attributes.

        Example:
            >>> g = AgentGraph(); _ = g.add_agent("a", "relu")
            >>> dict(g.to_networkx().nodes(data=True))
            {'a': {'kind': 'relu'}}
        """
        a = self.arrays()
        h = nx.MultiDiGraph()
        states: dict[int, dict] = {}
        for rows, f, vals in self._state_decls:
            for r, v in zip(rows.tolist(), vals):
                states.setdefault(r, {})[f] = v
        declared_group = self._declared_groups()
        for i, name in enumerate(self._names):
            attrs: dict[str, Any] = {"kind": a.kind_names[a.kind[i]]}
            if declared_group[i] >= 0:
                attrs["group"] = self._groups_i.items[declared_group[i]]
            if i in states:
                attrs["state"] = {f: (v.item() if v.ndim == 0 else v) for f, v in states[i].items()}
            if a.slot[i] >= 0:
                attrs["slot"] = int(a.slot[i])
            h.add_node(name, **attrs)
        names = self._names
        for e in range(len(a.src)):
            attrs = {"type": ARROW_TYPES[a.type[e]],
                     "port": None if a.port[e] < 0 else a.strings[a.port[e]],
                     "src_port": a.strings[a.src_port[e]]}
            h.add_edge(names[a.src[e]], names[a.dst[e]], **attrs)
        return h

    @classmethod
    def from_networkx(
        cls, g: nx.Graph, kinds: Iterable[Kind] | Mapping[str, Kind] | None = None
    ) -> AgentGraph:
        """Build an :class:`AgentGraph` from any directed networkx graph with the documented
        attributes, validating every node and edge.

        Example:
            >>> import networkx as nx
            >>> h = nx.MultiDiGraph()
            >>> h.add_node("x", kind="input", slot=0); h.add_node("a", kind="relu")
            >>> _ = h.add_edge("x", "a", type="forward", port="x")
            >>> AgentGraph.from_networkx(h)
            AgentGraph(2 agents, 1 forward, 0 backward, 0 reflexive arrows)
        """
        if not isinstance(g, nx.Graph) or not g.is_directed():
            raise AgentGraphError(
                f"from_networkx needs a directed networkx graph (MultiDiGraph), got {type(g).__name__}."
            )
        out = cls(kinds)
        for name, data in g.nodes(data=True):
            if "kind" not in data:
                raise AgentGraphError(f"Node {name!r} has no 'kind' attribute; set g.nodes[{name!r}]['kind'].")
            extra = set(data) - {"kind", "group", "state", "slot"}
            if extra:
                raise AgentGraphError(
                    f"Node {name!r} has unknown attribute(s) {sorted(map(str, extra))}; allowed: "
                    "kind, group, state, slot."
                )
            out.add_agent(name, data["kind"], group=data.get("group"), state=data.get("state"), slot=data.get("slot"))
        edges = g.edges(keys=True, data=True) if g.is_multigraph() else ((s, d, 0, a) for s, d, a in g.edges(data=True))
        for s, d, _, data in edges:
            extra = set(data) - {"type", "port", "src_port"}
            if extra:
                raise AgentGraphError(
                    f"Arrow {s!r} -> {d!r} has unknown attribute(s) {sorted(map(str, extra))}; "
                    "allowed: type, port, src_port."
                )
            if "type" not in data:
                raise AgentGraphError(
                    f"Arrow {s!r} -> {d!r} has no 'type' attribute; set it to one of {ARROW_TYPES}."
                )
            out.add_arrow(s, d, data["type"], port=data.get("port"), src_port=data.get("src_port", "out"))
        return out

    def relabel(self, mapping: Mapping[Hashable, Hashable]) -> AgentGraph:
        """A copy with agents renamed by ``mapping`` (names not in it are kept).

        Example:
            >>> g = AgentGraph(); _ = g.add_agent("a", "relu")
            >>> g.relabel({"a": "b"}).agents()
            ['b']
        """
        out = self.copy()
        out._names = [mapping.get(n, n) for n in self._names]
        out._pos = {n: i for i, n in enumerate(out._names)}
        if len(out._pos) != len(out._names):
            raise AgentGraphError("relabel: the mapping merges two agents into one name.")
        out._touch()
        return out

    def copy(self) -> AgentGraph:
        """An independent copy (kinds are shared: they are stateless)."""
        out = AgentGraph(self.kinds)
        out._names = list(self._names)
        out._pos = dict(self._pos)
        for attr in ("_kinds_i", "_groups_i", "_strings"):
            src, dst = getattr(self, attr), _Interner()
            dst.items, dst.index = list(src.items), dict(src.index)
            setattr(out, attr, dst)
        out._agent_chunks = list(self._agent_chunks)
        out._state_decls = list(self._state_decls)
        out._edge_chunks = list(self._edge_chunks)
        out._touch()
        return out

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> AgentGraph:
        """Check the whole graph (vectorised); returns ``self``. Cached until the graph changes.

        Checks: known kinds, initial states, slots of external kinds, arrow types, ports, output
        names, message sizes, reflexive arrows are self-loops of kinds with a reflexive
        function, and acyclic forward and backward subgraphs.

        Raises:
            AgentGraphError: naming the first offending agent or arrow and how to fix it.
        """
        if self._validated_at == self._version:
            return self
        a = self.arrays()
        names = self._names
        for k, kname in enumerate(a.kind_names):
            if kname not in self.kinds:
                raise self._unknown_kind(names[int(np.flatnonzero(a.kind == k)[0])], kname)
        for rows, f, vals in self._state_decls:
            for k in np.unique(a.kind[rows]):
                kind = self.kinds[a.kind_names[k]]
                first = names[int(rows[a.kind[rows] == k][0])]
                spec = kind.fields.get(f)
                if spec is None:
                    raise AgentGraphError(
                        f"Agent {first!r} of kind {kind.name!r} declares unknown state field {f!r}; "
                        f"kind {kind.name!r} has fields {sorted(kind.fields)}."
                    )
                if vals.shape[1:] != spec.shape:
                    raise AgentGraphError(
                        f"Agent {first!r} of kind {kind.name!r}: state field {f!r} has shape "
                        f"{vals.shape[1:]}, but the kind declares shape {spec.shape}."
                    )
        self._validate_slots(a)
        self._validate_arrows(a)
        from agentgraph.compiler.waves import generations  # local: compiler depends on graph

        for t in ("forward", "backward"):
            m = a.type == _TYPE_ID[t]
            generations(len(names), a.src[m], a.dst[m], on_cycle=lambda nodes, t=t: self._cycle_error(t, m, nodes))
        self._validated_at = self._version
        return self

    # -- internals -----------------------------------------------------------------------------
    def _touch(self) -> None:
        self._version += 1

    def _index(self, agent: Hashable) -> int:
        try:
            return self._pos[agent]
        except (KeyError, TypeError):
            raise AgentGraphError(f"No agent named {agent!r} in this graph.") from None

    def _declared_groups(self) -> np.ndarray:
        self.arrays()
        return self._agent_chunks[0][1] if self._agent_chunks else np.zeros(0, np.int32)

    def _edge_keys(self) -> np.ndarray:
        """networkx keys: for each arrow, how many earlier arrows join the same two agents."""
        a = self.arrays()
        E = len(a.src)
        if E == 0:
            return np.zeros(0, np.int64)
        pair = a.src.astype(np.int64) * max(1, len(self._names)) + a.dst
        order = np.argsort(pair, kind="stable")
        sp = pair[order]
        first = np.r_[0, np.flatnonzero(sp[1:] != sp[:-1]) + 1]
        run_start = np.repeat(first, np.diff(np.r_[first, E]))
        keys = np.empty(E, np.int64)
        keys[order] = np.arange(E) - run_start
        return keys

    def _unknown_kind(self, agent: Hashable, name: Any) -> AgentGraphError:
        return AgentGraphError(
            f"Agent {agent!r} has unknown kind {name!r}. Known kinds: {sorted(self.kinds)}. "
            "Register a user-defined kind with AgentGraph(kinds=[MyKind()]) or graph.add_kind()."
        )

    def _validate_slots(self, a: GraphArrays) -> None:
        names = self._names
        for k, kname in enumerate(a.kind_names):
            kind = self.kinds[kname]
            members = np.flatnonzero(a.kind == k)
            if kind.external is None:
                bad = members[a.slot[members] >= 0]
                if len(bad):
                    raise AgentGraphError(
                        f"Agent {names[bad[0]]!r} of kind {kname!r} has a slot but its kind reads no external data."
                    )
                continue
            bad = members[a.slot[members] < 0]
            if len(bad):
                raise AgentGraphError(
                    f"Agent {names[bad[0]]!r} of kind {kname!r} reads batch[{kind.external!r}] and needs "
                    "a non-negative int 'slot' (its column)."
                )
        by_key: dict[str, list[np.ndarray]] = {}
        for k, kname in enumerate(a.kind_names):
            ext = self.kinds[kname].external
            if ext is not None:
                by_key.setdefault(ext, []).append(np.flatnonzero(a.kind == k))
        for key, parts in by_key.items():
            members = np.concatenate(parts)
            slots = a.slot[members]
            order = np.argsort(slots, kind="stable")
            dup = np.flatnonzero(slots[order][1:] == slots[order][:-1])
            if len(dup):
                i, j = members[order[dup[0]]], members[order[dup[0] + 1]]
                raise AgentGraphError(
                    f"Agents {names[i]!r} and {names[j]!r} both read column {a.slot[i]} of "
                    f"batch[{key!r}]; give each a distinct slot."
                )

    def _validate_arrows(self, a: GraphArrays) -> None:
        E = len(a.src)
        if E == 0:
            return
        refl = a.type == _TYPE_ID["reflexive"]
        combos = np.stack([a.type.astype(np.int64), a.kind[a.src], a.kind[a.dst],
                           a.port.astype(np.int64), a.src_port.astype(np.int64), (a.src == a.dst).astype(np.int64)], 1)
        uniq, first = np.unique(combos, axis=0, return_index=True)
        for (t, sk, dk, p, sp, loop), e in zip(uniq, first):
            self._check_arrow_combo(
                self._names[a.src[e]], self._names[a.dst[e]], ARROW_TYPES[t],
                None if p < 0 else a.strings[p], a.strings[sp], kinds=(a.kind_names[sk], a.kind_names[dk]),
            )
        del refl

    def _check_arrow_combo(self, s: Hashable, d: Hashable, t: str, port: str | None, src_port: str,
                           kinds: tuple[str, str] | None = None) -> None:
        label = f"Arrow {s!r} -> {d!r} [{t}]"
        if kinds is None:
            sk, dk = self.kind_of(s), self.kind_of(d)
        else:
            sk, dk = self.kinds[kinds[0]], self.kinds[kinds[1]]
        if t == "reflexive":
            if s != d:
                raise AgentGraphError(f"{label}: a reflexive arrow must be a self-loop (src == dst).")
            if not sk.runs("reflexive"):
                raise AgentGraphError(
                    f"{label}: kind {sk.name!r} has no reflexive function; implement "
                    f"{type(sk).__name__}.reflexive or remove the arrow."
                )
            return
        if s == d:
            raise AgentGraphError(
                f"{label}: a {t} arrow from an agent to itself is a cycle; use a reflexive arrow."
            )
        ports = dk.ports(t)
        if t == "forward" and dk.external is not None and port == "data":
            raise AgentGraphError(
                f"{label}: port 'data' of {d!r} ({dk.name}) is fed by batch[{dk.external!r}]; "
                "arrows cannot deliver into it."
            )
        if port not in ports:
            raise AgentGraphError(
                f"{label}: kind {dk.name!r} of agent {d!r} has no {t} port {port!r}; its {t} ports "
                f"are {sorted(ports)}."
            )
        if not dk.runs(t):
            raise AgentGraphError(f"{label}: kind {dk.name!r} does not run in the {t} sweep.")
        outs = sk.outputs(t)
        if src_port not in outs or not sk.runs(t):
            raise AgentGraphError(
                f"{label}: kind {sk.name!r} of agent {s!r} sends no {t} output {src_port!r}; its "
                f"{t} outputs are {sorted(outs)}."
            )
        if outs[src_port] != ports[port].size:
            raise AgentGraphError(
                f"{label}: message size mismatch — {s!r} ({sk.name}) sends {t} output "
                f"{src_port!r} of size {outs[src_port]}, but port {port!r} of {d!r} ({dk.name}) "
                f"takes size {ports[port].size}."
            )

    def _default_port(self, spec: ArrowSpec) -> str | None:
        if spec.type == "reflexive" or spec.port is not None:
            return spec.port
        ports = self.kind_of(spec.dst).ports(spec.type)
        if len(ports) == 1:
            return next(iter(ports))
        raise AgentGraphError(
            f"Arrow {spec.src!r} -> {spec.dst!r} ({spec.type}) needs a port: kind "
            f"{self.kind_of(spec.dst).name!r} has {spec.type} ports {sorted(ports)}; pass port=..."
        )

    def _cycle_error(self, t: str, mask: np.ndarray, nodes: np.ndarray) -> AgentGraphError:
        a = self.arrays()
        keep = np.zeros(len(self._names), bool)
        keep[nodes] = True
        m = mask & keep[a.src] & keep[a.dst]
        sub = nx.DiGraph()
        sub.add_edges_from(zip(a.src[m].tolist(), a.dst[m].tolist()))
        cycle = nx.find_cycle(sub)
        path = " -> ".join(repr(self._names[e[0]]) for e in cycle) + f" -> {self._names[cycle[0][0]]!r}"
        return AgentGraphError(
            f"The {t} arrows form a cycle: {path}. {t.capitalize()} arrows must be acyclic; "
            f"remove one of these arrows (a self-update belongs on a reflexive arrow)."
        )
