"""What the lowering reads off a graph before it plans anything: waves per sweep, blocks of agents
of one ``(wave, kind, group)``, the arrows into each block's ports, and the self-loop sets. Shared
by the plan (:mod:`agentgraph.compiler.plan`) and the buckets (:mod:`agentgraph.compiler.buckets`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from agentgraph.graph import AgentGraph
from agentgraph.graph.waves import generations

__all__ = ["Analysis", "analyse", "block_edges", "layout_sweep", "self_sets"]


# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Analysis:
    """One graph as the lowering sees it (:func:`analyse`).

    Attributes:
        graph: the (validated) agent graph.
        A: its column arrays (:meth:`~agentgraph.graph.AgentGraph.arrays`).
        waves: ``{sweep type: int64 [N]}``: each agent's wave in that sweep.
        blocks: ``{sweep type: {(wave, kind, group): agents int64 [n]}}`` in block order.
        layout_sweep: ``{kind: sweep type}``: the kind's first sweep in schedule order, or ``rest``.
    """

    graph: AgentGraph
    A: Any
    waves: dict  # sweep type -> int64 [N]
    blocks: dict  # sweep type -> {(wave, kind, group): agents int64 [n] (block order)}
    layout_sweep: dict  # kind -> its first sweep type in schedule order, or "rest"


def analyse(graph: AgentGraph) -> Analysis:
    """Validate ``graph`` and find its waves and blocks: per sweep type, the agents that run in
    it grouped by ``(wave, kind, group)``, ties broken by the other sweeps' waves so that every
    sweep's blocks stay contiguous.

    Example:
        >>> from agentgraph.builders import mlp
        >>> an = analyse(mlp([2, 1], loss="l2"))
        >>> sorted({kind for (_, kind, _) in an.blocks["forward"]})
        ['bias', 'input', 'l2', 'synapse', 'target']
    """
    graph.validate()
    A = graph.arrays()
    N = len(A.names)
    sweep_types = graph.schedule.sweep_types()
    waves = {}
    for t in sweep_types:
        m = A.type_mask(t, delayed=False)
        waves[t] = generations(N, A.src[m], A.dst[m])
    blocks: dict[str, dict] = {}
    for t in sweep_types:
        runs = np.array([graph.kinds[k].runs(t) for k in A.kind_names], bool)
        active = np.flatnonzero(runs[A.kind]) if N else np.zeros(0, np.int64)
        # ties broken by the other sweeps' waves (schedule order), so their blocks stay contiguous too
        others = [waves[u][active] for u in reversed(sweep_types) if u != t]
        order = active[np.lexsort((active, *others, A.group[active], A.kind[active], waves[t][active]))]
        key = np.stack([waves[t][order], A.kind[order], A.group[order]], 1)
        cut = np.r_[0, np.flatnonzero(np.any(key[1:] != key[:-1], axis=1)) + 1, len(order)] if len(order) else [0]
        blocks[t] = {}
        for b in range(len(cut) - 1):
            w, k, g = (int(x) for x in key[cut[b]])
            blocks[t][(w, A.kind_names[k], A.group_names[g])] = order[cut[b]:cut[b + 1]]
    layouts = {k: layout_sweep(graph.kinds[k], sweep_types) for k in A.kind_names}
    return Analysis(graph, A, waves, blocks, layouts)


def layout_sweep(kind: Any, sweep_types: list[str]) -> str:
    """The sweep whose blocks lay out a kind's rows: its first in schedule order, or ``rest``.

    Example:
        >>> from agentgraph.nodes import default_kinds
        >>> layout_sweep(default_kinds()["synapse"], ["forward", "backward"])
        'forward'
    """
    return next((t for t in sweep_types if kind.runs(t)), "rest")


def block_edges(an: Analysis, t: str):
    """For each ``(block key, port)`` of sweep ``t``: the arrows into that block's port as
    ``(src agents [E], src outputs [E], dst local index [E], delayed [E])``, sorted by dst local.

    Example:
        >>> from agentgraph.builders import mlp
        >>> edges = block_edges(analyse(mlp([2, 1], loss="l2")), "forward")
        >>> sum(len(src) for src, *_ in edges.values()) > 0
        True
    """
    A = an.A
    N = len(A.names)
    m = np.flatnonzero(A.type_mask(t))
    block_id = np.full(N, -1, np.int64)
    local = np.full(N, -1, np.int64)
    keys = list(an.blocks[t])
    for b, key in enumerate(keys):
        agents = an.blocks[t][key]
        block_id[agents] = b
        local[agents] = np.arange(len(agents))
    e_dst = A.dst[m]
    order = np.lexsort((m, local[e_dst], A.port[m], block_id[e_dst]))
    e = m[order]
    eb, ep = block_id[A.dst[e]], A.port[e]
    out = {}
    for b, key in enumerate(keys):
        lo, hi = np.searchsorted(eb, [b, b + 1])
        kd = an.graph.kinds[key[1]]
        for p in kd.ports(t):
            pid = A.strings.index(p) if p in A.strings else -2
            plo = lo + np.searchsorted(ep[lo:hi], pid)
            phi = lo + np.searchsorted(ep[lo:hi], pid, side="right")
            sel = e[plo:phi]
            out[(key, p)] = (A.src[sel], A.src_port[sel], local[A.dst[sel]], A.delay[sel])
    return out


def self_sets(A, t: str) -> dict:
    """``{(kind, group, repeats): agents int64 [n]}`` of the agents carrying self-loops of type
    ``t`` (``A``: the graph's column arrays).

    Example:
        >>> from agentgraph.builders import mlp
        >>> self_sets(mlp([2, 1], loss="l2").arrays(), "reflexive")
        {}
    """
    m = A.type_mask(t)
    out = {}
    if not m.any():
        return out
    counts = np.bincount(A.src[m], minlength=len(A.names))
    has = np.flatnonzero(counts)
    for k, g, r in np.unique(np.stack([A.kind[has], A.group[has], counts[has]], 1), axis=0):
        agents = has[(A.kind[has] == k) & (A.group[has] == g) & (counts[has] == r)]
        out[(A.kind_names[k], A.group_names[g], int(r))] = agents
    return out
