"""Tied fields in a compiled program (:mod:`agentgraph.graph.ties`): stored once per tie.

Compile time (:func:`tie_plans`): per (kind, field) with tied agents, a :class:`TiePlan` whose
slot array numbers the ties first, then one slot per untied agent. Trace time, within one step:
:func:`expand_ties` turns each tied field's shared values ``[slots, ...]`` into one row per agent,
every phase works on the rows as for untied agents, and :func:`join_ties` reduces the rows'
changes into the shared values after each phase (sum, or mean for ``"mean"`` ties).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from agentgraph.compiler.plan import Plan
    from agentgraph.graph import AgentGraph

__all__ = ["TiePlan", "expand_ties", "join_ties", "skip_rows", "tie_plans"]


@dataclasses.dataclass(frozen=True)
class TiePlan:
    """A per-agent field of a kind some of whose agents are tied (:mod:`agentgraph.graph.ties`):
    stored once per tie, ``[slots, *shape]`` — the ties first, then one slot per untied agent.
    ``arrays[key]`` (``int32 [N_kind]``) is each row's slot; with ``scaled``,
    ``arrays[key + "/scale"]`` (``[slots]``) divides a ``"mean"`` tie's summed change by its
    member count. With ``live``, only the rows in ``ranges`` are expanded and joined (their
    slots: ``arrays[key + "/live"]``): the others are uses of a convolution
    (:mod:`agentgraph.compiler.conv`), whose kernel update reaches the shared values directly and
    whose rows nothing reads; they are zeros, concatenated around the live ranges (so a block's
    slice of live rows reads one operand, and no array of every use is built)."""

    kind: str
    field: str
    slots: int
    key: str
    scaled: bool = False
    live: bool = False  # only rows arrays[key + "/live"] are expanded (the rest: convolutions' uses)
    ranges: tuple[tuple[int, int], ...] = ()  # live: the live rows as contiguous ranges (rows N_kind in all)


def tie_plans(graph: AgentGraph, A, row: np.ndarray, n_of: dict[str, int], put) -> tuple[TiePlan, ...]:
    """One :class:`TiePlan` per (kind, field) with ties (``A``: the graph's arrays; ``row``: each
    agent's row in its kind; ``n_of``: rows per kind); their slot (and scale) arrays are stored via
    ``put(key, array, dtype=...)``."""
    ties = graph.ties()
    lead = ties.agent[ties.offsets[:-1]]
    out = []
    for kname, f in sorted({(A.kind_names[A.kind[lead[t]]], ties.fields[t]) for t in range(len(ties))}):
        mine = np.array([A.kind_names[A.kind[lead[t]]] == kname and ties.fields[t] == f for t in range(len(ties))])
        local = np.cumsum(mine) - 1  # tie -> its slot among this (kind, field)'s ties
        m = mine[ties.tie]
        slot = np.full(n_of[kname], -1, np.int64)
        slot[row[ties.agent[m]]] = local[ties.tie[m]]
        n_ties = int(mine.sum())
        free = slot < 0
        slot[free] = n_ties + np.arange(int(free.sum()))
        key = put(f"tie/{kname}/{f}", slot)
        means = [t for t in np.flatnonzero(mine) if ties.reductions[t] == "mean"]
        if means:
            scale = np.ones(int(slot.max()) + 1 if len(slot) else 0)
            counts = np.bincount(slot, minlength=len(scale))
            for t in means:
                scale[local[t]] = 1.0 / counts[local[t]]
            put(key + "/scale", scale, dtype=np.float64)
        out.append(TiePlan(kname, f, int(slot.max()) + 1 if len(slot) else 0, key, bool(means)))
    return tuple(out)



def skip_rows(ties: tuple[TiePlan, ...], sweeps, arrays: dict) -> tuple[TiePlan, ...]:
    """``ties`` with the rows of convolutions' synapse blocks (those of ``sweeps`` that carry a
    :class:`~agentgraph.compiler.conv.ConvLink`) left out of expansion: the others are stored as
    ``arrays[key + "/live"]`` and the plan marked ``live``."""
    skip: dict = {}
    for waves in sweeps.values():
        for wave in waves:
            for b in wave:
                if getattr(b, "conv", None) is not None:
                    skip.setdefault((b.kind, b.conv.field), []).append((b.start, b.stop))
    out = []
    for tp in ties:
        ranges = skip.get((tp.kind, tp.field))
        if ranges:
            slot = np.asarray(arrays[tp.key])
            keep = np.ones(len(slot), bool)
            for lo, hi in ranges:
                keep[lo:hi] = False
            live = np.flatnonzero(keep)
            arrays[tp.key + "/live"] = slot[live].astype(np.int32)
            cuts = np.flatnonzero(np.diff(live) != 1) + 1
            spans = tuple((int(r[0]), int(r[-1]) + 1) for r in np.split(live, cuts) if len(r))
            tp = dataclasses.replace(tp, live=True, ranges=spans + ((len(slot), len(slot)),))
        out.append(tp)
    return tuple(out)


def _assemble(tp: TiePlan, live_rows, like):
    """Rows ``[N_kind, ...]``: ``live_rows`` (``[len(live), ...]``, in row order) at the live
    ranges, zeros between (one concatenation)."""
    parts, at, taken = [], 0, 0
    for lo, hi in tp.ranges:
        if lo > at:
            parts.append(jnp.zeros((lo - at, *like.shape[1:]), like.dtype))
        if hi > lo:
            parts.append(live_rows[taken:taken + hi - lo])
        taken += hi - lo
        at = hi
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _live(tp: TiePlan, rows):
    """The live rows of ``rows [N_kind, ...]``, in row order."""
    parts = [rows[lo:hi] for lo, hi in tp.ranges if hi > lo]
    return rows[:0] if not parts else parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def expand_ties(plan: Plan, arrays, state) -> dict:
    """Replace each tied field's shared values ``[slots, ...]`` in ``state`` by one row per agent
    ``[N_kind, ...]`` (in place; rows outside ``live`` are zeros); returns the shared values
    ``{(kind, field): [slots, ...]}``."""
    shared = {}
    for tp in plan.ties:
        compact = state[tp.kind][tp.field]
        shared[(tp.kind, tp.field)] = compact
        if tp.live:
            state[tp.kind][tp.field] = _assemble(tp, compact[arrays[tp.key + "/live"]], compact)
        else:
            state[tp.kind][tp.field] = compact[arrays[tp.key]]
    return shared


def join_ties(plan: Plan, arrays, state, shared: dict, ran, pending: dict | None = None) -> None:
    """End of a phase (in place): each tie's shared value moves by the sum (``"mean"`` ties: the
    mean) of its rows' changes from it, plus any ``pending[(kind, field)]`` ``[(slots, change)]``
    (convolutions' kernel updates, already reduced); the rows are set to the result. ``ran``: the
    kinds that ran in the phase (only their rows can have changed)."""
    pending = pending if pending is not None else {}
    for tp in plan.ties:
        extra = pending.pop((tp.kind, tp.field), ())
        if tp.kind not in ran and not extra:
            continue
        old, rows = shared[(tp.kind, tp.field)], state[tp.kind][tp.field]
        s_rows, r_rows = (arrays[tp.key + "/live"], _live(tp, rows)) if tp.live else (arrays[tp.key], rows)
        change = jax.ops.segment_sum(r_rows - old[s_rows], s_rows, tp.slots)
        if tp.scaled:
            change = change * arrays[tp.key + "/scale"].reshape(-1, *(1,) * (change.ndim - 1)).astype(change.dtype)
        new = old + change
        for slots, delta in extra:
            new = new.at[slots].add(delta.astype(new.dtype))
        shared[(tp.kind, tp.field)] = new
        state[tp.kind][tp.field] = _assemble(tp, new[s_rows], rows) if tp.live else new[s_rows]
