"""Topological waves of an arrow relation, vectorised (Kahn's algorithm over edge arrays)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agentgraph.errors import AgentGraphError

__all__ = ["generations"]


def generations(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    on_cycle: Callable[[np.ndarray], Exception] | None = None,
) -> np.ndarray:
    """The topological generation of every node ``0..n-1`` of the DAG ``src -> dst``.

    Nodes with no in-arrow are in generation 0; a node is one generation after its latest
    predecessor. Parallel arrows are fine.

    Args:
        n: number of nodes.
        src, dst: ``int [E]`` arrow ends.
        on_cycle: called with the nodes left on a cycle (or downstream of one); must return the
            exception to raise. Default: a generic :class:`AgentGraphError`.

    Returns:
        ``int64 [n]`` generation numbers.

    Example:
        >>> generations(4, np.array([0, 1, 0]), np.array([1, 2, 2])).tolist()
        [0, 1, 2, 0]
    """
    gen = np.zeros(n, dtype=np.int64)
    E = len(src)
    if E == 0:
        return gen
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    indeg = np.bincount(dst, minlength=n)
    order = np.argsort(src, kind="stable")
    d_sorted = dst[order]
    starts = np.searchsorted(src[order], np.arange(n + 1))
    frontier = np.flatnonzero(indeg == 0)
    level = 0
    seen = 0
    while len(frontier):
        gen[frontier] = level
        seen += len(frontier)
        lo, hi = starts[frontier], starts[frontier + 1]
        lens = hi - lo
        total = int(lens.sum())
        if total == 0:
            break
        # indices lo[i] .. hi[i]-1 for every frontier node, without a Python loop
        offs = np.repeat(lo - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(total)
        cand, cnt = np.unique(d_sorted[offs], return_counts=True)
        indeg[cand] -= cnt
        frontier = cand[indeg[cand] == 0]
        level += 1
    if seen != n:
        left = np.flatnonzero(indeg > 0)
        if on_cycle is not None:
            raise on_cycle(left)
        raise AgentGraphError(f"The arrows form a cycle through nodes {left[:10].tolist()}.")
    return gen
