"""Lowering plan: agent numbering, waves, blocks and per-port gather/aggregate lowerings.

Everything here is NumPy over edge arrays — no per-agent Python work in the lowering itself
beyond reading the graph once. The plan has two parts:

* a **static part** (hashable dataclasses of ints and strings): kinds, blocks, which lowering
  each port uses. Two graphs with equal static parts share one compiled executable.
* an **array part** (``{name: np.ndarray}``): index arrays of the generic segment lowering and of
  scattered blocks; these become pytree leaves of the :class:`~agentgraph.compiler.Program`.

Numbering: the agents of each kind are numbered by ``(forward wave, group, backward wave,
declaration order)``, so each forward block ``(kind, wave, group)`` is a contiguous slice of the
kind's state arrays (and, for layered networks, so is each backward block).

Message buffers: per sweep and message size ``d``, one buffer ``[M_d, B, d]`` holds every output of
that size; output ``o`` of kind ``k`` occupies rows ``base(k, o) + agent row``.

Port lowerings (checked in this order on the arrows into one block's port, sorted by
destination; ``n`` destinations, ``c`` arrows each when the fan-in is uniform):

``zeros``   no arrows;
``slice``   c == 1 and src = base + arange(n);
``repeat``  c == 1 and src = base + arange(n) // r (each source feeds r consecutive agents);
``tile``    c == 1 and src = base + arange(n) % p;
``rows``    src = base + dst * c + arange(c): a contiguous ``[n, c]`` block, reduced over axis 1;
``strided`` src = base + arange(c) * n + dst: a ``[c, n]`` block, reduced over axis 0;
``segment`` anything else: gather ``buffer[src]`` then a sorted segment reduction.

The first six are the *dense-block* lowering — a complete bipartite synapse layer becomes
broadcasts and reductions over reshaped slices, as a hand-written implementation would do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

import numpy as np

from agentgraph.arrows.types import ARROW_TYPES
from agentgraph.compiler.waves import generations
from agentgraph.graph import AgentGraph

__all__ = ["AgentRows", "BlockPlan", "KindLayout", "Plan", "PortPlan", "ReflexPlan", "make_plan"]


@dataclasses.dataclass(frozen=True)
class PortPlan:
    """How one port of one block receives its messages (see module docstring)."""

    port: str
    size: int
    aggregation: str
    lowering: str  # zeros | slice | repeat | tile | rows | strided | segment
    base: int = 0  # first source row in the buffer (dense lowerings)
    param: int = 0  # r (repeat), p (tile), c (rows / strided)
    key: str = ""  # array-part key prefix (segment lowering)
    n_edges: int = 0


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """One batched call of a kind's function: agents ``rows`` of ``kind`` in one wave and group."""

    kind: str
    group: str
    start: int  # rows start..stop of the kind's arrays when contiguous
    stop: int
    rows_key: str  # "" when contiguous, else array-part key of the row indices
    ports: tuple[PortPlan, ...]
    outputs: tuple[tuple[str, int, int], ...]  # (output name, size, buffer base of the kind)
    slots_key: str = ""  # external kinds: array-part key of the batch columns

    @property
    def n(self) -> int:
        return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class ReflexPlan:
    """Agents of one kind and group with the same number of reflexive arrows."""

    kind: str
    group: str
    rows_key: str
    repeats: int


@dataclasses.dataclass(frozen=True)
class KindLayout:
    """How many agents of a kind there are and where its outputs live in each sweep's buffers."""

    kind: str
    n: int


@dataclasses.dataclass(frozen=True)
class Plan:
    """The static part of a lowered graph (hashable)."""

    kinds: tuple[KindLayout, ...]
    forward: tuple[tuple[BlockPlan, ...], ...]  # waves
    backward: tuple[tuple[BlockPlan, ...], ...]
    reflexive: tuple[ReflexPlan, ...]
    buffers: tuple[tuple[str, int, int], ...]  # (sweep, size, rows)
    loss_kinds: tuple[str, ...]


def _port_lowering(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[str, int, int]:
    """Classify arrows (sorted by dst, dst in 0..n-1) into a dense pattern, or 'segment'."""
    E = len(src)
    if E == 0:
        return "zeros", 0, 0
    if E % n == 0:
        c = E // n
        if np.array_equal(dst, np.repeat(np.arange(n), c)):
            base = int(src.min())
            ar = np.arange(n)
            if c == 1:
                if np.array_equal(src, base + ar):
                    return "slice", base, 1
                for r in range(2, n + 1):
                    if n % r == 0 and np.array_equal(src, base + ar // r):
                        return "repeat", base, r
                    if src[r - 1] != base:
                        break
                p = int(src.max()) - base + 1
                if p < n and n % p == 0 and np.array_equal(src, base + ar % p):
                    return "tile", base, p
            rows = base + (ar[:, None] * c + np.arange(c)[None, :]).reshape(-1)
            if np.array_equal(src, rows):
                return "rows", base, c
            strided = base + (np.arange(c)[None, :] * n + ar[:, None]).reshape(-1)
            if np.array_equal(src, strided):
                return "strided", base, c
    return "segment", 0, 0


def make_plan(graph: AgentGraph, dense: bool = True) -> tuple[Plan, dict[str, np.ndarray], "AgentRows"]:
    """Lower a validated graph to ``(plan, arrays, rows)``.

    Args:
        graph: the agent graph (validated here).
        dense: allow the dense-block lowerings; ``False`` forces ``segment`` everywhere (used to
            test that both lowerings agree).

    Returns:
        ``plan`` (static, hashable), ``arrays`` (``{key: int32 array}``) and ``rows``
        (:class:`AgentRows`: where each agent's state lives).

    Example:
        >>> from agentgraph import mlp
        >>> plan, arrays, rows = make_plan(mlp([2, 2, 1], loss="l2"))
        >>> [b.kind for b in plan.forward[1]]
        ['synapse']
    """
    graph.validate()
    A = graph.arrays()
    N = len(A.names)
    K = len(A.kind_names)
    kinds_used = sorted(A.kind_names)
    kid = {k: A.kind_names.index(k) for k in kinds_used}
    type_id = {t: i for i, t in enumerate(ARROW_TYPES)}

    waves = {}
    for t in ("forward", "backward"):
        m = A.type == type_id[t]
        waves[t] = generations(N, A.src[m], A.dst[m])

    # -- numbering: per kind, by (forward wave, group, backward wave, declaration order) ----------
    row = np.zeros(N, dtype=np.int64)
    order = np.lexsort((np.arange(N), waves["backward"], A.group, waves["forward"], A.kind))
    kind_sorted = A.kind[order]
    first_of_kind = np.searchsorted(kind_sorted, np.arange(K + 1))
    row[order] = np.arange(N) - first_of_kind[kind_sorted]
    n_of = {k: int(first_of_kind[kid[k] + 1] - first_of_kind[kid[k]]) for k in kinds_used}
    layouts = tuple(KindLayout(k, n_of[k]) for k in kinds_used)
    rows = AgentRows(A.names, A.kind_names, A.kind, row)

    arrays: dict[str, np.ndarray] = {}

    def put(key: str, arr) -> str:
        arrays[key] = np.asarray(arr, dtype=np.int32)
        return key

    # -- buffers: per sweep and size, one row range per (kind, output) ------------------------
    base: dict[tuple[str, str, str], int] = {}
    buffers = []
    for t in ("forward", "backward"):
        sizes: dict[int, int] = {}
        for k in kinds_used:
            kd = graph.kinds[k]
            if not kd.runs(t):
                continue
            for o, size in kd.outputs(t).items():
                base[(t, k, o)] = sizes.get(size, 0)
                sizes[size] = sizes.get(size, 0) + n_of[k]
        buffers += [(t, s, r) for s, r in sorted(sizes.items())]

    # -- blocks per sweep -----------------------------------------------------------------------
    sweeps = {}
    for t in ("forward", "backward"):
        runs = np.array([graph.kinds[k].runs(t) for k in A.kind_names], bool)
        active = np.flatnonzero(runs[A.kind]) if N else np.zeros(0, np.int64)
        wv = waves[t]
        # block of every active agent: (wave, kind, group); agents within a block by row
        border = active[np.lexsort((row[active], A.group[active], A.kind[active], wv[active]))]
        bkey = np.stack([wv[border], A.kind[border], A.group[border]], 1)
        cut = np.r_[0, np.flatnonzero(np.any(bkey[1:] != bkey[:-1], axis=1)) + 1, len(border)]
        block_of = np.full(N, -1, np.int64)
        local = np.full(N, -1, np.int64)
        for b in range(len(cut) - 1):
            block_of[border[cut[b]:cut[b + 1]]] = b
            local[border[cut[b]:cut[b + 1]]] = np.arange(cut[b + 1] - cut[b])
        # arrows of this sweep, with their source's row in the message buffer
        m = np.flatnonzero(A.type == type_id[t])
        e_src, e_dst, e_port, e_sport = A.src[m], A.dst[m], A.port[m], A.src_port[m]
        out_base = np.zeros((K, len(A.strings)), np.int64)
        for (tt, k, o), v in base.items():
            if tt == t and o in A.strings:
                out_base[kid[k], A.strings.index(o)] = v
        src_row = out_base[A.kind[e_src], e_sport] + row[e_src]
        eb, el = block_of[e_dst], local[e_dst]
        eorder = np.lexsort((src_row, el, e_port, eb))
        eb, el, ep, es = eb[eorder], el[eorder], e_port[eorder], src_row[eorder]
        result_waves: list[list[BlockPlan]] = []
        for b in range(len(cut) - 1):
            agents = border[cut[b]:cut[b + 1]]
            w, k, g = (int(x) for x in bkey[cut[b]])
            kname, gname = A.kind_names[k], A.group_names[g]
            kd = graph.kinds[kname]
            rws = row[agents]
            n = len(agents)
            tag = f"{t}/{w}/{kname}/{gname}"
            contiguous = bool(rws[-1] - rws[0] == n - 1)
            rows_key = "" if contiguous else put(tag + "/rows", rws)
            lo, hi = np.searchsorted(eb, [b, b + 1])
            ports = []
            for p, spec in kd.ports(t).items():
                pid = A.strings.index(p) if p in A.strings else -2
                plo = lo + np.searchsorted(ep[lo:hi], pid)
                phi = lo + np.searchsorted(ep[lo:hi], pid, side="right")
                s_sorted, d_sorted = es[plo:phi], el[plo:phi]
                if not dense:
                    low, b0, prm = ("zeros", 0, 0) if phi == plo else ("segment", 0, 0)
                else:
                    low, b0, prm = _port_lowering(s_sorted, d_sorted, n)
                key = ""
                if low == "segment":
                    key = f"{tag}/{p}"
                    put(key + "/src", s_sorted)
                    put(key + "/dst", d_sorted)
                ports.append(PortPlan(p, spec.size, spec.aggregation, low, b0, prm, key, int(phi - plo)))
            slots_key = ""
            if t == "forward" and kd.external is not None:
                slots_key = put(tag + "/slots", A.slot[agents])
            outs = tuple((o, sz, base[(t, kname, o)]) for o, sz in kd.outputs(t).items())
            while len(result_waves) <= w:
                result_waves.append([])
            result_waves[w].append(
                BlockPlan(kname, gname, int(rws[0]), int(rws[0]) + n, rows_key, tuple(ports), outs, slots_key)
            )
        sweeps[t] = tuple(tuple(wv_) for wv_ in result_waves if wv_)

    # -- reflexive arrows -------------------------------------------------------------------------
    reflex = []
    m = A.type == type_id["reflexive"]
    if m.any():
        counts = np.bincount(A.src[m], minlength=N)
        has = np.flatnonzero(counts)
        combos = np.unique(np.stack([A.kind[has], A.group[has], counts[has]], 1), axis=0)
        for k, g, r in combos:
            agents = has[(A.kind[has] == k) & (A.group[has] == g) & (counts[has] == r)]
            kname, gname = A.kind_names[k], A.group_names[g]
            key = put(f"reflexive/{kname}/{gname}/{r}", np.sort(row[agents]))
            reflex.append(ReflexPlan(kname, gname, key, int(r)))

    plan = Plan(
        kinds=layouts,
        forward=sweeps["forward"],
        backward=sweeps["backward"],
        reflexive=tuple(reflex),
        buffers=tuple(buffers),
        loss_kinds=tuple(k for k in kinds_used if graph.kinds[k].loss_field is not None),
    )
    return plan, arrays, rows


@dataclasses.dataclass(frozen=True, eq=False)
class AgentRows:
    """Where each agent's state lives in a compiled program: agent ``i`` (declaration order) is
    row ``row[i]`` of kind ``kind_names[kind[i]]``."""

    names: list
    kind_names: tuple[str, ...]
    kind: np.ndarray
    row: np.ndarray

    def as_dict(self) -> dict:
        """``{agent: (kind, row)}``."""
        return {a: (self.kind_names[k], int(r)) for a, k, r in zip(self.names, self.kind.tolist(), self.row)}
