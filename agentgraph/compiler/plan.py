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

import networkx as nx
import numpy as np

from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph

__all__ = ["PortPlan", "BlockPlan", "ReflexPlan", "KindLayout", "Plan", "make_plan"]


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


def _generations(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Topological generation of every node 0..n-1 of the DAG (src -> dst); vectorised Kahn."""
    gen = np.zeros(n, dtype=np.int64)
    if len(src) == 0:
        return gen
    indeg = np.bincount(dst, minlength=n)
    order = np.argsort(src, kind="stable")
    s_sorted, d_sorted = src[order], dst[order]
    starts = np.searchsorted(s_sorted, np.arange(n + 1))
    frontier = np.flatnonzero(indeg == 0)
    level = 0
    seen = 0
    while len(frontier):
        gen[frontier] = level
        seen += len(frontier)
        lo, hi = starts[frontier], starts[frontier + 1]
        idx = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(frontier) else np.zeros(0, int)
        targets = d_sorted[idx]
        np.subtract.at(indeg, targets, 1)
        cand = np.unique(targets)
        frontier = cand[indeg[cand] == 0]
        level += 1
    if seen != n:  # validate() rules this out; kept as a guard against a hang
        raise AgentGraphError("cycle detected while lowering; call graph.validate() for details")
    return gen


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


def make_plan(graph: AgentGraph, dense: bool = True) -> tuple[Plan, dict[str, np.ndarray], dict]:
    """Lower a validated graph to ``(plan, arrays, index)``.

    Args:
        graph: the agent graph (validated here).
        dense: allow the dense-block lowerings; ``False`` forces ``segment`` everywhere (used to
            test that both lowerings agree).

    Returns:
        ``plan`` (static, hashable), ``arrays`` (``{key: int32 array}``) and ``index``: ``{agent:
        (kind, row)}`` — where each agent's state lives.
    """
    graph.validate()
    G = graph.nx
    names = list(G.nodes)
    pos = {a: i for i, a in enumerate(names)}
    N = len(names)
    kind_names = np.array([G.nodes[a]["kind"] for a in names], dtype=object)
    group_names = np.array([G.nodes[a].get("group") or G.nodes[a]["kind"] for a in names], dtype=object)

    edges = graph.arrows()
    e_src = np.array([pos[s] for s, _, _, _ in edges], dtype=np.int64)
    e_dst = np.array([pos[d] for _, d, _, _ in edges], dtype=np.int64)
    e_type = np.array([a["type"] for *_, a in edges], dtype=object)
    e_port = np.array([a.get("port") or "" for *_, a in edges], dtype=object)
    e_sport = np.array([a.get("src_port", "out") for *_, a in edges], dtype=object)

    waves = {}
    for t in ("forward", "backward"):
        m = e_type == t
        waves[t] = _generations(N, e_src[m], e_dst[m])

    kinds_used = sorted(set(kind_names.tolist()))
    # -- numbering: per kind, by (forward wave, group, backward wave, declaration order) ----------
    row = np.zeros(N, dtype=np.int64)
    layouts = []
    for k in kinds_used:
        members = np.flatnonzero(kind_names == k)
        grp = group_names[members].astype(str)
        order = np.lexsort((members, waves["backward"][members], grp, waves["forward"][members]))
        row[members[order]] = np.arange(len(members))
        layouts.append(KindLayout(k, len(members)))
    n_of = {l.kind: l.n for l in layouts}
    index = {a: (kind_names[i], int(row[i])) for i, a in enumerate(names)}

    arrays: dict[str, np.ndarray] = {}

    def put(key: str, arr: np.ndarray) -> str:
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
        m = e_type == t
        t_src, t_dst, t_port, t_sport = e_src[m], e_dst[m], e_port[m], e_sport[m]
        # global buffer row of each arrow's source
        src_kind = kind_names[t_src]
        src_row = np.array(
            [base[(t, k, o)] for k, o in zip(src_kind, t_sport)], dtype=np.int64
        ) + row[t_src] if len(t_src) else np.zeros(0, np.int64)
        runs = np.array([graph.kinds[k].runs(t) for k in kind_names], dtype=bool)
        wv = waves[t]
        result_waves = []
        for w in range(int(wv.max()) + 1 if N else 0):
            blocks = []
            for k in kinds_used:
                kd = graph.kinds[k]
                if not kd.runs(t):
                    continue
                sel = np.flatnonzero((kind_names == k) & (wv == w) & runs)
                if len(sel) == 0:
                    continue
                for gname in sorted(set(group_names[sel].astype(str))):
                    agents = sel[group_names[sel].astype(str) == gname]
                    agents = agents[np.argsort(row[agents], kind="stable")]
                    rws = row[agents]
                    n = len(agents)
                    tag = f"{t}/{w}/{k}/{gname}"
                    contiguous = np.array_equal(rws, rws[0] + np.arange(n))
                    rows_key = "" if contiguous else put(tag + "/rows", rws)
                    local = np.full(N, -1, dtype=np.int64)
                    local[agents] = np.arange(n)
                    into = np.flatnonzero(local[t_dst] >= 0) if len(t_dst) else np.zeros(0, np.int64)
                    ports = []
                    for p, spec in kd.ports(t).items():
                        e = into[t_port[into] == p]
                        d_loc = local[t_dst[e]]
                        order = np.lexsort((src_row[e], d_loc))
                        s_sorted, d_sorted = src_row[e][order], d_loc[order]
                        low, b0, prm = _port_lowering(s_sorted, d_sorted, n) if dense else (
                            ("zeros", 0, 0) if len(e) == 0 else ("segment", 0, 0)
                        )
                        key = ""
                        if low == "segment":
                            key = f"{tag}/{p}"
                            put(key + "/src", s_sorted)
                            put(key + "/dst", d_sorted)
                        ports.append(PortPlan(p, spec.size, spec.aggregation, low, b0, prm, key, len(e)))
                    slots_key = ""
                    if t == "forward" and kd.external is not None:
                        slots_key = put(tag + "/slots", [G.nodes[names[i]]["slot"] for i in agents])
                    outs = tuple((o, s, base[(t, k, o)]) for o, s in kd.outputs(t).items())
                    blocks.append(BlockPlan(k, gname, int(rws[0]), int(rws[0]) + n, rows_key,
                                            tuple(ports), outs, slots_key))
            if blocks:
                result_waves.append(tuple(blocks))
        sweeps[t] = tuple(result_waves)

    # -- reflexive arrows -------------------------------------------------------------------------
    reflex = []
    m = e_type == "reflexive"
    if m.any():
        counts = np.bincount(e_src[m], minlength=N)
        for k in kinds_used:
            for gname in sorted(set(group_names[kind_names == k].astype(str))):
                for r in sorted(set(counts[(kind_names == k) & (group_names == gname)].tolist()) - {0}):
                    agents = np.flatnonzero((kind_names == k) & (group_names == gname) & (counts == r))
                    key = put(f"reflexive/{k}/{gname}/{r}", np.sort(row[agents]))
                    reflex.append(ReflexPlan(k, gname, key, int(r)))

    plan = Plan(
        kinds=tuple(layouts),
        forward=sweeps["forward"],
        backward=sweeps["backward"],
        reflexive=tuple(reflex),
        buffers=tuple(buffers),
        loss_kinds=tuple(k for k in kinds_used if graph.kinds[k].loss_field is not None),
    )
    return plan, arrays, index
