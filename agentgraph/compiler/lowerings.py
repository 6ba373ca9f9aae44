"""Port lowerings: how the messages into one port of one block are gathered and aggregated.

Each port of each block (see :mod:`agentgraph.compiler.plan`) gets one lowering, chosen at compile
time by :func:`port_lowering` (NumPy over the sorted arrow arrays) and run at trace time by
:func:`receive` (a few batched JAX operations, never one per agent). Checked in this order on the
arrows into one block's port, sorted by destination; ``n`` destinations, ``c`` arrows each when
the fan-in is uniform:

``zeros``   no arrows;
``slice``   c == 1 and src = base + arange(n);
``repeat``  c == 1 and src = base + arange(n) // r (each source feeds r consecutive agents);
``tile``    c == 1 and src = base + arange(n) % p;
``rows``    src = base + dst * c + arange(c): a contiguous ``[n, c]`` block, reduced over axis 1;
``strided`` src = base + arange(c) * n + dst: a ``[c, n]`` block, reduced over axis 0;
``gather``  c == 1 into a port the kind *premaps* (see :class:`~agentgraph.Kind`), from fewer
            distinct senders than receivers: the premap runs on the unique senders' rows
            (``src``), the receivers gather from the result (``inv``);
``pick``    at most one arrow per receiver (a grid's neighbour ports): one gather ``buffer[src]``,
            receivers without an arrow reading zeros (their index is past the buffer);
``segment`` anything else: gather ``buffer[src]`` then a sorted segment reduction.

The first six are the *dense-block* lowering — a complete bipartite synapse layer becomes
broadcasts and reductions over reshaped slices, as a hand-written implementation would do.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.nodes.base import Kind

if TYPE_CHECKING:
    from agentgraph.compiler.plan import PortPlan

__all__ = ["port_lowering", "premap_fn", "receive"]


# ----------------------------------------------------------------------------------------------
# compile time: which lowering
# ----------------------------------------------------------------------------------------------
def port_lowering(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[str, int, int]:
    """Classify arrows (sorted by dst, dst in 0..n-1) into a dense pattern, or 'segment'.

    Returns ``(lowering, base, param)`` (see the module docstring).

    Example:
        >>> import numpy as np
        >>> port_lowering(np.array([4, 4, 5, 5]), np.arange(4), 4)  # two senders, two receivers each
        ('repeat', 4, 2)
    """
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


# ----------------------------------------------------------------------------------------------
# trace time: gather and aggregate
# ----------------------------------------------------------------------------------------------
def _sum0(x):
    """``x.sum(0)`` by pairwise halving: XLA:CPU's library reductions over the *leading* axis of a
    large array run ~40× below memory speed; contiguous half-adds run at memory speed, also
    under ``vmap`` (docs/performance.md)."""
    while x.shape[0] > 1:
        h = x.shape[0] // 2
        s = x[:h] + x[h:2 * h]
        x = jnp.concatenate([s, x[2 * h:]]) if x.shape[0] % 2 else s
    return x[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tile(src, reps: int):
    """``src [p, ...]`` stacked ``reps`` times along axis 0 → ``[reps * p, ...]``; its VJP sums the
    copies with :func:`_sum0`."""
    return jnp.tile(src, (reps,) + (1,) * (src.ndim - 1))


def _tile_fwd(src, reps):
    return _tile(src, reps), None


def _tile_bwd(reps, _, g):
    return (_sum0(g.reshape(reps, g.shape[0] // reps, *g.shape[1:])),)


_tile.defvjp(_tile_fwd, _tile_bwd)


def _reduce(x, aggregation: str, axis: int):
    if aggregation in ("sum", "mean") and axis == 0:
        s = _sum0(x)
        return s if aggregation == "sum" else s / x.shape[0]
    if aggregation == "sum":
        return x.sum(axis)
    if aggregation == "mean":
        return x.mean(axis)
    if aggregation == "max":
        return x.max(axis)
    return jax.nn.logsumexp(x, axis=axis)


def receive(buf, p: PortPlan, n: int, B: int, arrays: Mapping[str, jax.Array], premap=None, dtype=None):
    """Aggregated messages ``[n, B, size]`` for one port of one block, from buffer ``[M, B, size]``
    (``None``: nobody sends messages of this size).

    ``premap`` (``[rows, B, size] -> [rows, B, d]``), when given, is applied to the aggregate;
    where every receiver has a single arrow it is applied to the senders' rows before they are
    broadcast (same values, fewer rows)."""
    fn = premap if premap is not None else (lambda v: v)
    low = p.lowering
    if low == "zeros" or buf is None:
        one = fn(jnp.zeros((1, B, p.size), dtype if buf is None else buf.dtype))
        return jnp.broadcast_to(one, (n, *one.shape[1:]))
    if low == "slice":
        return fn(jax.lax.slice_in_dim(buf, p.base, p.base + n))
    if low == "repeat":
        src = fn(jax.lax.slice_in_dim(buf, p.base, p.base + n // p.param))
        # broadcast + reshape, not jnp.repeat: that builds its gather indices (scatter, cumsum) at run time
        return jnp.broadcast_to(src[:, None], (src.shape[0], p.param, *src.shape[1:])).reshape(n, *src.shape[1:])
    if low == "tile":
        src = fn(jax.lax.slice_in_dim(buf, p.base, p.base + p.param))
        return _tile(src, n // p.param)
    if low == "gather":  # one arrow per receiver from a few senders: premap the senders only
        return fn(buf[arrays[p.key + "/src"]])[arrays[p.key + "/inv"]]
    if low == "pick":  # at most one arrow per receiver: one gather, zeros where none
        return fn(buf.at[arrays[p.key + "/src"]].get(mode="fill", fill_value=0))
    if low == "rows":
        src = jax.lax.slice_in_dim(buf, p.base, p.base + n * p.param)
        return fn(_reduce(src.reshape(n, p.param, B, p.size), p.aggregation, 1))
    if low == "strided":
        src = jax.lax.slice_in_dim(buf, p.base, p.base + n * p.param)
        return fn(_reduce(src.reshape(p.param, n, B, p.size), p.aggregation, 0))
    return fn(_segment(buf, p, n, arrays))


def _segment(buf, p: PortPlan, n: int, arrays: Mapping[str, jax.Array]):
    """Generic lowering: gather + sorted segment reduction; empty segments give zeros."""
    src, dst = arrays[p.key + "/src"], arrays[p.key + "/dst"]
    vals = buf[src]
    count = jax.ops.segment_sum(jnp.ones_like(dst, buf.dtype), dst, n, indices_are_sorted=True)
    has = (count > 0)[:, None, None]
    if p.aggregation in ("sum", "mean"):
        s = jax.ops.segment_sum(vals, dst, n, indices_are_sorted=True)
        if p.aggregation == "mean":
            s = s / jnp.maximum(count, 1)[:, None, None]
        return s
    mx = jax.ops.segment_max(vals, dst, n, indices_are_sorted=True)
    mx = jnp.where(has, mx, 0.0)
    if p.aggregation == "max":
        return mx
    se = jax.ops.segment_sum(jnp.exp(vals - mx[dst]), dst, n, indices_are_sorted=True)
    return jnp.where(has, mx + jnp.log(jnp.where(has, se, 1.0)), 0.0)


def premap_fn(kind: Kind, params, sweep: str, port: str):
    """``kind.premap`` for one port, vmapped over ``[rows, B, size]``."""
    one = lambda m: kind.premap(params, sweep, port, m)  # noqa: E731
    return jax.vmap(jax.vmap(one))
