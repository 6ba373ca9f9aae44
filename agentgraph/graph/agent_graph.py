"""The :class:`AgentGraph` class: declare agents and arrows, and read the graph back.

It owns its kinds, its schedule and its :class:`~agentgraph.graph.columns.Columns` (agents and
arrows column-wise, read as :class:`~agentgraph.graph.arrays.GraphArrays`). The bodies of declaring
(:mod:`~agentgraph.graph.specs`, handed the store to record into), validating and the networkx
round trip (:mod:`~agentgraph.graph.validate`, :mod:`~agentgraph.graph.nx_io`) use its methods.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import networkx as nx
import numpy as np

from agentgraph.arrows.schedule import DEFAULT_SCHEDULE, Schedule
from agentgraph.arrows.types import ArrowType
from agentgraph.errors import AgentGraphError
from agentgraph.graph import nx_io
from agentgraph.graph.arrays import GraphArrays, assemble, edge_keys
from agentgraph.graph.columns import Columns, StateDeclaration
from agentgraph.graph.specs import declare_agent, declare_agents, declare_arrow, declare_arrows
from agentgraph.graph.ties import TieArrays, assemble_ties, declare_tie
from agentgraph.graph.validate import unknown_kind, validate_graph
from agentgraph.nodes.base import Kind
from agentgraph.nodes.registry import default_kinds

__all__ = ["AgentGraph"]


class AgentGraph:
    """A directed multigraph of stateful agents joined by typed arrows.

    Args:
        kinds: extra kinds (instances of :class:`~agentgraph.nodes.Kind`) besides the library's;
            a kind with a library name replaces the library kind.
        schedule: what runs when in one step (:class:`~agentgraph.arrows.Schedule`); default
            :data:`~agentgraph.arrows.DEFAULT_SCHEDULE` (forward, backward, reflexive).

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

    def __init__(self, kinds: Iterable[Kind] | Mapping[str, Kind] | None = None,
                 schedule: Schedule | None = None) -> None:
        self._version = 0
        self._validated_at: tuple[int, int] | None = None
        self._cache: dict[str, tuple[tuple[int, int], Any]] = {}
        self._columns = Columns()  # names, agents, initial states, arrows
        self._schedule = DEFAULT_SCHEDULE
        if schedule is not None:
            self._set_schedule(schedule)
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

        The rule for names: agents refer to their kind by name, so a substitute **keeps the name
        of the kind it replaces** — ``kinds`` maps that name to a kind whose ``name`` is the
        same (state, ``FieldInit`` s and read-outs keep naming it so).

        Raises:
            AgentGraphError: a kind given under another name than its own.

        Example:
            >>> from agentgraph import mlp
            >>> from agentgraph.protocols import mplp
            >>> g = mlp([2, 1], loss="l2").with_kinds(mplp.kinds())
            >>> type(g.kind_of(("w", 0, 0, 0))).__name__
            'MPLPKind'
        """
        out = self.copy()
        for name, k in kinds.items():
            if isinstance(k, Kind) and k.name != name:
                raise AgentGraphError(
                    f"with_kinds: the kind given for {name!r} is named {k.name!r}; agents refer to kinds by name, so a "
                    f"substitute keeps the name of the kind it replaces — set name = {name!r} on it (its class may "
                    "differ).")
            out.add_kind(k)
        return out.validate()

    # -- schedule --------------------------------------------------------------------------------
    @property
    def schedule(self) -> Schedule:
        """The graph's :class:`~agentgraph.arrows.Schedule` (what runs when in one step)."""
        return self._schedule

    def with_schedule(self, schedule: Schedule) -> AgentGraph:
        """A copy that runs ``schedule`` (same agents, arrows and kinds); validated.

        Example:
            >>> from agentgraph import mlp
            >>> from agentgraph.arrows import Phase, Schedule
            >>> s = Schedule((Phase("forward", loss=True), Phase("backward"), Phase("update")))
            >>> mlp([2, 1], loss="l2").with_schedule(s).schedule
            Schedule(forward [loss] -> backward -> update)
        """
        out = self.copy()
        out._set_schedule(schedule)
        return out.validate()

    def _set_schedule(self, schedule: Schedule) -> None:
        if not isinstance(schedule, Schedule):
            raise AgentGraphError(f"schedule must be an agentgraph.arrows.Schedule, got {type(schedule).__name__}.")
        self._schedule = schedule
        self._touch()

    def kind_of(self, agent: Hashable) -> Kind:
        """The :class:`Kind` of ``agent`` (read from the store, not the assembled arrays: building
        a graph arrow by arrow asks this for every arrow)."""
        c = self._columns
        name = c.kind_names()[c.agent_columns()[0][c.index(agent)]]
        try:
            return self.kinds[name]
        except KeyError:
            raise unknown_kind(self, agent, name) from None

    def group_of(self, agent: Hashable) -> str:
        """The parameter-sharing group of ``agent`` (its kind's name unless declared; read from the
        store like :meth:`kind_of`).

        Example:
            >>> from agentgraph import mlp
            >>> g = mlp([2, 1], loss="l2")
            >>> g.group_of(next(a for a in g.agents() if g.kind_of(a).name == "synapse"))
            'synapse:0'
        """
        c = self._columns
        kind, group, _ = c.agent_columns()
        i = c.index(agent)
        return c.group_names()[group[i]] if group[i] >= 0 else c.kind_names()[kind[i]]

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
        return declare_agent(self, self._columns, name, kind, group, state, slot)

    def add_arrow(
        self,
        src: Hashable,
        dst: Hashable,
        type: ArrowType = "forward",
        *,
        port: str | None = None,
        src_port: str = "out",
        delay: bool = False,
    ) -> int:
        """Add one arrow ``src -> dst``; parallel arrows are allowed. Returns its networkx key
        (the number of earlier arrows between the same two agents).

        ``port`` may be omitted when the destination kind has exactly one port of this type.
        ``delay=True``: the arrow delivers at the next run of its type's phase (what its source
        sent in the previous run), so it may close a cycle (see :mod:`agentgraph.arrows.schedule`).

        Raises:
            AgentGraphError: unknown agent, bad type, unknown port, size mismatch.
        """
        return declare_arrow(self, self._columns, src, dst, type, port, src_port, delay)

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
        return declare_agents(self, self._columns, names, kind, groups, states, slots)

    def add_arrows(
        self,
        srcs: Iterable[Hashable] | np.ndarray,
        dsts: Iterable[Hashable] | np.ndarray,
        type: ArrowType = "forward",
        *,
        port: str | None = None,
        src_port: str = "out",
        by_index: bool = False,
        delay: bool = False,
    ) -> None:
        """Declare a block of arrows of one type and port (fast; checked by :meth:`validate`).

        Args:
            srcs, dsts: agent names, or agent indices (``int [E]``) with ``by_index=True``.
            type, port, src_port, delay: as in :meth:`add_arrow`; ``port=None`` picks the
                destination kind's only port of that type.

        Example:
            >>> g = AgentGraph()
            >>> i = g.add_agents(["a", "b"], "relu")
            >>> g.add_arrows(i[:1], i[1:], "forward", by_index=True); g.number_of_arrows()
            1
        """
        declare_arrows(self, self._columns, srcs, dsts, type, port, src_port, by_index, delay)

    def tie(self, agents: Iterable[Hashable] | np.ndarray, field: str, *, name: str | None = None,
            reduction: str = "sum", value: Any = None, by_index: bool = False) -> str:
        """Tie ``field`` of ``agents`` (all of one kind): one shared value, moved after every
        phase by the ``reduction`` (``"sum"`` or ``"mean"``) of the members' changes
        (:mod:`agentgraph.graph.ties`). Declaring again with the same ``name`` adds members.

        Args:
            agents: agent names, or indices (``int [m]``) with ``by_index=True``.
            field: a per-agent field of their kind.
            name: the tie's name (default ``"tie<k>"``).
            reduction: ``"sum"`` (a shared weight's gradient) or ``"mean"``.
            value: the shared initial value, declared for every member (else the members'
                declared values must agree).

        Returns:
            The tie's name. Checked fully by :meth:`validate`.

        Example:
            >>> g = AgentGraph(); _ = g.add_agents(["a", "b"], "synapse")
            >>> g.tie(["a", "b"], "w", value=0.5)
            'tie0'
        """
        return declare_tie(self, self._columns, agents, field, name, reduction, value, by_index)

    def add_hint(self, layout: str, **data: Any) -> None:
        """Record a layout hint for the compiler, e.g. ``"conv"`` (a convolution's agents and
        geometry, from :func:`~agentgraph.builders.cnn`). Hints change no semantics: the compiler
        verifies one against the graph before it lowers by it, and ignores it otherwise. Agents
        are given by index (``int64`` arrays); hints do not travel through networkx.

        Example:
            >>> g = AgentGraph(); g.add_hint("demo", rows=np.arange(2)); g.hints("demo")[0]["rows"].tolist()
            [0, 1]
        """
        self._columns.add_hint(layout, data)

    def hints(self, layout: str) -> list[dict[str, Any]]:
        """The layout hints recorded under ``layout`` (:meth:`add_hint`), in order."""
        return [d for name, d in self._columns.hints() if name == layout]

    # -- reading -------------------------------------------------------------------------------
    def ties(self) -> TieArrays:
        """The graph's ties as plain arrays (:class:`~agentgraph.graph.ties.TieArrays`); cached."""
        cached = self._cache.get("ties")
        if cached is None or cached[0] != self._stamp():
            cached = (self._stamp(), assemble_ties(self._columns))
            self._cache["ties"] = cached
        return cached[1]

    def arrays(self) -> GraphArrays:
        """The graph as plain arrays (:class:`GraphArrays`); cached until the graph changes.

        Ports left implicit are resolved here (to the destination kind's only port).
        """
        cached = self._cache.get("arrays")
        if cached is not None and cached[0] == self._stamp():
            return cached[1]
        out = assemble(self._columns, self.kinds, self._schedule)
        self._cache["arrays"] = (self._stamp(), out)
        return out

    def declared_state(self, agent: Hashable) -> dict[str, np.ndarray]:
        """The initial state values declared for ``agent`` (fields not declared are absent)."""
        return self._columns.declared_state(self._columns.index(agent))

    def initial_states(self, kind: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """All agents of ``kind`` and their initial state, vectorised.

        Returns:
            ``(agents int64 [n], {field: float64 [n, *shape]})`` — declared values over defaults.
        """
        a = self.arrays()
        if kind not in a.kind_names:
            return np.zeros(0, np.int64), {}
        agents = np.flatnonzero(a.kind == a.kind_names.index(kind))
        return agents, self._columns.initial_values(agents, self.kinds[kind].fields)

    @property
    def nx(self) -> nx.MultiDiGraph:
        """The graph as a read-only networkx view (built on first use, cached until a change)."""
        cached = self._cache.get("nx")
        if cached is None or cached[0] != self._stamp():
            cached = (self._stamp(), self.to_networkx().copy(as_view=True))
            self._cache["nx"] = cached
        return cached[1]

    def agents(self, kind: str | None = None) -> list[Hashable]:
        """Agent names in declaration order, optionally only those of ``kind``."""
        names = self._columns.names
        if kind is None:
            return list(names)
        a = self.arrays()
        if kind not in a.kind_names:
            return []
        return [names[i] for i in np.flatnonzero(a.kind == a.kind_names.index(kind))]

    def arrows(self, type: ArrowType | None = None) -> list[tuple[Hashable, Hashable, int, dict]]:
        """``(src, dst, key, attrs)`` for every arrow (of ``type``), in declaration order."""
        a = self.arrays()
        keys = edge_keys(a)
        out = []
        for e in range(len(a.src)) if type is None else np.flatnonzero(a.type_mask(type)).tolist():
            out.append((a.names[a.src[e]], a.names[a.dst[e]], int(keys[e]), a.arrow_attrs(e)))
        return out

    def number_of_agents(self) -> int:
        """How many agents the graph has."""
        return len(self._columns)

    def number_of_arrows(self, type: ArrowType | None = None) -> int:
        """How many arrows (of ``type``) the graph has."""
        a = self.arrays()
        return len(a.type) if type is None else int(np.count_nonzero(a.type_mask(type)))

    def groups(self) -> list[str]:
        """Every group used by some agent, sorted."""
        a = self.arrays()
        return sorted(a.group_names[i] for i in np.unique(a.group))

    def __contains__(self, agent: object) -> bool:
        return agent in self._columns

    def __len__(self) -> int:
        return len(self._columns)

    def __repr__(self) -> str:
        a = self.arrays()
        counts = np.bincount(a.type.astype(np.int64), minlength=len(a.type_names))
        return (
            f"AgentGraph({len(self._columns)} agents, "
            + ", ".join(f"{counts[i]} {t}" for i, t in enumerate(a.type_names) if i < 3 or counts[i])
            + " arrows)"
        )

    def draw(self, path: str, *, title: str = "", max_agents: int = 200) -> str:
        """Draw the graph into ``path`` (PNG or SVG): agents by forward wave and kind, arrows by
        type, delayed dashed, self-loops ringed; collapsed by (kind, group) above ``max_agents``
        agents (:func:`agentgraph.graph.draw.draw_graph`). Returns ``path``.

        Example:
            >>> import tempfile, os
            >>> g = AgentGraph(); _ = g.add_agent("a", "relu")
            >>> os.path.exists(g.draw(os.path.join(tempfile.mkdtemp(), "g.png")))
            True
        """
        from agentgraph.graph.draw import draw_graph

        return draw_graph(self, path, title=title, max_agents=max_agents)

    # -- networkx round trip -------------------------------------------------------------------
    def to_networkx(self) -> nx.MultiDiGraph:
        """A new plain ``networkx.MultiDiGraph`` with the documented attributes.

        Example:
            >>> g = AgentGraph(); _ = g.add_agent("a", "relu")
            >>> dict(g.to_networkx().nodes(data=True))
            {'a': {'kind': 'relu'}}
        """
        return nx_io.to_networkx(self)

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
        return nx_io.from_networkx(cls, g, kinds)

    def relabel(self, mapping: Mapping[Hashable, Hashable]) -> AgentGraph:
        """A copy with agents renamed by ``mapping`` (names not in it are kept).

        Example:
            >>> g = AgentGraph(); _ = g.add_agent("a", "relu")
            >>> g.relabel({"a": "b"}).agents()
            ['b']
        """
        out = self.copy()
        out._columns.rename(mapping)
        return out

    def copy(self) -> AgentGraph:
        """An independent copy (kinds are shared: they are stateless)."""
        out = AgentGraph(self.kinds, self._schedule)
        out._columns = self._columns.copy()
        return out

    # -- validation ----------------------------------------------------------------------------
    def validate(self) -> AgentGraph:
        """Check the whole graph (vectorised); returns ``self``. Cached until the graph changes.

        Checks: known kinds, initial states, slots of external kinds, arrow types (each run by
        the schedule), ports, output names, message sizes, self-loop types' arrows are self-loops
        of kinds with a function for them, and every sweep type's non-delayed arrows are acyclic.

        Raises:
            AgentGraphError: naming the first offending agent or arrow and how to fix it.
        """
        if self._validated_at == self._stamp():
            return self
        validate_graph(self)
        self._validated_at = self._stamp()
        return self

    # -- declarations as recorded (read by validate.py and nx_io.py) ------------------------------
    def declared_groups(self) -> list[str | None]:
        """Each agent's declared group, ``None`` where it takes its kind's name (see :meth:`group_of`).

        Example:
            >>> g = AgentGraph(); _ = g.add_agents(["a", "b"], "relu", groups=["g", None])
            >>> g.declared_groups()
            ['g', None]
        """
        return self._columns.declared_groups()

    def state_declarations(self) -> list[StateDeclaration]:
        """Every initial-state declaration ``(rows int64 [n], field, values float64 [n, *shape])``
        in declaration order (a later one overrides an earlier one for the same agent and field).

        Example:
            >>> g = AgentGraph(); _ = g.add_agent("w", "synapse", state={"w": 0.5})
            >>> [(rows.tolist(), f, v.tolist()) for rows, f, v in g.state_declarations()]
            [([0], 'w', [0.5])]
        """
        return self._columns.state_declarations()

    def tie_declarations(self) -> list[tuple[str, str, np.ndarray]]:
        """Every tie declaration ``(name, field, rows int64 [m])`` in declaration order."""
        return self._columns.tie_declarations()

    # -- internals -----------------------------------------------------------------------------
    def _touch(self) -> None:
        self._version += 1

    def _stamp(self) -> tuple[int, int]:  # changes so far (kinds, schedule; columns): the cache key
        return self._version, self._columns.version
