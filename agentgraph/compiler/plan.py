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

Each port of each block gets one *lowering*: the first entry of the table
:data:`agentgraph.compiler.lowerings.LOWERINGS` that applies (dense-block patterns, gather, pick,
sorted segment); dense blocks of linear kinds then become matrix products
(:mod:`agentgraph.compiler.linear`). :func:`make_plan` can also lower a graph into a padded
:class:`~agentgraph.compiler.buckets.Bucket` several graphs fit into.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from agentgraph.arrows.schedule import Schedule
from agentgraph.compiler.buffers import piecewise_types, windows
from agentgraph.compiler.conv import ConvLink, fuse_conv
from agentgraph.compiler.linear import LinearLink, OuterLink, fuse_linear
from agentgraph.compiler.analysis import analyse, block_edges, layout_sweep, self_sets
from agentgraph.compiler.lowerings import PortArrows, choose_lowering
from agentgraph.compiler.ties import TiePlan, skip_rows, tie_plans
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph

if TYPE_CHECKING:
    from agentgraph.compiler.buckets import Bucket

__all__ = ["AgentRows", "BlockPlan", "KindLayout", "Plan", "PortPlan", "ReflexPlan", "TiePlan", "make_plan"]


@dataclasses.dataclass(frozen=True)
class PortPlan:
    """How one port of one block receives its messages (see module docstring)."""

    port: str
    size: int
    aggregation: str
    lowering: str  # zeros | slice | repeat | tile | rows | strided | pool | unpool | matmul | gather | pick | segment
    base: int = 0  # first source row in the buffer (dense lowerings)
    param: int = 0  # r (repeat), p (tile), c (rows / strided / matmul), Wo (pool / unpool)
    key: str = ""  # array-part key prefix (segment lowering)
    n_edges: int = 0
    link: LinearLink | ConvLink | None = None  # matmul / conv / conv_t: the block it contracts (linear.py, conv.py)
    source: str = "now"  # now: this run's buffer; prev: the delayed one; both: [now; prev] stacked
    lo: int = 0  # index-array lowerings: the buffer rows lo..hi their indices point into (hi <= lo: anywhere)
    hi: int = 0
    kernel: int = 0  # pool / unpool: the window's side k


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
    dropped: tuple[str, ...] = ()  # outputs only matmul ports read: not computed
    outer: tuple[OuterLink, ...] = ()  # backward updates computed as outer products
    unwritten: tuple[str, ...] = ()  # scratch fields a fused outer update reads from the buffers instead
    conv: ConvLink | None = None  # a convolution's synapses: the kernel update is fused (compiler/conv.py)

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
    """The static part of a lowered graph (hashable).

    Attributes:
        kinds: one :class:`KindLayout` per kind.
        sweeps: ``((type, waves), ...)`` per sweep type of the schedule; waves are tuples of
            :class:`BlockPlan`.
        selfs: ``((type, (ReflexPlan, ...)), ...)`` per self-loop type.
        buffers: ``((type, size, rows), ...)``: the message buffers of each sweep type.
        loss_kinds: kinds with a loss field.
        schedule: the graph's :class:`~agentgraph.arrows.Schedule`.
        delayed: ``((type, size, rows), ...)``: buffers kept from one run of a type's phase to
            the next (read by delayed arrows); state ``["@delayed"]["type/size"]``.
        ties: one :class:`TiePlan` per (kind, field) with tied agents.
        absent: ``((kind, field), ...)``: scratch fields no block ever writes (every forward
            block of the kind reads a fused update's input from the buffers instead): not kept in
            the state at all (:func:`absent_fields`).
        piecewise: the sweep types whose messages are kept per block, not in one buffer
            (:mod:`agentgraph.compiler.buffers`).
    """

    kinds: tuple[KindLayout, ...]
    sweeps: tuple[tuple[str, tuple[tuple[BlockPlan, ...], ...]], ...]
    selfs: tuple[tuple[str, tuple[ReflexPlan, ...]], ...]
    buffers: tuple[tuple[str, int, int], ...]  # (type, size, rows)
    loss_kinds: tuple[str, ...]
    schedule: Schedule
    delayed: tuple[tuple[str, int, int], ...] = ()
    ties: tuple[TiePlan, ...] = ()
    absent: tuple[tuple[str, str], ...] = ()
    piecewise: tuple[str, ...] = ()

    def waves(self, arrow_type: str) -> tuple[tuple[BlockPlan, ...], ...]:
        """The waves of blocks of sweep type ``arrow_type`` (empty if none)."""
        return dict(self.sweeps).get(arrow_type, ())

    @property
    def forward(self) -> tuple[tuple[BlockPlan, ...], ...]:
        """The ``forward`` sweep's waves."""
        return self.waves("forward")

    @property
    def backward(self) -> tuple[tuple[BlockPlan, ...], ...]:
        """The ``backward`` sweep's waves."""
        return self.waves("backward")

    @property
    def reflexive(self) -> tuple[ReflexPlan, ...]:
        """The ``reflexive`` self-loop sets."""
        return dict(self.selfs).get("reflexive", ())


def make_plan(
    graph: AgentGraph, dense: bool = True, bucket: Bucket | None = None, linear: bool = True
) -> tuple[Plan, dict[str, np.ndarray], "AgentRows"]:
    """Lower a validated graph to ``(plan, arrays, rows)``.

    Args:
        graph: the agent graph (validated here).
        dense: allow the dense-block lowerings; ``False`` forces ``segment`` everywhere (used to
            test that both lowerings agree). Ignored with a bucket (always segment).
        linear: lower dense blocks of kinds that declare linear outputs or outer-product updates
            to matrix products (:mod:`agentgraph.compiler.linear`); needs ``dense``.
        bucket: lower into this padded structure (:func:`~agentgraph.compiler.make_bucket`) instead of the graph's
            exact one.

    Returns:
        ``plan`` (static, hashable), ``arrays`` (``{key: array}``) and ``rows``
        (:class:`AgentRows`: where each agent's state lives).

    Example:
        >>> from agentgraph import mlp
        >>> plan, arrays, rows = make_plan(mlp([2, 2, 1], loss="l2"))
        >>> [b.kind for b in plan.forward[1]]
        ['synapse']
    """
    an = analyse(graph)
    A = an.A
    N = len(A.names)
    schedule = graph.schedule
    sweep_types = schedule.sweep_types()
    padded = bucket is not None
    if padded:
        missing = sorted(set(A.kind_names) - set(bucket.kinds))
        if missing:
            raise AgentGraphError(f"Graph does not fit the bucket: kinds {missing} are not in it.")
        if bucket.schedule != schedule:
            raise AgentGraphError(f"Graph does not fit the bucket: it runs {schedule}, the bucket {bucket.schedule}.")
        cap_blocks = {t: {(w, k, g): c for w, k, g, c in dict(bucket.blocks).get(t, ())} for t in sweep_types}
        cap_ports = dict(bucket.ports)
        cap_rest = dict(bucket.rest)
        kinds_used = list(bucket.kinds)
        dense = False
    else:
        cap_blocks = {t: {key: len(v) for key, v in an.blocks[t].items()} for t in sweep_types}
        kinds_used = sorted(A.kind_names)
        cap_rest = {}
        for k in kinds_used:
            if an.layout_sweep[k] == "rest":
                cap_rest[k] = int(np.count_nonzero(A.kind == A.kind_names.index(k)))
        cap_ports = None
    for t in sweep_types:
        for key, agents in an.blocks[t].items():
            if len(agents) > cap_blocks[t].get(key, -1):
                raise AgentGraphError(
                    f"Graph does not fit the bucket: its {t} block {key} (wave, kind, group) has "
                    f"{len(agents)} agents, the bucket {cap_blocks[t].get(key, 0)}. Build the bucket "
                    "from this graph too (make_bucket([...]))."
                )

    # -- layout: each kind's rows are its layout sweep's blocks, in (wave, group) order ---------
    row = np.full(N, -1, np.int64)
    n_of: dict[str, int] = {}
    block_start: dict[tuple, int] = {}
    for k in kinds_used:
        ls = layout_sweep(graph.kinds[k], sweep_types)
        start = 0
        if ls == "rest":
            members = np.flatnonzero(A.kind == A.kind_names.index(k)) if k in A.kind_names else np.zeros(0, np.int64)
            row[members] = np.arange(len(members))
            start = cap_rest.get(k, len(members))
        else:
            for key in sorted(b for b in cap_blocks[ls] if b[1] == k):
                block_start[(ls, *key)] = start
                agents = an.blocks[ls].get(key, np.zeros(0, np.int64))
                row[agents] = start + np.arange(len(agents))
                start += cap_blocks[ls][key]
        n_of[k] = start
    layouts = tuple(KindLayout(k, n_of[k]) for k in kinds_used)
    rows = AgentRows(A.names, A.kind_names, A.kind, row)

    arrays: dict[str, np.ndarray] = {}

    def put(key: str, arr, dtype=np.int32) -> str:
        arrays[key] = np.asarray(arr, dtype=dtype)
        return key

    # -- message buffers: per sweep and size, one row range per (kind, output); +1 zero row ------
    base: dict[tuple[str, str, str], int] = {}
    buffers = []
    for t in sweep_types:
        sizes: dict[int, int] = {}
        for k in kinds_used:
            kd = graph.kinds[k]
            if not kd.runs(t):
                continue
            for o, size in kd.outputs(t).items():
                base[(t, k, o)] = sizes.get(size, 0)
                sizes[size] = sizes.get(size, 0) + n_of[k]
        buffers += [(t, s, r + (1 if padded else 0)) for s, r in sorted(sizes.items())]

    # -- blocks per sweep -----------------------------------------------------------------------
    buffer_rows = {(t, s): r for t, s, r in buffers}
    delayed: set = set()
    sweeps = {}
    for t in sweep_types:
        edges = block_edges(an, t)
        # buffer row of output o of agent a: out_base[kind of a, o] + row[a]
        out_base = np.zeros((len(A.kind_names), len(A.strings)), np.int64)
        for (tt, k2, o2), v in base.items():
            if tt == t and k2 in A.kind_names and o2 in A.strings:
                out_base[A.kind_names.index(k2), A.strings.index(o2)] = v
        result_waves: dict[int, list[BlockPlan]] = {}
        for key in sorted(cap_blocks[t]):
            w, kname, gname = key
            kd = graph.kinds[kname]
            cap = cap_blocks[t][key]
            agents = an.blocks[t].get(key, np.zeros(0, np.int64))
            n = len(agents)
            tag = f"{t}/{w}/{kname}/{gname}"
            rws = row[agents]
            if (t, *key) in block_start:
                start, rows_key = block_start[(t, *key)], ""
            elif not padded and n and rws[-1] - rws[0] == n - 1:
                start, rows_key = int(rws[0]), ""
            else:  # scattered rows; padding rows point past the end (dropped / clipped)
                start = 0
                rows_key = put(tag + "/rows", np.r_[rws, np.full(cap - n, n_of[kname])])
            ports = []
            for p, spec in kd.ports(t).items():
                src, sport, d_loc, dl = edges.get((key, p), (np.zeros(0, np.int64),) * 3 + (np.zeros(0, bool),))
                src_row = out_base[A.kind[src], sport] + row[src] if len(src) else np.zeros(0, np.int64)
                source = "now"
                if dl.any():  # delayed arrows read the previous run's buffer (stacked after this run's)
                    source = "prev" if dl.all() else "both"
                    if source == "both":
                        src_row = src_row + np.where(dl, buffer_rows[(t, spec.size)], 0)
                    delayed.add((t, spec.size))
                if len(src):
                    o2 = np.lexsort((src_row, d_loc))
                    src_row, d_loc = src_row[o2], d_loc[o2]
                if padded:
                    ecap = cap_ports.get((t, *key, p), 0)
                    if len(src_row) > ecap:
                        raise AgentGraphError(
                            f"Graph does not fit the bucket: port {p!r} of {t} block {key} receives "
                            f"{len(src_row)} arrows, the bucket has room for {ecap}."
                        )
                    if ecap == 0:
                        ports.append(PortPlan(p, spec.size, spec.aggregation, "zeros"))
                        continue
                    key_p = f"{tag}/{p}"
                    put(key_p + "/src", np.r_[src_row, np.zeros(ecap - len(src_row), np.int64)])
                    put(key_p + "/dst", np.r_[d_loc, np.full(ecap - len(src_row), cap)])
                    ports.append(PortPlan(p, spec.size, spec.aggregation, "segment", 0, 0, key_p, ecap, source=source))
                    continue
                low, m = choose_lowering(PortArrows(src_row, d_loc, n, p in kd.premaps(t), dense))
                key_p = f"{tag}/{p}" if m.arrays else ""
                for name, arr in m.arrays.items():
                    put(f"{key_p}/{name}", arr)
                b0, prm = m.base, m.param
                ports.append(PortPlan(p, spec.size, spec.aggregation, low, b0, prm, key_p, len(src_row), source=source,
                                      kernel=m.kernel))
            slots_key = ""
            if kd.external is not None and "data" in kd.ports(t):
                slots_key = put(tag + "/slots", np.r_[A.slot[agents], np.zeros(cap - n, np.int64)])
            outs = tuple((o, sz, base[(t, kname, o)]) for o, sz in kd.outputs(t).items())
            result_waves.setdefault(w, []).append(
                BlockPlan(kname, gname, int(start), int(start) + cap, rows_key, tuple(ports), outs, slots_key)
            )
        sweeps[t] = tuple(tuple(result_waves[w]) for w in sorted(result_waves))
    ties = tie_plans(graph, A, row, n_of, put) if len(graph.ties()) else ()
    if ties and padded:
        raise AgentGraphError("Graph does not fit a bucket: it has tied parameters (graph.ties()), which buckets do "
                              "not lower; compile it on its own (compile(graph)).")
    if dense and linear and not padded and not A.delay.any():
        slots = {(tp.kind, tp.field): np.asarray(arrays[tp.key], np.int64) for tp in ties}
        sweeps, _, shifts = fuse_conv(graph, A, row, sweeps, base, arrays, slots)
        sweeps, rows_of = fuse_linear(graph.kinds, sweeps, base, arrays, {(t, s): r for t, s, r in buffers}, shifts)
        buffers = [(t, s, rows_of[(t, s)]) for t, s, _ in buffers]
        ties = skip_rows(ties, sweeps, arrays)
    if not padded:
        sweeps = {t: windows(waves, arrays) for t, waves in sweeps.items()}
    piecewise = piecewise_types(sweeps.items(), {t for t, _ in delayed}, padded, arrays)

    # -- self-loop types (reflexive arrows) -------------------------------------------------------
    selfs = []
    for t in schedule.self_types():
        reflex = []
        sets = self_sets(A, t)
        if padded:
            caps = {(k, g, r): c for tt, k, g, r, c in bucket.selfs if tt == t}
        else:
            caps = {key: len(v) for key, v in sets.items()}
        for (kname, gname, r), cap in sorted(caps.items()):
            agents = sets.get((kname, gname, r), np.zeros(0, np.int64))
            if len(agents) > cap:
                raise AgentGraphError(
                    f"Graph does not fit the bucket: {len(agents)} agents of kind {kname!r}, group "
                    f"{gname!r} have {r} {t} arrows; the bucket has room for {cap}."
                )
            key = put(f"{t}/{kname}/{gname}/{r}", np.r_[np.sort(row[agents]), np.full(cap - len(agents), n_of[kname])])
            reflex.append(ReflexPlan(kname, gname, key, int(r)))
        selfs.append((t, tuple(reflex)))

    loss_kinds = tuple(k for k in kinds_used if graph.kinds[k].loss_field is not None)
    if padded:
        for k in loss_kinds:
            valid = np.zeros(n_of[k])
            if k in A.kind_names:
                valid[row[A.kind == A.kind_names.index(k)]] = 1.0
            put(f"valid/{k}", valid, dtype=np.float32)

    plan = Plan(
        kinds=layouts,
        sweeps=tuple((t, sweeps[t]) for t in sweep_types),
        selfs=tuple(selfs),
        buffers=tuple(buffers),
        loss_kinds=loss_kinds,
        schedule=schedule,
        delayed=tuple((t, s, buffer_rows[(t, s)]) for t, s in sorted(delayed)),
        ties=ties,
        absent=absent_fields(graph, sweeps, selfs),
        piecewise=piecewise,
    )
    return plan, arrays, rows


def absent_fields(graph: AgentGraph, sweeps: dict, selfs) -> tuple[tuple[str, str], ...]:
    """The scratch fields (:class:`~agentgraph.nodes.Field`) no block writes: every forward block
    of the kind lists the field in ``unwritten``, and the kind has no self-loop sets. Their value
    between steps is unspecified by contract, so the state need not hold them. The kind may run in
    user-named sweeps too (predictive coding's relays on ``pc_infer``): by the scratch contract
    only the forward sweep writes the field and only the fused update reads it.

    Example:
        >>> from agentgraph import mlp
        >>> plan, _, _ = make_plan(mlp([3, 4, 2]))
        >>> plan.absent
        (('synapse', 'x'),)
    """
    out = []
    in_selfs = {rp.kind for _, sets in selfs for rp in sets}
    for kname, kd in sorted(graph.kinds.items()):
        forward = [b for w in sweeps.get("forward", ()) for b in w if b.kind == kname]
        if kname in in_selfs or not forward:
            continue
        for f, spec in kd.fields.items():
            if spec.scratch and all(f in b.unwritten for b in forward):
                out.append((kname, f))
    return tuple(out)


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
