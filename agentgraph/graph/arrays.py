"""The graph as plain column arrays (jraph style): :class:`GraphArrays`, the interning of names,
and the assembly of the declared chunks into one set of arrays.

An :class:`~agentgraph.graph.AgentGraph` keeps its declarations as chunks (one per
``add_agent``/``add_agents``/``add_arrow``/``add_arrows`` call) in its
:class:`~agentgraph.graph.columns.Columns`; :func:`assemble` concatenates them, fills in default
groups and implicit ports, and returns the :class:`GraphArrays`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agentgraph.arrows.types import ARROW_TYPES
from agentgraph.errors import AgentGraphError

if TYPE_CHECKING:
    from agentgraph.arrows.schedule import Schedule
    from agentgraph.graph.columns import Columns
    from agentgraph.nodes.base import Kind

__all__ = ["TYPE_ID", "GraphArrays", "Interner", "assemble", "edge_keys"]

TYPE_ID = {t: i for i, t in enumerate(ARROW_TYPES)}
"""The library's arrow types -> their codes in :attr:`GraphArrays.type` (every graph numbers
``forward``, ``backward``, ``reflexive`` 0, 1, 2; user-named types follow, see ``type_names``)."""


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
        type: ``int16 [E]`` index into ``type_names`` (0 forward, 1 backward, 2 reflexive).
        port, src_port: ``int32 [E]`` indices into ``strings`` (``port`` is -1 on self-loop types).
        strings: interned port names.
        type_names: the arrow type names (``ARROW_TYPES`` first, then user-named ones).
        delay: ``bool [E]``: delayed arrows (deliver at the next run of their type's phase).
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
    type_names: tuple[str, ...] = ARROW_TYPES
    delay: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))

    def type_mask(self, arrow_type: str, delayed: bool | None = None) -> np.ndarray:
        """``bool [E]``: the arrows of ``arrow_type`` (only the delayed / non-delayed ones if
        ``delayed`` is given)."""
        if arrow_type not in self.type_names:
            return np.zeros(len(self.src), bool)
        m = self.type == self.type_names.index(arrow_type)
        if delayed is not None:
            m &= self.delay == delayed
        return m

    def arrow_attrs(self, e: int) -> dict[str, Any]:
        """The networkx attributes of arrow ``e``: ``type``, ``port`` (``None`` on self-loop
        types), ``src_port``, and ``delay`` if it is delayed."""
        attrs: dict[str, Any] = {"type": self.type_names[self.type[e]],
                                 "port": None if self.port[e] < 0 else self.strings[self.port[e]],
                                 "src_port": self.strings[self.src_port[e]]}
        if self.delay[e]:
            attrs["delay"] = True
        return attrs


class Interner:
    """Numbers distinct values in order of first appearance.

    Example:
        >>> i = Interner(); i("a"), i("b"), i("a"), i.items
        (0, 1, 0, ['a', 'b'])
    """

    def __init__(self) -> None:
        self.items: list = []
        self.index: dict = {}

    def __call__(self, s) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.items)
            self.items.append(s)
        return i

    def copy(self) -> Interner:
        """An independent copy."""
        out = Interner()
        out.items, out.index = list(self.items), dict(self.index)
        return out


def assemble(columns: Columns, kinds: Mapping[str, Kind], schedule: Schedule) -> GraphArrays:
    """The :class:`GraphArrays` of a graph's ``columns`` (uncached; see :meth:`AgentGraph.arrays`).

    Concatenates the declaration chunks in place (so later calls are cheap), gives agents without
    a declared group their kind's name as group, and resolves ports left implicit to the
    destination kind's only port of that type (looked up in ``kinds``; ``schedule`` says which
    types are self-loop types, which have no ports).

    Raises:
        AgentGraphError: an implicit port whose destination kind has not exactly one port.
    """
    kind, group, slot = columns.agent_columns()
    src, dst, typ, port, sport, delay = columns.arrow_columns()
    names = columns.names
    type_names = columns.type_names()
    self_type = np.array([schedule.is_self(t) for t in type_names], bool)
    kind_names = columns.kind_names()
    # groups: declared ones, then kind names as defaults
    gidx = {gname: i for i, gname in enumerate(columns.group_names())}
    default = np.array([gidx.setdefault(k, len(gidx)) for k in kind_names], np.int32)
    group_names = sorted(gidx, key=gidx.get)
    group = np.where(group >= 0, group, default[kind] if len(kind) else group).astype(np.int32)
    # implicit ports: the destination kind's only port of that type
    missing = np.flatnonzero((port < 0) & ~self_type[typ])
    if len(missing):
        port = port.copy()
        combos = np.unique(np.stack([kind[dst[missing]], typ[missing]], 1), axis=0)
        for k, t in combos:
            ports = kinds[kind_names[k]].ports(type_names[t]) if kind_names[k] in kinds else {}
            sel = missing[(kind[dst[missing]] == k) & (typ[missing] == t)]
            if len(ports) != 1:
                e = int(sel[0])
                raise AgentGraphError(
                    f"Arrow {names[src[e]]!r} -> {names[dst[e]]!r} ({type_names[t]}) "
                    f"needs a port: kind {kind_names[k]!r} has {type_names[t]} ports "
                    f"{sorted(ports)}; pass port=..."
                )
            port[sel] = columns.port_code(next(iter(ports)))
        columns.set_ports(port)
    return GraphArrays(
        names=names, kind=kind, kind_names=kind_names, group=group,
        group_names=tuple(group_names), slot=slot, src=src, dst=dst, type=typ, port=port,
        src_port=sport, strings=columns.strings(), type_names=type_names, delay=delay,
    )


def edge_keys(a: GraphArrays) -> np.ndarray:
    """networkx keys: for each arrow, how many earlier arrows join the same two agents.

    Returns:
        ``int64 [E]``.

    Example:
        >>> a = GraphArrays(names=["x", "y"], kind=np.zeros(2, np.int32), kind_names=("relu",),
        ...                 group=np.zeros(2, np.int32), group_names=("relu",), slot=np.full(2, -1),
        ...                 src=np.array([0, 0, 1, 0]), dst=np.array([1, 1, 0, 1]),
        ...                 type=np.zeros(4, np.int8), port=np.zeros(4, np.int32),
        ...                 src_port=np.zeros(4, np.int32), strings=("x",))
        >>> edge_keys(a).tolist()
        [0, 1, 0, 2]
    """
    E = len(a.src)
    if E == 0:
        return np.zeros(0, np.int64)
    pair = a.src.astype(np.int64) * max(1, len(a.names)) + a.dst
    order = np.argsort(pair, kind="stable")
    sp = pair[order]
    first = np.r_[0, np.flatnonzero(sp[1:] != sp[:-1]) + 1]
    run_start = np.repeat(first, np.diff(np.r_[first, E]))
    keys = np.empty(E, np.int64)
    keys[order] = np.arange(E) - run_start
    return keys
