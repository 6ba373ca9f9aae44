"""Dense blocks of linear agents lowered to matrix products.

A kind may declare that an output is linear in one input with a per-agent field as coefficient
(:class:`~agentgraph.nodes.Linear`), or that an update is an outer product of a backward message
and a stored forward input (:class:`~agentgraph.nodes.Outer`). When such a block is a dense
``P × Q`` grid — its row ``r`` is ``(p, q) = divmod(r, Q)``, its input is broadcast along one axis
(port lowering ``repeat``: one sender per ``p``; ``tile``: one per ``q``) — two things can skip
the per-agent products:

``matmul`` (a port lowering): a receiver port that sums the block's output over the *input's*
    axis (``rows`` over ``q`` when the input runs along ``q``, ``strided`` over ``p`` when it runs
    along ``p``) gets ``einsum(W, u)`` of the coefficient matrix ``W [P, Q(, d)]`` and the senders'
    vectors ``u``. The block still runs (for its state and its other outputs); an output whose
    every reader is a ``matmul`` port (or that nobody reads) is not computed at all
    (``BlockPlan.dropped``).
outer updates: a backward block whose message port is a broadcast along one axis, whose stored
    field was filled in the forward sweep by a broadcast along the other, gets
    ``scale ⊙ einsum(x, m) / B (+ decay ⊙ W)`` — the batch-mean outer product — in place of its
    per-agent update (``BlockPlan.outer``). When the stored field is declared ``scratch``
    (:class:`~agentgraph.nodes.Field`), ``x`` is read from the forward sweep's buffer — the
    senders' messages, one per sender rather than one per agent — and the forward block never
    writes the field (``BlockPlan.unwritten``).

The coefficients a ``matmul`` port reads are the values at the start of the sweep: every agent
runs once per sweep and its update lands after its own block, so that is the value the agent
used. Declarations are promises the interpreter does not read; the property tests compare both
(``tests/compiler/test_linear.py``). Buckets (segment lowering) and ``compile(g, linear=False)``
use none of this.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.compiler.lowerings import BY_NAME, premap_fn, register_fused, rows_read
from agentgraph.nodes.base import Kind

__all__ = ["LinearLink", "OuterLink", "fuse_linear", "receive_matmul", "outer_update"]


@dataclasses.dataclass(frozen=True)
class LinearLink:
    """Where a ``matmul`` port's sending block lives: kind ``kind`` rows ``start .. start+P·Q``,
    output ``output``; its input port ``in_port`` reads ``in_count`` rows from ``in_base`` of the
    size-``in_size`` buffer, broadcast along axis ``in_axis`` (0: ``p``, 1: ``q``)."""

    kind: str
    group: str
    output: str
    start: int
    P: int
    Q: int
    in_axis: int
    in_port: str
    in_size: int
    in_base: int


@dataclasses.dataclass(frozen=True)
class OuterLink:
    """A backward block's fused update of ``field``: the message port reads ``m_size``-buffer rows
    from ``m_base`` along axis ``m_axis``; the stored field runs along the other axis."""

    field: str
    P: int
    Q: int
    m_axis: int
    m_base: int
    m_size: int
    x_base: int = 0  # pair declarations (and x_forward): the other port's first buffer row and size
    x_size: int = 0
    x_forward: bool = False  # a scratch stored field: x is read from the forward sweep's buffer


def _grid(port) -> tuple[int, int] | None:
    """(axis, Q) of a broadcast port over a block of n rows, or None."""
    if port is None or port.lowering not in ("repeat", "tile"):
        return None
    return (0 if port.lowering == "repeat" else 1), port.param


def fuse_linear(kinds: Mapping[str, Kind], sweeps: dict, base: Mapping[tuple, int], arrays: Mapping[str, np.ndarray],
                buffer_rows: Mapping[tuple[str, int], int], shifts: Sequence[tuple[str, int, str]] = ()) -> dict:
    """Rewrite the blocks of ``sweeps`` (``{sweep: waves of BlockPlan}``) with ``matmul`` ports,
    dropped outputs and outer updates where the kinds' declarations and the wiring allow.

    ``base[(sweep, kind, output)]`` is the output's first buffer row, ``buffer_rows[(sweep, size)]``
    the buffer's length; ``shifts`` names further arrays of buffer rows ``(sweep, size, key)``
    (e.g. :func:`~agentgraph.compiler.conv.fuse_conv`'s) to move with the rows. Ports already
    lowered to ``conv`` / ``conv_t`` read no block's outputs (their senders' rows stay read by the
    synapses' own ports). Returns ``(sweeps, buffer_rows)``: a (kind, output) whose rows nobody
    reads any more is removed from its buffer, and every row index is shifted accordingly (the
    segment index arrays of ``arrays`` in place).

    Example:
        >>> from agentgraph import mlp
        >>> from agentgraph.compiler.plan import make_plan
        >>> plan, _, _ = make_plan(mlp([3, 4, 2]))  # make_plan calls fuse_linear
        >>> sorted({p.lowering for w in plan.forward for b in w for p in b.ports} & {"matmul"})
        ['matmul']
    """
    out, removed = {}, {}
    for t, waves in sweeps.items():
        cands = {}
        for wave in waves:
            for blk in wave:
                kd = kinds[blk.kind]
                if blk.rows_key:
                    continue
                ports = {p.port: p for p in blk.ports}
                for o, lin in kd.declared_linear(t).items():
                    grid = _grid(ports.get(lin.port))
                    coef = kd.fields.get(lin.coef)
                    size = kd.outputs(t).get(o)
                    if grid is None or coef is None or coef.per_example or size is None or coef.shape not in ((), (size,)):
                        continue
                    axis, Q = grid
                    ip = ports[lin.port]
                    link = LinearLink(blk.kind, blk.group, o, blk.start, blk.n // Q, Q, axis, lin.port, ip.size, ip.base)
                    cands[(size, base[(t, blk.kind, o)] + blk.start)] = link
        new_waves = [[dataclasses.replace(blk, ports=tuple(_as_matmul(p, blk.n, cands) for p in blk.ports))
                      for blk in wave] for wave in waves]
        # an output is dropped when a matmul port reads it and nothing else does
        read = {s: np.zeros(r, bool) for (tt, s), r in buffer_rows.items() if tt == t}
        for wave in new_waves:
            for blk in wave:
                for p in blk.ports:
                    if p.size in read and not BY_NAME[p.lowering].fused:
                        read[p.size][rows_read(p, blk.n, arrays)] = True
        dropped = {}  # outputs no port reads except through matmul: never computed
        for wave in new_waves:
            for b in wave:
                if b.rows_key:
                    continue
                for o, size, o_base in b.outputs:
                    if size in read and not read[size][o_base + b.start:o_base + b.stop].any():
                        dropped.setdefault((b.kind, b.start), set()).add(o)
        final = []
        for wave in new_waves:
            final.append(tuple(
                dataclasses.replace(b, dropped=tuple(sorted(dropped.get((b.kind, b.start), ())))) if not b.rows_key else b
                for b in wave))
        out[t] = tuple(final)
        removed[t] = _unread_ranges(kinds, t, out[t], read)
    out, rows = _compact(out, removed, arrays, buffer_rows, shifts)
    unwritten: dict = {}
    for t in out:
        if t != "forward":
            out[t] = _fuse_outer(kinds, t, out.get("forward", ()), out[t], unwritten)
    if unwritten:
        out["forward"] = tuple(tuple(dataclasses.replace(b, unwritten=tuple(sorted(unwritten[(b.kind, b.start, b.stop)])))
                                     if (b.kind, b.start, b.stop) in unwritten and not b.rows_key else b for b in wave)
                               for wave in out["forward"])
    return out, rows


def _unread_ranges(kinds, t, waves, read) -> dict:
    """``{size: [(lo, hi), ...]}``: buffer row ranges of (kind, output)s every block of which is
    contiguous and dropped the output — nobody writes or reads them."""
    by_out: dict = {}
    for wave in waves:
        for b in wave:
            for o, size, o_base in b.outputs:
                by_out.setdefault((b.kind, o, size, o_base), []).append(b)
    ranges: dict = {}
    for (k, o, size, o_base), blocks in by_out.items():
        if all(not b.rows_key and o in b.dropped for b in blocks):
            lo, hi = o_base + min(b.start for b in blocks), o_base + max(b.stop for b in blocks)
            if not read[size][lo:hi].any() and sum(b.n for b in blocks) == hi - lo:
                ranges.setdefault(size, []).append((lo, hi))
    return ranges


def _compact(sweeps, removed, arrays, buffer_rows, shifts=()):
    """Remove the ``removed`` row ranges from the buffers and shift every row index after them
    (also in the arrays ``shifts`` names: ``(sweep, size, key)``)."""
    rows = dict(buffer_rows)
    for t, by_size in removed.items():
        shift = {}
        for size, ranges in by_size.items():
            keep = np.ones(rows[(t, size)], bool)
            for lo, hi in ranges:
                keep[lo:hi] = False
            new_index = np.cumsum(keep) - keep  # old row -> new row (for kept rows)
            shift[size] = new_index
            rows[(t, size)] = int(keep.sum())
        if not shift:
            continue
        mv = lambda size, r: int(shift[size][min(r, len(shift[size]) - 1)]) if size in shift else r  # noqa: E731
        waves = []
        for wave in sweeps[t]:
            blocks = []
            for b in wave:
                ports = []
                for p in b.ports:
                    if p.lowering in ("segment", "gather", "pick") and p.size in shift:
                        src = arrays[p.key + "/src"]
                        live = src < len(shift[p.size])  # pick: receivers without an arrow stay past the end
                        arrays[p.key + "/src"] = np.where(live, shift[p.size][np.where(live, src, 0)], src).astype(src.dtype)
                    elif p.lowering == "matmul":
                        p = dataclasses.replace(p, link=dataclasses.replace(p.link, in_base=mv(p.link.in_size, p.link.in_base)))
                    elif p.lowering not in ("zeros", "conv", "conv_t"):  # conv rows move through `shifts`
                        p = dataclasses.replace(p, base=mv(p.size, p.base))
                    ports.append(p)
                outs = tuple((o, size, mv(size, o_base)) for o, size, o_base in b.outputs)
                blocks.append(dataclasses.replace(b, ports=tuple(ports), outputs=outs))
            waves.append(tuple(blocks))
        sweeps[t] = tuple(waves)
        for tt, size, key in shifts:
            if tt == t and size in shift:
                arrays[key] = shift[size][arrays[key]]
    return sweeps, rows


def _as_matmul(p, n: int, cands):
    """Port ``p`` of a block of ``n`` receivers as a ``matmul`` port, if it sums one whole linear
    block's output over the axis that block's input runs along; else ``p`` unchanged."""
    if p.lowering not in ("rows", "strided") or p.aggregation not in ("sum", "mean"):
        return p
    link = cands.get((p.size, p.base))
    if link is None or p.n_edges != link.P * link.Q:
        return p
    if p.lowering == "rows":  # receiver p sums over q
        ok = link.in_axis == 1 and p.param == link.Q and n == link.P
    else:  # strided: receiver q sums over p
        ok = link.in_axis == 0 and p.param == link.P and n == link.Q
    return dataclasses.replace(p, lowering="matmul", link=link) if ok else p


def _fuse_outer(kinds, t, forward, waves, unwritten: dict):
    """Outer links of the blocks of sweep ``t`` whose kind declares an :class:`Outer` update
    for ``t``: both vectors broadcast along different axes of one dense block. A stored field
    declared ``scratch`` is read from the forward sweep's buffer instead, and its forward block
    is entered in ``unwritten[(kind, start, stop)]`` (a set of fields it need not write)."""
    fwd = {(b.kind, b.start, b.stop): b for w in forward for b in w if not b.rows_key}
    result = []
    for wave in waves:
        blocks = []
        for blk in wave:
            kd = kinds[blk.kind]
            f_blk = fwd.get((blk.kind, blk.start, blk.stop))
            links = []
            for field, dec in kd.declared_outer().items():
                if dec.phase != t or blk.rows_key:
                    continue
                if dec.pair is None and f_blk is None:
                    continue
                m = _grid(next((p for p in blk.ports if p.port == dec.port), None))
                xs = blk.ports if dec.pair is not None else f_blk.ports
                xp = next((p for p in xs if p.port == (dec.pair if dec.pair is not None else dec.stored_from)), None)
                x = _grid(xp)
                spec, st = kd.fields.get(field), kd.fields.get(dec.stored)
                stored_ok = dec.pair is not None or (st is not None and st.per_example)
                if (m is None or x is None or m[0] == x[0] or m[1] != x[1] or spec is None or spec.per_example
                        or not stored_ok):
                    continue
                mp = next(p for p in blk.ports if p.port == dec.port)
                Q = m[1]
                from_fwd = dec.pair is None and st.scratch and xp.source == "now"
                pair = (xp.base, xp.size) if dec.pair is not None or from_fwd else (0, 0)
                links.append(OuterLink(field, blk.n // Q, Q, m[0], mp.base, mp.size, *pair, x_forward=from_fwd))
                if from_fwd:
                    unwritten.setdefault((blk.kind, blk.start, blk.stop), set()).add(dec.stored)
            blocks.append(dataclasses.replace(blk, outer=tuple(links)) if links else blk)
        result.append(tuple(blocks))
    return tuple(result)


# ----------------------------------------------------------------------------------------------
# trace time
# ----------------------------------------------------------------------------------------------
def _per_example(fn, params, u):
    return jax.vmap(jax.vmap(lambda v: fn(params, v)))(u)


def _senders(kind: Kind, sweep: str, port: str, params, bufs, size: int, base: int, count: int):
    u = bufs.rows(size, base, base + count)
    if port in kind.premaps(sweep):
        u = premap_fn(kind, params, sweep, port)(u)
    return u


def receive_matmul(p, sweep: str, bufs, coefs, kinds: Mapping[str, Kind], params) -> jax.Array:
    """The aggregate ``[n, B, size]`` of a ``matmul`` port: ``einsum`` of the sending block's
    coefficients (``coefs[kind][field]``, values at the start of the sweep) and its senders'
    vectors.

    Example:
        >>> import jax.numpy as jnp
        >>> from agentgraph import mlp, compile
        >>> from agentgraph.protocols import gradient
        >>> g = mlp([3, 4, 2], loss="l2"); prog = compile(g)
        >>> _, loss = prog.step(gradient.params(g, 0.1), prog.init(2), {"x": jnp.ones((2, 3)), "y": jnp.ones((2, 2))})
        >>> loss.shape
        ()
    """
    L: LinearLink = p.link
    kind = kinds[L.kind]
    lin = kind.linear(sweep)[L.output]
    prm = params.get(L.group)
    count = L.P if L.in_axis == 0 else L.Q
    u = _senders(kind, sweep, L.in_port, prm, bufs, L.in_size, L.in_base, count)
    if lin.pre is not None:
        u = _per_example(lin.pre, prm, u)
    W = coefs[L.kind][lin.coef][L.start:L.start + L.P * L.Q]
    W = W.reshape(L.P, L.Q, *W.shape[1:]).astype(u.dtype)
    if W.ndim == 2:
        res = jnp.einsum("pq,pbd->qbd" if L.in_axis == 0 else "pq,qbd->pbd", W, u)
    else:
        res = jnp.einsum("pqd,pbd->qbd" if L.in_axis == 0 else "pqd,qbd->pbd", W, u)
    return res / count if p.aggregation == "mean" else res


def outer_update(blk, link: OuterLink, bufs, state: Mapping[str, jax.Array], kind: Kind, params, B: int,
                 forward_bufs=None) -> jax.Array:
    """The fused update ``[n, *field_shape]`` (already the batch mean) of one outer link of a
    block; ``state`` is the kind's state (stored field filled by the forward sweep), ``bufs`` the
    phase's :class:`~agentgraph.compiler.buffers.Messages`, ``forward_bufs`` the forward sweep's
    (read by links of a scratch stored field)."""
    dec = kind.outer_updates()[link.field]
    t = dec.phase
    Q, P = link.Q, link.P
    m_count = P if link.m_axis == 0 else Q
    m = _senders(kind, t, dec.port, params, bufs, link.m_size, link.m_base, m_count)
    if dec.message_map is not None:
        m = _per_example(dec.message_map, params, m)
    x_count = Q if link.m_axis == 0 else P
    if dec.pair is not None:  # the other vector is a message of the same phase
        x = _senders(kind, t, dec.pair, params, bufs, link.x_size, link.x_base, x_count)
    elif link.x_forward:  # what the forward sweep would have stored: its senders' messages
        if forward_bufs is None:
            raise ValueError(f"the fused update of {link.field!r} reads the scratch field {dec.stored!r}, but no forward "
                             "sweep ran before it in this step; give the field scratch=False")
        x = _senders(kind, "forward", dec.stored_from, params, forward_bufs, link.x_size, link.x_base, x_count)
    elif link.m_axis == 1:  # stored input runs along p: rows start + p·Q
        x = jax.lax.slice_in_dim(state[dec.stored], blk.start, blk.start + P * Q, stride=Q)
    else:
        x = jax.lax.slice_in_dim(state[dec.stored], blk.start, blk.start + Q)
    x = x.reshape(x.shape[0], B, -1)
    if dec.stored_map is not None:
        x = _per_example(dec.stored_map, params, x)
    m = m.reshape(m.shape[0], B, -1)
    xp, mq = (x, m) if link.m_axis == 1 else (m, x)  # [P, B, d], [Q, B, d]
    u = jnp.einsum("pbd,qbd->pqd", xp, mq) / B
    shape = kind.fields[link.field].shape
    u = u * jnp.reshape(jnp.asarray(dec.scale(params), u.dtype), (-1,))
    if dec.decay is not None:
        W = state[link.field][blk.start:blk.stop].reshape(P, Q, -1)
        u = u + jnp.reshape(jnp.asarray(dec.decay(params), u.dtype), (-1,)) * W
    return u.reshape(P * Q, *shape)


def _recv_matmul(inbox, p, n: int, B: int, fn) -> jax.Array:
    return fn(receive_matmul(p, inbox.sweep, inbox.bufs, inbox.coefs, inbox.kinds, inbox.params))


register_fused("matmul", _recv_matmul)
