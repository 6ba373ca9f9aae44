"""`AgentGraph`: a directed multigraph of stateful agents joined by typed arrows.

The graph is stored as a plain :class:`networkx.MultiDiGraph` with documented attributes, so any
networkx tool can build, inspect or transform it:

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

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import networkx as nx
import numpy as np
import pydantic

from agentgraph.arrows.types import ARROW_TYPES, ArrowType
from agentgraph.errors import AgentGraphError
from agentgraph.nodes.base import Kind
from agentgraph.nodes.registry import default_kinds

__all__ = ["AgentGraph", "AgentSpec", "ArrowSpec"]


class AgentSpec(pydantic.BaseModel):
    """The declaration of one agent, validated when it is added.

    Example:
        >>> AgentSpec(name="w0", kind="synapse", state={"w": 0.1}).group is None
        True
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: Any
    kind: str
    group: str | None = None
    state: dict[str, Any] | None = None
    slot: int | None = pydantic.Field(default=None, ge=0)

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
    port: str | None = None
    src_port: str = "out"


def _pydantic_message(e: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())


class AgentGraph:
    """A directed multigraph of stateful agents, over :class:`networkx.MultiDiGraph`.

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
        self._g = nx.MultiDiGraph()
        self._validated_at: int | None = None
        self._version = 0
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

    def kind_of(self, agent: Hashable) -> Kind:
        """The :class:`Kind` of ``agent``."""
        name = self._node(agent)["kind"]
        try:
            return self.kinds[name]
        except KeyError:
            raise self._unknown_kind(agent, name) from None

    def group_of(self, agent: Hashable) -> str:
        """The parameter-sharing group of ``agent`` (its kind's name unless declared)."""
        d = self._node(agent)
        return d.get("group") or d["kind"]

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
        try:
            spec = AgentSpec(name=name, kind=kind, group=group, state=None if state is None else dict(state), slot=slot)
        except pydantic.ValidationError as e:
            raise AgentGraphError(f"Invalid declaration of agent {name!r}: {_pydantic_message(e)}") from None
        if spec.name in self._g:
            raise AgentGraphError(f"Agent {spec.name!r} already exists; agent names must be unique.")
        if spec.kind not in self.kinds:
            raise self._unknown_kind(spec.name, spec.kind)
        self.kinds[spec.kind].initial_state(spec.state, agent=spec.name)
        self._g.add_node(spec.name, **self._node_attrs(spec))
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
        """Add one arrow ``src -> dst``; parallel arrows are allowed. Returns the edge key.

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
            if end not in self._g:
                raise AgentGraphError(
                    f"Arrow {spec.src!r} -> {spec.dst!r} ({spec.type}) names agent {end!r}, which "
                    "does not exist; add the agent first."
                )
        attrs = {"type": spec.type, "port": self._default_port(spec), "src_port": spec.src_port}
        self._check_arrow(spec.src, spec.dst, attrs)
        key = self._g.add_edge(spec.src, spec.dst, **attrs)
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
    ) -> None:
        """Bulk-add agents of one kind (fast path for builders; checked by :meth:`validate`).

        Args:
            names: ``n`` new agent names.
            kind: their kind.
            groups: one group for all, or one per agent.
            states: ``{field: array [n, *shape]}`` initial values, one row per agent.
            slots: one slot per agent (external kinds only).
        """
        names = list(names)
        if kind not in self.kinds:
            raise self._unknown_kind(names[0] if names else None, kind)
        n = len(names)
        if groups is None or isinstance(groups, str):
            group_list = [groups] * n
        else:
            group_list = list(groups)
        slot_list = [None] * n if slots is None else [int(s) for s in slots]
        state_cols = {f: np.asarray(v, dtype=np.float64) for f, v in (states or {}).items()}
        for f, v in state_cols.items():
            if len(v) != n:
                raise AgentGraphError(f"add_agents: states[{f!r}] has {len(v)} rows for {n} agents.")
        if len(group_list) != n or len(slot_list) != n:
            raise AgentGraphError("add_agents: groups and slots need one entry per agent.")
        nodes = []
        for i, name in enumerate(names):
            attrs: dict[str, Any] = {"kind": kind}
            if group_list[i] is not None:
                attrs["group"] = group_list[i]
            if state_cols:
                attrs["state"] = {f: v[i] for f, v in state_cols.items()}
            if slot_list[i] is not None:
                attrs["slot"] = slot_list[i]
            nodes.append((name, attrs))
        before = self._g.number_of_nodes()
        self._g.add_nodes_from(nodes)
        if self._g.number_of_nodes() != before + n:
            raise AgentGraphError(f"add_agents: some of the {n} names already exist or repeat.")
        self._touch()

    def add_arrows(
        self,
        srcs: Iterable[Hashable],
        dsts: Iterable[Hashable],
        type: ArrowType = "forward",
        *,
        port: str | None = None,
        src_port: str = "out",
    ) -> None:
        """Bulk-add arrows of one type and port (fast path for builders; see :meth:`validate`)."""
        if type not in ARROW_TYPES:
            raise AgentGraphError(f"Unknown arrow type {type!r}; choose one of {ARROW_TYPES}.")
        attrs = {"type": type, "port": port, "src_port": src_port}
        self._g.add_edges_from((s, d, dict(attrs)) for s, d in zip(srcs, dsts, strict=True))
        self._touch()

    # -- reading -------------------------------------------------------------------------------
    @property
    def nx(self) -> nx.MultiDiGraph:
        """A read-only view of the underlying multigraph."""
        return self._g.copy(as_view=True)

    def agents(self, kind: str | None = None) -> list[Hashable]:
        """Agent names in declaration order, optionally only those of ``kind``."""
        if kind is None:
            return list(self._g.nodes)
        return [n for n, k in self._g.nodes(data="kind") if k == kind]

    def arrows(self, type: ArrowType | None = None) -> list[tuple[Hashable, Hashable, int, dict]]:
        """``(src, dst, key, attrs)`` for every arrow (of ``type``), in declaration order."""
        return [
            (s, d, k, a) for s, d, k, a in self._g.edges(keys=True, data=True)
            if type is None or a["type"] == type
        ]

    def number_of_agents(self) -> int:
        """How many agents the graph has."""
        return self._g.number_of_nodes()

    def number_of_arrows(self, type: ArrowType | None = None) -> int:
        """How many arrows (of ``type``) the graph has."""
        if type is None:
            return self._g.number_of_edges()
        return sum(1 for _, _, t in self._g.edges(data="type") if t == type)

    def groups(self) -> list[str]:
        """Every group used by some agent, sorted."""
        return sorted({self.group_of(n) for n in self._g.nodes})

    def __contains__(self, agent: object) -> bool:
        return agent in self._g

    def __len__(self) -> int:
        return self._g.number_of_nodes()

    def __repr__(self) -> str:
        counts = {t: 0 for t in ARROW_TYPES}
        for _, _, t in self._g.edges(data="type"):
            counts[t] = counts.get(t, 0) + 1
        return (
            f"AgentGraph({self.number_of_agents()} agents, "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + " arrows)"
        )

    # -- networkx round trip -------------------------------------------------------------------
    def to_networkx(self) -> nx.MultiDiGraph:
        """A copy of the graph as a plain ``networkx.MultiDiGraph`` (attributes in module doc)."""
        return self._g.copy()

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
        """A copy with agents renamed by ``mapping`` (names not in it are kept)."""
        out = AgentGraph(self.kinds)
        out._g = nx.relabel_nodes(self._g, dict(mapping), copy=True)
        if out._g.number_of_nodes() != self._g.number_of_nodes():
            raise AgentGraphError("relabel: the mapping merges two agents into one name.")
        return out

    def copy(self) -> AgentGraph:
        """An independent copy (kinds are shared: they are stateless)."""
        out = AgentGraph(self.kinds)
        out._g = self._g.copy()
        return out

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> AgentGraph:
        """Check the whole graph; returns ``self``. Cached until the graph changes.

        Checks: known kinds, state fields and shapes, finite initial values, slots of external
        kinds, arrow types, ports, output names, message sizes, reflexive arrows are self-loops of
        kinds with a reflexive function, and acyclic forward and backward subgraphs.

        Raises:
            AgentGraphError: naming the first offending agent or arrow and how to fix it.
        """
        if self._validated_at == self._version:
            return self
        slots: dict[str, dict[int, Hashable]] = {}
        for name, data in self._g.nodes(data=True):
            kind = self.kind_of(name)
            group = data.get("group")
            if group is not None and not isinstance(group, str):
                raise AgentGraphError(f"Agent {name!r}: group must be a str, got {group!r}.")
            kind.initial_state(data.get("state"), agent=name)
            slot = data.get("slot")
            if kind.external is not None:
                if slot is None or isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or slot < 0:
                    raise AgentGraphError(
                        f"Agent {name!r} of kind {kind.name!r} reads batch[{kind.external!r}] and needs "
                        f"a non-negative int 'slot' (its column), got {slot!r}."
                    )
                taken = slots.setdefault(kind.external, {})
                if int(slot) in taken:
                    raise AgentGraphError(
                        f"Agents {taken[int(slot)]!r} and {name!r} both read column {slot} of "
                        f"batch[{kind.external!r}]; give each a distinct slot."
                    )
                taken[int(slot)] = name
            elif slot is not None:
                raise AgentGraphError(
                    f"Agent {name!r} of kind {kind.name!r} has a slot but its kind reads no external data."
                )
        for s, d, k, attrs in self._g.edges(keys=True, data=True):
            self._check_arrow(s, d, attrs, key=k)
        for t in ("forward", "backward"):
            sub = nx.DiGraph()
            sub.add_edges_from((s, d) for s, d, a in self._g.edges(data="type") if a == t)
            try:
                cycle = nx.find_cycle(sub)
            except nx.NetworkXNoCycle:
                continue
            path = " -> ".join(repr(e[0]) for e in cycle) + f" -> {cycle[0][0]!r}"
            raise AgentGraphError(
                f"The {t} arrows form a cycle: {path}. {t.capitalize()} arrows must be acyclic; "
                f"remove one of these arrows (a self-update belongs on a reflexive arrow)."
            )
        self._validated_at = self._version
        return self

    # -- internals -----------------------------------------------------------------------------
    def _touch(self) -> None:
        self._version += 1

    def _node(self, agent: Hashable) -> dict:
        try:
            return self._g.nodes[agent]
        except KeyError:
            raise AgentGraphError(f"No agent named {agent!r} in this graph.") from None

    def _unknown_kind(self, agent: Hashable, name: Any) -> AgentGraphError:
        return AgentGraphError(
            f"Agent {agent!r} has unknown kind {name!r}. Known kinds: {sorted(self.kinds)}. "
            "Register a user-defined kind with AgentGraph(kinds=[MyKind()]) or graph.add_kind()."
        )

    @staticmethod
    def _node_attrs(spec: AgentSpec) -> dict:
        attrs: dict[str, Any] = {"kind": spec.kind}
        if spec.group is not None:
            attrs["group"] = spec.group
        if spec.state is not None:
            attrs["state"] = dict(spec.state)
        if spec.slot is not None:
            attrs["slot"] = spec.slot
        return attrs

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

    def _check_arrow(self, s: Hashable, d: Hashable, attrs: Mapping, key: int | None = None) -> None:
        t = attrs.get("type")
        label = f"Arrow {s!r} -> {d!r}" + (f" (key {key})" if key is not None else "") + f" [{t}]"
        if t not in ARROW_TYPES:
            raise AgentGraphError(f"{label}: unknown type {t!r}; choose one of {ARROW_TYPES}.")
        sk, dk = self.kind_of(s), self.kind_of(d)
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
        port = attrs.get("port")
        if port is None:
            ports = dk.ports(t)
            if len(ports) != 1:
                raise AgentGraphError(
                    f"{label}: no port given and kind {dk.name!r} has {t} ports {sorted(ports)}; set 'port'."
                )
            port = next(iter(ports))
            if isinstance(attrs, dict):
                attrs["port"] = port
        ports = dk.ports(t)
        if port not in ports:
            raise AgentGraphError(
                f"{label}: kind {dk.name!r} of agent {d!r} has no {t} port {port!r}; its {t} ports "
                f"are {sorted(ports)}."
            )
        if not dk.runs(t):
            raise AgentGraphError(f"{label}: kind {dk.name!r} does not run in the {t} sweep.")
        src_port = attrs.get("src_port", "out")
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
