"""The messages of one sweep run: per message size, rows ``[M_d, B, d]`` addressed by buffer row.

A sweep's blocks write their outputs to buffer rows ``base(kind, output) + agent row`` and the
ports read rows back (:mod:`agentgraph.compiler.lowerings`). :class:`Messages` holds them in one
of two layouts, chosen per sweep type at compile time (:func:`piecewise_types`):

* **pieces** — each block's output is kept as its own array (a *piece*: rows ``start .. start+n``)
  and a read assembles only the rows it asks for (:meth:`Messages.rows`: one piece, a slice of
  one, or a concatenation). No whole-sweep buffer exists, so XLA frees each piece after its last
  reader: a forward activation the backward sweep does not read dies within the forward sweep,
  as in a hand-written network. Used where every block writes contiguous rows and nothing needs
  the whole buffer.
* **dense** — one array ``[M_d, B, d]`` per size, written by ``dynamic_update_slice`` or scatter
  (blocks with scattered rows, padded buckets) and kept whole where delayed arrows read it at the
  type's next run (``state["@delayed"]``).

Rows no block wrote in this run read zeros in both layouts. Reads address absolute buffer rows
either way, so the lowerings do not know which layout they read.

Example:
    >>> import jax.numpy as jnp
    >>> m = Messages({1: 6}, B=2, dtype=jnp.float32, pieces=True)
    >>> m.write(1, 2, jnp.ones((3, 2, 1)))
    >>> m.rows(1, 1, 4)[:, 0, 0].tolist()  # row 1 was never written
    [0.0, 1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Mapping

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.compiler.lowerings import rows_read

__all__ = ["MAX_PIECES_PER_READ", "Messages", "piecewise_types", "windows"]


class Messages:
    """The message buffers of one sweep run (module docstring).

    Args:
        rows: ``{size: M}`` buffer rows per message size.
        B: examples per batch.
        dtype: the messages' dtype.
        pieces: keep each block's output as its own array (``True``) or one dense buffer per size.
    """

    def __init__(self, rows: Mapping[int, int], B: int, dtype, pieces: bool) -> None:
        self.M = dict(rows)
        self.B, self.dtype, self.pieces = B, dtype, pieces
        self._dense = {} if pieces else {s: jnp.zeros((m, B, s), dtype) for s, m in self.M.items()}
        self._pieces: dict[int, list[tuple[int, jax.Array]]] = {s: [] for s in self.M}

    @classmethod
    def of(cls, buffers: Mapping[int, jax.Array]) -> Messages:
        """Dense messages holding ``buffers`` ``{size: [M, B, size]}`` (e.g. a delayed type's previous run)."""
        first = next(iter(buffers.values()))
        m = cls({s: v.shape[0] for s, v in buffers.items()}, first.shape[1], first.dtype, pieces=False)
        m._dense = dict(buffers)
        return m

    def __contains__(self, size: int) -> bool:
        return size in self.M

    def write(self, size: int, start: int, val: jax.Array) -> None:
        """Rows ``start .. start + n`` receive ``val [n, B, size]`` (rows no other block of this run writes)."""
        if self.pieces:
            self._pieces[size].append((start, val))
        else:
            self._dense[size] = jax.lax.dynamic_update_slice_in_dim(self._dense[size], val, start, 0)

    def scatter(self, size: int, dest: jax.Array, val: jax.Array) -> None:
        """Rows ``dest [n]`` receive ``val [n, B, size]``; indices past the buffer are dropped (dense layout only)."""
        if self.pieces:
            raise AssertionError("scattered writes need the dense layout (piecewise_types excludes such sweeps)")
        self._dense[size] = self._dense[size].at[dest].set(val, mode="drop")

    def rows(self, size: int, lo: int, hi: int) -> jax.Array:
        """Buffer rows ``lo .. hi`` ``[hi - lo, B, size]`` (zeros where this run wrote nothing)."""
        if not self.pieces:
            return jax.lax.slice_in_dim(self._dense[size], lo, hi)
        parts, at = [], lo
        for start, val in sorted(self._pieces[size], key=lambda sv: sv[0]):
            stop = start + val.shape[0]
            if stop <= at or start >= hi:
                continue
            if start > at:
                parts.append(jnp.zeros((start - at, self.B, size), self.dtype))
                at = start
            take = jax.lax.slice_in_dim(val, at - start, min(stop, hi) - start) if (at, min(stop, hi)) != (start, stop) else val
            parts.append(take)
            at = min(stop, hi)
        if at < hi:
            parts.append(jnp.zeros((hi - at, self.B, size), self.dtype))
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts)

    def window(self, size: int, lo: int, hi: int) -> tuple[jax.Array, int]:
        """Rows covering ``lo .. hi`` for an index-array read, and the row the array starts at:
        ``(rows(size, lo, hi), lo)`` for pieces, ``(whole buffer, 0)`` for the dense layout (whose
        indices may point past ``hi``: a bucket's padding)."""
        if not self.pieces or hi <= lo:
            return self.full(size), 0
        return self.rows(size, lo, hi), lo

    def full(self, size: int) -> jax.Array:
        """The whole buffer ``[M, B, size]``."""
        return self._dense[size] if not self.pieces else self.rows(size, 0, self.M[size])


#: A sweep keeps pieces only if no read assembles more than this many of them (each read of
#: several pieces is a concatenation; a dense buffer is written in place once per block).
MAX_PIECES_PER_READ = 4


def _spans(p, n: int, arrays) -> list[tuple[int, int, int]]:
    """``(size, lo, hi)`` of the buffer rows port ``p`` of an ``n``-agent block reads this run."""
    if p.source != "now":
        return []
    if p.lowering == "matmul":
        L = p.link
        return [(L.in_size, L.in_base, L.in_base + (L.P if L.in_axis == 0 else L.Q))]
    if p.lowering in ("conv", "conv_t"):
        return [(1, *(p.link.x_rows if p.lowering == "conv" else p.link.m_rows))]
    rows = rows_read(p, n, arrays)
    return [(p.size, int(rows.min()), int(rows.max()) + 1)] if len(rows) else []


def piecewise_types(plan_sweeps, delayed_types: set[str], padded: bool, arrays) -> tuple[str, ...]:
    """The sweep types whose messages are kept as pieces: not in a bucket (padded index arrays
    may point anywhere), no delayed arrows (their buffer is state), every block that sends
    writes contiguous rows, and no port's read spans more than :data:`MAX_PIECES_PER_READ`
    blocks' outputs (reads of a few pieces stay cheap; a port reading many waves — a deep random
    DAG — is better served by one buffer). Call after :func:`windows`.

    Example:
        >>> from agentgraph import mlp
        >>> from agentgraph.compiler.plan import make_plan
        >>> make_plan(mlp([3, 4, 2]))[0].piecewise
        ('backward', 'forward')
    """
    if padded:
        return ()
    out = []
    for t, waves in plan_sweeps:
        blocks = [b for w in waves for b in w]
        if t in delayed_types or any(b.rows_key and b.outputs for b in blocks):
            continue
        starts: dict[int, list[int]] = {}
        for b in blocks:
            for _, size, base in b.outputs:
                starts.setdefault(size, []).append(base + b.start)
        starts = {s: np.sort(v) for s, v in starts.items()}
        worst = 0
        for b in blocks:
            for p in b.ports:
                for size, lo, hi in _spans(p, b.n, arrays):
                    st = starts.get(size, np.zeros(0, np.int64))
                    # pieces that start inside the window, plus the one it begins in
                    worst = max(worst, int(np.searchsorted(st, hi) - np.searchsorted(st, lo, side="right")) + 1)
        if worst <= MAX_PIECES_PER_READ:
            out.append(t)
    return tuple(sorted(out))


_INDEXED = ("gather", "pick", "segment")


def _bounds(idx: np.ndarray) -> tuple[int, int]:
    idx = idx[idx < np.iinfo(np.int32).max]  # pick's receivers without an arrow
    return (int(idx.min()), int(idx.max()) + 1) if len(idx) else (0, 0)


def _is_range(idx: np.ndarray, offset: bool) -> bool:
    """``idx == start + arange(n)`` (``offset``) or ``idx == arange(n)``."""
    start = int(idx[0]) if len(idx) and offset else 0
    return bool(len(idx)) and np.array_equal(idx, start + np.arange(len(idx)))


def windows(waves, arrays: Mapping[str, np.ndarray]):
    """``waves`` (of :class:`~agentgraph.compiler.plan.BlockPlan`) with the buffer rows each
    index-array read points into: ``lo``/``hi`` of the ``gather``/``pick``/``segment`` ports
    that read this run's buffer, ``x_rows``/``m_rows`` of convolution links — so a piecewise
    sweep assembles only those rows (:meth:`Messages.window`) — and, for convolution links, which
    index arrays are plain ranges (read as slices, not gathers).

    Example:
        >>> from agentgraph import random_dag
        >>> from agentgraph.compiler.plan import make_plan
        >>> plan, _, _ = make_plan(random_dag(3, 4, 2, seed=0), dense=False)
        >>> p = plan.forward[1][0].ports[0]
        >>> p.lowering, 0 <= p.lo < p.hi
        ('pick', True)
    """
    links: dict = {}

    def link_of(link):
        if link is None or not hasattr(link, "x_rows"):
            return link
        if link.key not in links:
            ident = tuple(n for n in ("x", "m", "out_perm", "in_perm", "kslot") if link.key + "/" + n in arrays
                          and _is_range(np.asarray(arrays[link.key + "/" + n]), n in ("x", "m")))
            links[link.key] = dataclasses.replace(link, x_rows=_bounds(np.asarray(arrays[link.key + "/x"])),
                                                  m_rows=_bounds(np.asarray(arrays[link.key + "/m"])), ranges=ident)
        return links[link.key]

    def port(p):
        if p.lowering in _INDEXED and p.source == "now":
            lo, hi = _bounds(np.asarray(arrays[p.key + "/src"]))
            return dataclasses.replace(p, lo=lo, hi=hi)
        return dataclasses.replace(p, link=link_of(p.link)) if p.link is not None else p

    return tuple(tuple(dataclasses.replace(b, ports=tuple(port(p) for p in b.ports), conv=link_of(b.conv)) for b in w)
                 for w in waves)
