"""The column store of an :class:`~agentgraph.graph.AgentGraph`: agent names, interned names, and
the declared agents, initial states and arrows as column chunks.

Each declaring call (``add_agent``, ``add_agents``, ``add_arrow``, ``add_arrows``) appends one
chunk of columns; the chunks are concatenated on first read (:meth:`Columns.agent_columns`,
:meth:`Columns.arrow_columns`), so declaring in many small blocks stays cheap. The store does no
checking beyond name uniqueness: :mod:`~agentgraph.graph.specs` checks declarations before they
are recorded, :mod:`~agentgraph.graph.validate` checks the whole graph.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from agentgraph.arrows.types import ARROW_TYPES
from agentgraph.errors import AgentGraphError
from agentgraph.graph.arrays import Interner
from agentgraph.nodes.base import Field

__all__ = ["Columns"]

AgentColumns = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(kind int32 [N], declared group int32 [N] (-1: none), slot int64 [N] (-1: none))``."""

ArrowColumns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""``(src int64 [E], dst int64 [E], type int16 [E], port int32 [E] (-1: implicit or none),
src_port int32 [E], delay bool [E])``; names are codes into the store's interned tables."""

TieDeclaration = tuple[str, str, np.ndarray]
"""``(tie name, field, rows int64 [m])``: agents ``rows`` join the tie (see :mod:`~agentgraph.graph.ties`)."""

StateDeclaration = tuple[np.ndarray, str, np.ndarray]
"""``(rows int64 [n], field, values float64 [n, *shape])``: initial values for agents ``rows``."""


class Columns:
    """Agents and arrows as column chunks; the storage an :class:`AgentGraph` owns.

    Agent ``i`` is the ``i``-th name declared. Kind, group, port and arrow type names are
    interned (numbered in order of first use); the library's arrow types are always codes 0, 1, 2.

    Example:
        >>> c = Columns()
        >>> c.add_agents(["a", "b"], "relu", groups="g", slots=None).tolist()
        [0, 1]
        >>> c.add_arrows(np.array([0]), np.array([1]), "forward", "x", "out", False)
        >>> c.arrow_columns()[0].tolist(), c.kind_names(), c.type_names()
        ([0], ('relu',), ('forward', 'backward', 'reflexive'))
    """

    def __init__(self) -> None:
        self._version = 0  # bumped by every change
        self._names: list[Hashable] = []
        self._pos: dict[Hashable, int] = {}
        self._kinds = Interner()  # kind names
        self._groups = Interner()  # declared group names
        self._strings = Interner()  # port names
        self._types = Interner()  # arrow type names: the library's first (codes 0, 1, 2)
        for t in ARROW_TYPES:
            self._types(t)
        self._agents: list[AgentColumns] = []
        self._states: list[StateDeclaration] = []
        self._arrows: list[ArrowColumns] = []
        self._ties: list[TieDeclaration] = []
        self._hints: list[tuple[str, dict]] = []  # (layout name, {key: value}): builders' layout hints
        self._reductions: dict[str, str] = {}  # tie name -> reduction
        self._pairs: dict[tuple[int, int], int] | None = None  # arrows per (src, dst), built on demand

    @property
    def version(self) -> int:
        """A counter bumped by every change (so an owner's caches know when to refresh)."""
        return self._version

    # -- agents by name ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._pos

    @property
    def names(self) -> list[Hashable]:
        """The agent names in declaration order (the store's own list: do not modify it)."""
        return self._names

    def index(self, name: Hashable) -> int:
        """The index of agent ``name``.

        Raises:
            AgentGraphError: no such agent.
        """
        try:
            return self._pos[name]
        except (KeyError, TypeError):
            raise AgentGraphError(f"No agent named {name!r} in this graph.") from None

    def indices(self, names: Iterable[Hashable]) -> np.ndarray:
        """``int64 [n]``: the index of each of ``names``, ``-1`` for names not in the store."""
        pos = self._pos
        return np.array([pos.get(x, -1) for x in names], np.int64)

    def rename(self, mapping: Mapping[Hashable, Hashable]) -> None:
        """Rename agents by ``mapping`` in place (names not in it are kept).

        Raises:
            AgentGraphError: the mapping merges two agents into one name.
        """
        names = [mapping.get(n, n) for n in self._names]
        pos = {n: i for i, n in enumerate(names)}
        if len(pos) != len(names):
            raise AgentGraphError("relabel: the mapping merges two agents into one name.")
        self._names, self._pos = names, pos
        self._version += 1

    # -- recording -----------------------------------------------------------------------------
    def add_agents(self, names: Sequence[Hashable], kind: str, groups: str | Sequence[str | None] | None,
                   slots: Sequence[int] | None) -> np.ndarray:
        """Record agents ``names`` of ``kind``; returns their indices ``int64 [n]``.

        ``groups``: one declared group for all, one per agent (``None``: none), or ``None``.
        ``slots``: one per agent, or ``None`` (no slots).

        Raises:
            AgentGraphError: a name is ``None``, repeated or already recorded, or ``groups`` /
                ``slots`` has not one entry per agent (then nothing is recorded).
        """
        n = len(names)
        start = len(self._names)
        pos = self._pos
        for i, nm in enumerate(names):
            if nm is None or nm in pos:
                for nm2 in names[:i]:
                    pos.pop(nm2, None)
                raise AgentGraphError(
                    f"add_agents: agent name {nm!r} is None, repeated or already exists; names must be unique."
                )
            pos[nm] = start + i
        self._version += 1
        if groups is None:
            g = np.full(n, -1, np.int32)
        elif isinstance(groups, str):
            g = np.full(n, self._groups(groups), np.int32)
        else:
            g = np.array([-1 if x is None else self._groups(x) for x in groups], np.int32)
        sl = np.full(n, -1, np.int64) if slots is None else np.asarray(list(slots), np.int64)
        if len(g) != n or len(sl) != n:
            for nm in names:
                pos.pop(nm, None)
            raise AgentGraphError("add_agents: groups and slots need one entry per agent.")
        self._names.extend(names)
        self._agents.append((np.full(n, self._kinds(kind), np.int32), g, sl))
        return np.arange(start, start + n)

    def add_state(self, rows: np.ndarray, field: str, values: np.ndarray) -> None:
        """Record initial values ``values [n, *shape]`` of ``field`` for agents ``rows int [n]``."""
        self._states.append((np.asarray(rows), field, values))
        self._version += 1

    def add_arrows(self, src: np.ndarray, dst: np.ndarray, type: str, port: str | None, src_port: str,
                   delay: bool) -> None:
        """Record arrows ``src[e] -> dst[e]`` (agent indices ``int [E]``) of one type and port
        (``port=None``: left implicit, resolved when the graph's arrays are assembled)."""
        src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
        E = len(src)
        self._arrows.append((
            src, dst, np.full(E, self._types(type), np.int16),
            np.full(E, -1 if port is None else self._strings(port), np.int32),
            np.full(E, self._strings(src_port), np.int32), np.full(E, bool(delay)),
        ))
        self._version += 1
        if self._pairs is not None:
            if E <= 16:  # one arrow at a time (add_arrow, from_networkx): keep the counts
                for pair in zip(src.tolist(), dst.tolist()):
                    self._pairs[pair] = self._pairs.get(pair, 0) + 1
            else:  # a block: count again when next asked
                self._pairs = None

    def arrows_between(self, src: int, dst: int) -> int:
        """How many arrows (of any type) agent index ``src`` sends to ``dst`` so far — the
        networkx key of the next one. Counted once, then kept up to date arrow by arrow, so
        declaring arrows one at a time stays linear in their number.

        Example:
            >>> c = Columns()
            >>> _ = c.add_agents(["a", "b"], "relu", groups=None, slots=None)
            >>> c.add_arrows(np.array([0, 0]), np.array([1, 1]), "forward", "x", "out", False)
            >>> c.arrows_between(0, 1), c.arrows_between(1, 0)
            (2, 0)
        """
        if self._pairs is None:
            src_, dst_ = self.arrow_columns()[:2]
            pairs: dict[tuple[int, int], int] = {}
            for pair in zip(src_.tolist(), dst_.tolist()):
                pairs[pair] = pairs.get(pair, 0) + 1
            self._pairs = pairs
        return self._pairs.get((int(src), int(dst)), 0)

    def add_tie(self, name: str | None, field: str, rows: np.ndarray, reduction: str) -> str:
        """Record that agents ``rows int [m]`` join tie ``name`` on ``field`` (``None``: a new
        tie named ``"tie<k>"``); returns the name.

        Raises:
            AgentGraphError: the tie exists with another reduction.
        """
        if name is None:
            k = len(self._reductions)
            while f"tie{k}" in self._reductions:
                k += 1
            name = f"tie{k}"
        if self._reductions.get(name, reduction) != reduction:
            raise AgentGraphError(f"tie {name!r} has reduction {self._reductions[name]!r}; cannot extend it with "
                                  f"reduction {reduction!r}.")
        self._reductions[name] = reduction
        self._ties.append((name, field, np.asarray(rows, np.int64)))
        self._version += 1
        return name

    def set_ports(self, port: np.ndarray) -> None:
        """Replace the port column (``int32 [E]``, codes from :meth:`port_code`)."""
        src, dst, typ, _, sport, delay = self.arrow_columns()
        self._arrows = [(src, dst, typ, port, sport, delay)]

    def port_code(self, name: str) -> int:
        """The code of port name ``name`` (interning it if new)."""
        return self._strings(name)

    # -- reading -------------------------------------------------------------------------------
    def agent_columns(self) -> AgentColumns:
        """``(kind, declared group, slot)`` of every agent (see :data:`AgentColumns`)."""
        if len(self._agents) > 1:
            self._agents = [tuple(np.concatenate(c) for c in zip(*self._agents))]  # type: ignore[misc]
        if self._agents:
            return self._agents[0]
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int64)

    def arrow_columns(self) -> ArrowColumns:
        """``(src, dst, type, port, src_port, delay)`` of every arrow (see :data:`ArrowColumns`)."""
        if len(self._arrows) > 1:
            self._arrows = [tuple(np.concatenate(c) for c in zip(*self._arrows))]  # type: ignore[misc]
        if self._arrows:
            return self._arrows[0]
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.int16), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, bool)

    def kind_names(self) -> tuple[str, ...]:
        """The kind names, by code."""
        return tuple(self._kinds.items)

    def group_names(self) -> tuple[str, ...]:
        """The declared group names, by code."""
        return tuple(self._groups.items)

    def type_names(self) -> tuple[str, ...]:
        """The arrow type names, by code (``ARROW_TYPES`` first)."""
        return tuple(self._types.items)

    def strings(self) -> tuple[str, ...]:
        """The port names, by code."""
        return tuple(self._strings.items)

    def declared_groups(self) -> list[str | None]:
        """Each agent's declared group (``None`` where it has none)."""
        names = self._groups.items
        return [None if g < 0 else names[g] for g in self.agent_columns()[1].tolist()]

    def state_declarations(self) -> list[StateDeclaration]:
        """Every initial-state declaration, in declaration order (later ones win)."""
        return list(self._states)

    def add_hint(self, layout: str, data: dict) -> None:
        """Record a builder's layout hint (see :meth:`AgentGraph.add_hint`)."""
        self._hints.append((layout, dict(data)))
        self._version += 1

    def hints(self) -> list[tuple[str, dict]]:
        """Every layout hint ``(layout, data)``, in declaration order."""
        return list(self._hints)

    def tie_declarations(self) -> list[TieDeclaration]:
        """Every tie declaration, in declaration order."""
        return list(self._ties)

    def tie_reduction(self, name: str) -> str:
        """The reduction of tie ``name``."""
        return self._reductions[name]

    def declared_state(self, i: int) -> dict[str, np.ndarray]:
        """The initial values declared for agent ``i`` (``{field: value}``; latest wins)."""
        out = {}
        for rows, f, vals in self._states:
            hit = np.flatnonzero(rows == i)
            if len(hit):
                out[f] = vals[hit[-1]]
        return out

    def initial_values(self, agents: np.ndarray, fields: Mapping[str, Field]) -> dict[str, np.ndarray]:
        """``{field: float64 [n, *shape]}`` for ``agents int [n]`` (all of one kind, whose state
        ``fields`` these are): the declared values over the fields' defaults."""
        vals = {f: np.full((len(agents), *s.shape), s.init, np.float64) for f, s in fields.items()}
        local = np.full(len(self._names), -1, np.int64)
        local[agents] = np.arange(len(agents))
        for rows, f, v in self._states:
            r = local[rows]
            m = r >= 0
            if m.any() and f in vals:
                vals[f][r[m]] = v[m]
        return vals

    def copy(self) -> Columns:
        """An independent copy (the column arrays, never modified in place, are shared)."""
        out = Columns()
        out._names, out._pos = list(self._names), dict(self._pos)
        out._kinds, out._groups = self._kinds.copy(), self._groups.copy()
        out._strings, out._types = self._strings.copy(), self._types.copy()
        out._agents, out._states, out._arrows = list(self._agents), list(self._states), list(self._arrows)
        out._ties, out._reductions = list(self._ties), dict(self._reductions)
        out._hints = list(self._hints)
        return out
