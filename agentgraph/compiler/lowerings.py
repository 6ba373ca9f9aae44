"""Port lowerings: how the messages into one port of one block are gathered and aggregated.

Each port of each block (see :mod:`agentgraph.compiler.plan`) gets one lowering from the table
:data:`LOWERINGS` — each entry says when it applies (at compile time, NumPy over the port's sorted
arrow arrays: :func:`choose_lowering`) and what it emits (at trace time, a few batched JAX
operations, never one per agent: :func:`receive`). Tried in this order on the arrows into one
block's port, sorted by destination; ``n`` destinations, ``c`` arrows each when the fan-in is
uniform:

``zeros``   no arrows;
``slice``   c == 1 and src = base + arange(n);
``repeat``  c == 1 and src = base + arange(n) // r (each source feeds r consecutive agents);
``tile``    c == 1 and src = base + arange(n) % p;
``rows``    src = base + dst * c + arange(c): a contiguous ``[n, c]`` block, reduced over axis 1;
``strided`` src = base + arange(c) * n + dst: a ``[c, n]`` block, reduced over axis 0;
``pool``    c == k² (k ≥ 2): each receiver reads one k×k window, stride k, of a map stored in
            ``(c, y, x)`` order (pooling): a reshape ``[Q, k, Wo, k]`` reduced over both k axes;
``unpool``  c == 1: each receiver reads the window it lies in (pooling's backward): a broadcast;
``gather``  c == 1 into a port the kind *premaps* (see :class:`~agentgraph.Kind`), from fewer
            distinct senders than receivers: the premap runs on the unique senders' rows
            (``src``), the receivers gather from the result (``inv``);
``pick``    at most one arrow per receiver (a grid's neighbour ports): one gather ``buffer[src]``,
            receivers without an arrow reading zeros (their index is past the buffer);
``segment`` anything else: gather ``buffer[src]`` then a sorted segment reduction.

The first eight are the *dense-block* lowering — a complete bipartite synapse layer becomes
broadcasts and reductions over reshaped slices, as a hand-written implementation would do.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.nodes.base import Kind

if TYPE_CHECKING:
    from agentgraph.compiler.plan import PortPlan

__all__ = ["BY_NAME", "Inbox", "LOWERINGS", "Lowering", "register_fused", "Match", "PortArrows", "choose_lowering", "port_lowering", "premap_fn",
           "receive", "rows_read"]


# ----------------------------------------------------------------------------------------------
# compile time: which lowering
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PortArrows:
    """The arrows into one port of one block, as :func:`choose_lowering` sees them.

    Attributes:
        src: ``int64 [E]`` buffer rows of the senders, sorted by ``dst`` (then ``src``).
        dst: ``int64 [E]`` the receiving agent of each arrow, ``0 .. n-1`` within the block.
        n: the block's receivers.
        premapped: the kind premaps this port (``gather`` may apply).
        dense: the dense-block patterns may be used.
    """

    src: np.ndarray
    dst: np.ndarray
    n: int
    premapped: bool = False
    dense: bool = True

    def uniform(self) -> int | None:
        """``c`` when every receiver has exactly ``c`` arrows (``dst = repeat(arange(n), c)``), else ``None``."""
        E, n = len(self.src), self.n
        if E == 0 or E % n:
            return None
        c = E // n
        return c if np.array_equal(self.dst, np.repeat(np.arange(n), c)) else None


@dataclasses.dataclass(frozen=True)
class Match:
    """What a lowering needs of one port: a first buffer row ``base``, a ``param`` (``r``, ``p``,
    ``c`` or ``Wo``), a window side ``kernel`` (``pool``/``unpool``) and index arrays (stored under
    the port's key, ``key + "/" + name``)."""

    base: int = 0
    param: int = 0
    arrays: dict = dataclasses.field(default_factory=dict)
    kernel: int = 0


def _zeros(a: PortArrows) -> Match | None:
    return Match() if len(a.src) == 0 else None


def _single(a: PortArrows, pattern) -> Match | None:
    """One arrow per receiver whose source row follows ``pattern(base, arange(n)) -> (rows, param)``."""
    if a.uniform() != 1:
        return None
    base = int(a.src.min())
    got = pattern(base, np.arange(a.n), a.src)
    return None if got is None else Match(base, got)


def _slice(a: PortArrows) -> Match | None:
    return _single(a, lambda b, ar, src: 1 if np.array_equal(src, b + ar) else None)


def _repeat(a: PortArrows) -> Match | None:
    def pattern(b, ar, src):
        for r in range(2, len(ar) + 1):
            if len(ar) % r == 0 and np.array_equal(src, b + ar // r):
                return r
            if src[r - 1] != b:
                return None
        return None
    return _single(a, pattern)


def _tile(a: PortArrows) -> Match | None:
    def pattern(b, ar, src):
        p = int(src.max()) - b + 1
        return p if p < len(ar) and len(ar) % p == 0 and np.array_equal(src, b + ar % p) else None
    return _single(a, pattern)


def _block(a: PortArrows, layout) -> Match | None:
    """Every receiver has ``c`` arrows reading one dense ``[n, c]`` (``layout`` rows) or ``[c, n]``
    (strided) block of the buffer."""
    c = a.uniform()
    if c is None:
        return None
    base, ar = int(a.src.min()), np.arange(a.n)
    want = base + (layout(ar, c)).reshape(-1)
    return Match(base, c) if np.array_equal(a.src, want) else None


def _rows(a: PortArrows) -> Match | None:
    return _block(a, lambda ar, c: ar[:, None] * c + np.arange(c)[None, :])


def _strided(a: PortArrows) -> Match | None:
    return _block(a, lambda ar, c: np.arange(c)[None, :] * len(ar) + ar[:, None])


def _window_rows(Q: int, k: int, Wo: int) -> np.ndarray:
    """Map rows ``((q·k + dy)·Wo + px)·k + dx`` of the ``k×k`` windows of ``Q·Wo`` receivers ``(q, px)``,
    ``[Q·Wo, k·k]`` in ``(dy, dx)`` order: non-overlapping windows over a ``(C, H, W)`` map read in
    ``(c, y, x)`` order (``q = c·Ho + py``)."""
    q, px, dy, dx = np.ix_(np.arange(Q), np.arange(Wo), np.arange(k), np.arange(k))
    return (((q * k + dy) * Wo + px) * k + dx).reshape(Q * Wo, k * k)


def _pool(a: PortArrows) -> Match | None:
    """Every receiver reads one ``k×k`` window (``k ≥ 2``, stride ``k``) of a map stored in
    ``(c, y, x)`` order: ``param = Wo`` (windows per map row), ``kernel = k``."""
    c = a.uniform()
    k = int(round(np.sqrt(c))) if c else 0
    if c is None or k < 2 or k * k != c:
        return None
    base = int(a.src.min())
    if (int(a.src[k]) - base) % k:
        return None
    Wo = (int(a.src[k]) - base) // k
    if Wo < 1 or a.n % Wo:
        return None
    want = base + _window_rows(a.n // Wo, k, Wo).reshape(-1)
    return Match(base, Wo, kernel=k) if np.array_equal(a.src, want) else None


def _unpool(a: PortArrows) -> Match | None:
    """Every receiver reads the one window it lies in (the transpose of :func:`_pool`): receivers
    ``(q, dy, px, dx)`` of ``k×k`` windows read sender ``base + q·Wo + px``; ``param = Wo``,
    ``kernel = k`` (k ≥ 2 from the leading run of the first sender; ``Wo`` tried over the divisors)."""
    if a.uniform() != 1 or a.n < 4:
        return None
    base = int(a.src.min())
    run = int(np.argmax(a.src != base)) if np.any(a.src != base) else a.n
    for k in {run, int(round(np.sqrt(run)))}:
        if k < 2 or a.n % (k * k):
            continue
        m = a.n // (k * k)
        for Wo in (d for d in range(1, m + 1) if m % d == 0):
            recv = _window_rows(m // Wo, k, Wo).reshape(-1)  # receiver of (window, dy, dx)
            want = np.empty(a.n, np.int64)
            want[recv] = base + np.repeat(np.arange(m), k * k)
            if np.array_equal(a.src, want):
                return Match(base, Wo, kernel=k)
    return None


def _gather(a: PortArrows) -> Match | None:
    if not a.premapped or len(a.src) != a.n or not np.array_equal(a.dst, np.arange(a.n)):
        return None
    usrc, inv = np.unique(a.src, return_inverse=True)
    return Match(arrays={"src": usrc, "inv": inv}) if len(usrc) < a.n else None


def _pick(a: PortArrows) -> Match | None:
    if len(a.dst) > a.n or not np.all(np.diff(a.dst) > 0):
        return None
    pick = np.full(a.n, np.iinfo(np.int32).max, np.int64)  # receivers without an arrow read past the buffer
    pick[a.dst] = a.src
    return Match(arrays={"src": pick})


def _segment_match(a: PortArrows) -> Match | None:
    return Match(arrays={"src": a.src, "dst": a.dst})


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
def _tile_rows(src, reps: int):
    """``src [p, ...]`` stacked ``reps`` times along axis 0 → ``[reps * p, ...]``; its VJP sums the
    copies with :func:`_sum0`."""
    return jnp.tile(src, (reps,) + (1,) * (src.ndim - 1))


def _tile_fwd(src, reps):
    return _tile_rows(src, reps), None


def _tile_bwd(reps, _, g):
    return (_sum0(g.reshape(reps, g.shape[0] // reps, *g.shape[1:])),)


_tile_rows.defvjp(_tile_fwd, _tile_bwd)


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


def _recv_zeros(ib, p, n, B, fn):
    one = fn(jnp.zeros((1, B, p.size), ib.dtype))
    return jnp.broadcast_to(one, (n, *one.shape[1:]))


def _recv_slice(ib, p, n, B, fn):
    return fn(ib.bufs.rows(p.size, p.base, p.base + n))


def _recv_repeat(ib, p, n, B, fn):
    src = fn(ib.bufs.rows(p.size, p.base, p.base + n // p.param))
    # broadcast + reshape, not jnp.repeat: that builds its gather indices (scatter, cumsum) at run time
    return jnp.broadcast_to(src[:, None], (src.shape[0], p.param, *src.shape[1:])).reshape(n, *src.shape[1:])


def _recv_tile(ib, p, n, B, fn):
    return _tile_rows(fn(ib.bufs.rows(p.size, p.base, p.base + p.param)), n // p.param)


def _recv_rows(ib, p, n, B, fn):
    src = ib.bufs.rows(p.size, p.base, p.base + n * p.param)
    return fn(_reduce(src.reshape(n, p.param, B, p.size), p.aggregation, 1))


def _recv_strided(ib, p, n, B, fn):
    src = ib.bufs.rows(p.size, p.base, p.base + n * p.param)
    return fn(_reduce(src.reshape(p.param, n, B, p.size), p.aggregation, 0))


def _recv_pool(ib, p, n, B, fn):
    k, Wo = p.kernel, p.param
    src = ib.bufs.rows(p.size, p.base, p.base + n * k * k).reshape(n // Wo, k, Wo, k, B, p.size)
    return fn(_reduce(_reduce(src, p.aggregation, 3), p.aggregation, 1).reshape(n, B, p.size))


def _recv_unpool(ib, p, n, B, fn):
    k, Wo = p.kernel, p.param
    senders = n // (k * k)
    src = fn(ib.bufs.rows(p.size, p.base, p.base + senders))
    src = src.reshape(senders // Wo, 1, Wo, 1, *src.shape[1:])
    return jnp.broadcast_to(src, (senders // Wo, k, Wo, k, *src.shape[4:])).reshape(n, *src.shape[4:])


def _indexed(ib, p, name: str = "src"):
    """The rows an index-array lowering reads and its indices into them (shifted by the window)."""
    buf, off = ib.bufs.window(p.size, p.lo, p.hi)
    idx = ib.arrays[p.key + "/" + name]
    return buf, (idx - off if off else idx)


def _recv_gather(ib, p, n, B, fn):  # one arrow per receiver from a few senders: premap the senders only
    buf, src = _indexed(ib, p)
    return fn(buf[src])[ib.arrays[p.key + "/inv"]]


def _recv_pick(ib, p, n, B, fn):  # at most one arrow per receiver: one gather, zeros where none
    buf, src = _indexed(ib, p)
    return fn(buf.at[src].get(mode="fill", fill_value=0))


def _recv_segment(ib, p, n, B, fn):
    buf, src = _indexed(ib, p)
    return fn(_segment(buf, src, p, n, ib.arrays))


def _fused(a: PortArrows) -> Match | None:
    """Never chosen per port: a fusion pass assigns the entry to a whole verified layer."""
    return None


def _read_none(p, n, arrays):
    return np.zeros(0, np.int64)


def _read_span(count):
    """Rows ``base .. base + count(p, n)`` are read."""
    return lambda p, n, arrays: np.arange(p.base, p.base + count(p, n))


def _read_src(p, n, arrays):
    src = np.asarray(arrays[p.key + "/src"], np.int64)
    return src[src < np.iinfo(np.int32).max]  # pick: receivers without an arrow


@dataclasses.dataclass(frozen=True)
class Inbox:
    """What a port's receive reads at trace time (one per sweep run).

    Attributes:
        bufs: the sweep's :class:`~agentgraph.compiler.buffers.Messages` (``None``: nobody sends).
        arrays: the program's index arrays.
        dtype: the messages' dtype.
        sweep: the sweep's arrow type.
        coefs: ``{kind: {field: [N, ...]}}`` per-agent values at the sweep's start (``matmul``).
        kinds: ``{name: Kind}`` (``matmul``).
        params: ``{group: pytree}`` (``matmul``).
        shared: tied fields' shared values ``{(kind, field): [slots, ...]}`` (``conv``, ``conv_t``).
        forward: this step's forward sweep's messages (``conv_t``).
    """

    bufs: Any
    arrays: Mapping[str, Any]
    dtype: Any
    sweep: str = ""
    coefs: Mapping | None = None
    kinds: Mapping | None = None
    params: Mapping | None = None
    shared: Mapping | None = None
    forward: Any = None


@dataclasses.dataclass(frozen=True)
class Lowering:
    """One entry of the lowering table: when it applies (``match``, at compile time, NumPy over
    the port's arrows; ``dense``: only where the dense-block patterns are allowed), which buffer
    rows it reads (``reads(port, n, arrays) -> int64 [rows]``, at compile time) and what it
    emits (``receive``, at trace time: ``(inbox, port, n, B, premap) -> [n, B, size]``, :class:`Inbox`,
    reading :class:`~agentgraph.compiler.buffers.Messages` by absolute buffer row)."""

    name: str
    match: Callable[[PortArrows], Match | None]
    receive: Callable[..., jax.Array]
    reads: Callable[..., np.ndarray] = _read_src
    dense: bool = False
    fused: bool = False  # assigned to a whole verified layer by a fusion pass (linear.py, conv.py), never per port


#: The port lowerings in the order they are tried (the first that matches wins); ``segment``
#: always matches. ``matmul`` is not here: it replaces a ``rows``/``strided`` port afterwards,
#: where a linear block feeds it (:func:`agentgraph.compiler.linear.fuse_linear`).
LOWERINGS: tuple[Lowering, ...] = (
    Lowering("zeros", _zeros, _recv_zeros, _read_none),
    Lowering("slice", _slice, _recv_slice, _read_span(lambda p, n: n), dense=True),
    Lowering("repeat", _repeat, _recv_repeat, _read_span(lambda p, n: n // p.param), dense=True),
    Lowering("tile", _tile, _recv_tile, _read_span(lambda p, n: p.param), dense=True),
    Lowering("rows", _rows, _recv_rows, _read_span(lambda p, n: n * p.param), dense=True),
    Lowering("strided", _strided, _recv_strided, _read_span(lambda p, n: n * p.param), dense=True),
    Lowering("pool", _pool, _recv_pool, _read_span(lambda p, n: n * p.kernel ** 2), dense=True),
    Lowering("unpool", _unpool, _recv_unpool, _read_span(lambda p, n: n // p.kernel ** 2), dense=True),
    Lowering("gather", _gather, _recv_gather),
    Lowering("pick", _pick, _recv_pick),
    Lowering("segment", _segment_match, _recv_segment),
)
BY_NAME = {low.name: low for low in LOWERINGS}


def register_fused(name: str, receive: Callable[..., jax.Array]) -> Lowering:
    """Add a *fused* entry to the table: a fusion pass (``compiler.linear``: ``matmul``;
    ``compiler.conv``: ``conv``, ``conv_t``) assigns it to the ports of a whole verified layer,
    so it is never chosen per port and its senders' rows are accounted for by that pass; it
    emits through the same ``receive(inbox, port, n, B, premap)`` contract as every entry. The
    module that defines the pass registers its entries when imported (the compiler imports both).

    Example:
        >>> import agentgraph.compiler.linear  # noqa: F401
        >>> BY_NAME["matmul"].fused
        True
    """
    if name not in BY_NAME:
        global LOWERINGS
        low = Lowering(name, _fused, receive, _read_none, fused=True)
        LOWERINGS = (*LOWERINGS, low)
        BY_NAME[name] = low
    return BY_NAME[name]


def rows_read(p: PortPlan, n: int, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """The buffer rows ``int64 [rows]`` port ``p`` of an ``n``-agent block reads (by its table
    entry; compile time).

    Example:
        >>> from agentgraph.compiler.plan import PortPlan
        >>> rows_read(PortPlan("x", 1, "sum", "repeat", base=4, param=2), 4, {}).tolist()
        [4, 5]
    """
    return BY_NAME[p.lowering].reads(p, n, arrays)


def choose_lowering(arrows: PortArrows) -> tuple[str, Match]:
    """The first entry of :data:`LOWERINGS` that applies to ``arrows``: ``(name, match)``.

    Example:
        >>> import numpy as np
        >>> name, m = choose_lowering(PortArrows(np.array([4, 4, 5, 5]), np.arange(4), 4))
        >>> name, m.base, m.param  # two senders, two receivers each
        ('repeat', 4, 2)
    """
    for low in LOWERINGS:
        if low.dense and not arrows.dense:
            continue
        m = low.match(arrows)
        if m is not None:
            return low.name, m
    raise AssertionError("segment always matches")


def port_lowering(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[str, int, int]:
    """The dense pattern of arrows (sorted by dst, dst in 0..n-1), or ``'segment'``:
    ``(lowering, base, param)`` (:func:`choose_lowering` without ``gather``/``pick``).

    Example:
        >>> import numpy as np
        >>> port_lowering(np.array([4, 4, 5, 5]), np.arange(4), 4)  # two senders, two receivers each
        ('repeat', 4, 2)
    """
    name, m = choose_lowering(PortArrows(np.asarray(src), np.asarray(dst), n))
    return (name, m.base, m.param) if name not in ("gather", "pick", "pool", "unpool") else ("segment", 0, 0)


def receive(inbox: Inbox, p: PortPlan, n: int, B: int, premap=None):
    """Aggregated messages ``[n, B, size]`` for one port of one block, by the port's entry of
    :data:`LOWERINGS` (``inbox``: what the sweep's ports read, :class:`Inbox`; no messages of the
    port's size: zeros).

    ``premap`` (``[rows, B, size] -> [rows, B, d]``), when given, is applied to the aggregate;
    where every receiver has a single arrow it is applied to the senders' rows before they are
    broadcast (same values, fewer rows).

    Example:
        >>> import jax.numpy as jnp
        >>> from agentgraph.compiler.buffers import Messages
        >>> from agentgraph.compiler.plan import PortPlan
        >>> m = Messages({1: 4}, B=1, dtype=jnp.float32, pieces=True)
        >>> m.write(1, 0, jnp.arange(4.0).reshape(4, 1, 1))
        >>> receive(Inbox(m, {}, jnp.float32), PortPlan("x", 1, "sum", "rows", base=0, param=2), 2, 1)[:, 0, 0].tolist()
        [1.0, 5.0]
    """
    fn = premap if premap is not None else (lambda v: v)
    low = BY_NAME[p.lowering]
    if not low.fused and (inbox.bufs is None or p.size not in inbox.bufs):
        low = BY_NAME["zeros"]
    return low.receive(inbox, p, n, B, fn)


def _segment(buf, src, p: PortPlan, n: int, arrays: Mapping[str, jax.Array]):
    """Generic lowering: gather ``buf[src]`` + sorted segment reduction; empty segments give zeros."""
    dst = arrays[p.key + "/dst"]
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
