"""Convolutions: a tied block of linear synapse agents in a convolution layout, lowered to
``lax.conv_general_dilated`` instead of per-use gathers.

A ``"conv"`` layout hint (recorded by :func:`~agentgraph.builders.cnn`,
:meth:`~agentgraph.AgentGraph.add_hint`) names a layer's synapse agents per use
``(c_out, c_in, i, j, y, x)`` (``-1`` where the use would read zero padding), its input units in
``(c_in, y, x)`` order, its output units in ``(c_out, y, x)`` order and the geometry (input shape,
stride, padding). :func:`fuse_conv` **verifies** the hint against the graph — every use's kind
declares ``out = w ⊙ x`` forward and ``out = w ⊙ m`` backward (:class:`~agentgraph.nodes.Linear`)
and the update ``scale ⊙ m ⊙ x`` of ``w`` from a scratch stored input
(:class:`~agentgraph.nodes.Outer`); the uses carry exactly the arrows the geometry implies and
no others; the uses of one kernel entry form exactly one tie of ``w``; the uses form one forward
and one backward block; the output units' port receives nothing else — and only then rewrites:

* the output units' forward port gets lowering ``"conv"``: ``conv(input map, kernel)`` with the
  kernel gathered from the tie's shared values (its value at the start of the sweep);
* the input units' backward port (if any) gets ``"conv_t"``: the convolution's input cotangent of
  the output units' messages (``Σ_uses w m``);
* the synapse backward block gets a fused kernel update (``BlockPlan.conv``): ``scale / B`` times
  the convolution's kernel cotangent (``Σ_b Σ_positions m x`` — the sum over the tie's members of
  their batch-mean updates, the tie's ``"sum"`` reduction), added to the shared values;
* the synapses' outputs are read by nobody else (dropped) and their stored input is never written,
  so XLA removes the per-use work; their rows of the tied field are never expanded
  (:class:`~agentgraph.compiler.ties.TiePlan` ``skip``).

A hint that does not verify is ignored (the generic lowering runs). The property test compares
both lowerings and the interpreter (``tests/compiler/test_conv.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.compiler.lowerings import register_fused

if TYPE_CHECKING:
    from agentgraph.compiler.buffers import Messages

__all__ = ["ConvLink", "conv_receive", "conv_transpose_receive", "conv_update", "fuse_conv"]


@dataclasses.dataclass(frozen=True)
class ConvLink:
    """One verified convolution layer: synapse kind ``kind`` (group ``group``) with tied
    coefficient ``field`` and scratch stored input ``stored``; the index arrays under ``key``:
    ``/kslot`` (``[Co·Ci·k·k]`` shared slot of each kernel entry), ``/x`` (forward buffer rows of
    the input units, ``(c, y, x)`` order), ``/m`` (backward buffer rows of the output units'
    messages, ``(c, y, x)`` order)."""

    kind: str
    group: str
    field: str
    stored: str
    in_shape: tuple[int, int, int]
    out_channels: int
    kernel: int
    stride: int
    padding: int
    key: str
    uses: int
    x_rows: tuple[int, int] = (0, 0)  # forward buffer rows lo..hi of /x (set by compiler.buffers.windows)
    m_rows: tuple[int, int] = (0, 0)  # backward buffer rows lo..hi of /m
    ranges: tuple[str, ...] = ()  # index arrays (x, m, out_perm, in_perm, kslot) that are plain ranges: slices

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """``(Co, Ho, Wo)``."""
        _, H, W = self.in_shape
        o = lambda n: (n + 2 * self.padding - self.kernel) // self.stride + 1  # noqa: E731
        return self.out_channels, o(H), o(W)


# ----------------------------------------------------------------------------------------------
# compile time
# ----------------------------------------------------------------------------------------------
def _declared(kd) -> tuple[str, str, str, str] | None:
    """``(coef field, stored field, forward port, backward port)`` if kind ``kd`` declares the
    linear synapse maths a convolution lowers, else ``None``."""
    lf, lb = kd.declared_linear("forward").get("out"), kd.declared_linear("backward").get("out")
    if lf is None or lb is None or lf.pre is not None or lb.pre is not None or lf.coef != lb.coef:
        return None
    oc = kd.declared_outer().get(lf.coef)
    if (oc is None or oc.phase != "backward" or oc.pair is not None or oc.message_map is not None
            or oc.stored_map is not None or oc.decay is not None or oc.port != lb.port or oc.stored_from != lf.port):
        return None
    st, coef = kd.fields.get(oc.stored), kd.fields.get(lf.coef)
    if st is None or not st.scratch or coef is None or coef.per_example or coef.shape != ():
        return None
    if dict(kd.forward_outputs) != {"out": 1} or dict(kd.backward_outputs) != {"out": 1}:
        return None
    if kd.premaps("forward") or kd.premaps("backward"):
        return None
    return lf.coef, oc.stored, lf.port, lb.port


def _block_of(sweeps, t: str, kind: str, rows: np.ndarray):
    """``(wave index, block index, block)`` of the one contiguous block of sweep ``t`` holding
    exactly ``rows`` of ``kind``, or ``None``."""
    lo, hi = int(rows.min()), int(rows.max()) + 1
    if hi - lo != len(rows):
        return None
    for wi, wave in enumerate(sweeps.get(t, ())):
        for bi, b in enumerate(wave):
            if b.kind == kind and not b.rows_key and b.start == lo and b.stop == hi:
                return wi, bi, b
    return None


def _one_each(sel: np.ndarray, ends: np.ndarray, uses: np.ndarray, pos: np.ndarray) -> np.ndarray | None:
    """For arrows ``sel`` whose end ``ends[sel]`` are uses: the arrow of each use (in ``uses``
    order) if every use has exactly one, else ``None``."""
    if len(sel) != len(uses):
        return None
    k = pos[ends[sel]]
    if np.any(k < 0) or len(np.unique(k)) != len(uses):
        return None
    out = np.empty(len(uses), np.int64)
    out[k] = sel
    return out


def fuse_conv(graph, A, row: np.ndarray, sweeps: dict, base: Mapping[tuple, int], arrays: dict,
              tie_slots: Mapping[tuple[str, str], np.ndarray]) -> tuple[dict, list[ConvLink], list]:
    """Rewrite ``sweeps`` for every verified ``"conv"`` hint of ``graph`` (module docstring).

    Args:
        graph: the graph; ``A`` its arrays; ``row`` each agent's row in its kind.
        sweeps: ``{sweep: waves of BlockPlan}`` after port lowering (before :func:`fuse_linear`).
        base: ``{(sweep, kind, output): first buffer row}``.
        arrays: the plan's array part (new index arrays are added).
        tie_slots: ``{(kind, field): int [N_kind]}`` each row's shared slot.

    Returns:
        ``(sweeps, links, shifts)``: the rewritten sweeps, the :class:`ConvLink` s, and
        ``[(sweep, size, array key), ...]``: arrays of buffer rows that move when rows are removed.
    """
    links, shifts = [], []
    sweeps = {t: [list(w) for w in waves] for t, waves in sweeps.items()}
    fwd_m, bwd_m = A.type_mask("forward"), A.type_mask("backward")
    for h in graph.hints("conv"):
        syn, inputs, outputs = (np.asarray(h[k], np.int64) for k in ("synapses", "inputs", "outputs"))
        Ci, H, W = (int(v) for v in h["in_shape"])
        s, p = int(h["stride"]), int(h["padding"])
        if syn.ndim != 6:
            continue
        Co, _, k, _, Ho, Wo = syn.shape
        if inputs.shape != (Ci * H * W,) or outputs.shape != (Co * Ho * Wo,) or syn.shape[1] != Ci:
            continue
        present = syn >= 0
        co, ci, i, j, y, x = np.nonzero(present)
        uses = syn[present]
        if not len(uses) or len(np.unique(A.kind[uses])) != 1:
            continue
        kname = A.kind_names[A.kind[uses[0]]]
        kd = graph.kinds[kname]
        dec = _declared(kd)
        if dec is None:
            continue
        field, stored, px, pm = dec
        if (kname, field) not in tie_slots:
            continue
        iy, ix = y * s + i - p, x * s + j - p
        if np.any((iy < 0) | (iy >= H) | (ix < 0) | (ix >= W)):
            continue
        want_src = inputs[(ci * H + iy) * W + ix]
        want_dst = outputs[(co * Ho + y) * Wo + x]
        pos = np.full(len(A.names), -1, np.int64)
        pos[uses] = np.arange(len(uses))
        touches = (pos[A.src] >= 0) | (pos[A.dst] >= 0)
        if np.any(touches & ~(fwd_m | bwd_m)) or np.any(touches & A.delay):
            continue
        f_in = _one_each(np.flatnonzero(fwd_m & (pos[A.dst] >= 0)), A.dst, uses, pos)
        f_out = _one_each(np.flatnonzero(fwd_m & (pos[A.src] >= 0)), A.src, uses, pos)
        b_in = _one_each(np.flatnonzero(bwd_m & (pos[A.dst] >= 0)), A.dst, uses, pos)
        b_out_sel = np.flatnonzero(bwd_m & (pos[A.src] >= 0))
        b_out = _one_each(b_out_sel, A.src, uses, pos) if len(b_out_sel) else None
        if f_in is None or f_out is None or b_in is None or (len(b_out_sel) and b_out is None):
            continue
        ok = (np.array_equal(A.src[f_in], want_src) and np.array_equal(A.dst[f_out], want_dst)
              and np.array_equal(A.src[b_in], want_dst) and np.all(A.port[f_in] == A.strings.index(px))
              and np.all(A.port[b_in] == A.strings.index(pm)))
        if b_out is not None:
            ok = ok and np.array_equal(A.dst[b_out], want_src)
        if not ok or len(np.unique(A.port[f_out])) != 1 or len(np.unique(A.src_port[b_in])) != 1:
            continue
        if len(np.unique(A.src_port[f_in])) != 1 or (b_out is not None and len(np.unique(A.port[b_out])) != 1):
            continue
        # ties: the uses of one kernel entry are exactly one tie's members
        slot = tie_slots[(kname, field)]
        entry = ((co * Ci + ci) * k + i) * k + j
        uslot = slot[row[uses]]
        first = np.full(Co * Ci * k * k, -1, np.int64)
        first[entry] = uslot
        if np.any(first[entry] != uslot) or np.any(first < 0) or len(np.unique(first)) != len(first):
            continue
        if not np.array_equal(np.bincount(slot, minlength=int(slot.max()) + 1)[first], np.bincount(entry)):
            continue
        # blocks: the uses are one forward and one backward block; the receivers' ports take only them
        fb, bb = _block_of(sweeps, "forward", kname, row[uses]), _block_of(sweeps, "backward", kname, row[uses])
        out_kind = A.kind_names[A.kind[outputs[0]]]
        ob = _block_of(sweeps, "forward", out_kind, row[outputs]) if len(np.unique(A.kind[outputs])) == 1 else None
        if fb is None or bb is None or ob is None:
            continue
        out_port = A.strings[A.port[f_out[0]]]
        oport = next((q for q in ob[2].ports if q.port == out_port), None)
        if oport is None or oport.n_edges != len(uses) or oport.aggregation != "sum" or out_port in graph.kinds[out_kind].premaps("forward"):
            continue
        ib = None
        if b_out is not None:
            in_kind = A.kind_names[A.kind[inputs[0]]]
            ib = _block_of(sweeps, "backward", in_kind, row[inputs]) if len(np.unique(A.kind[inputs])) == 1 else None
            in_port = A.strings[A.port[b_out[0]]]
            iport = None if ib is None else next((q for q in ib[2].ports if q.port == in_port), None)
            if (iport is None or iport.n_edges != len(uses) or iport.aggregation != "sum"
                    or in_port in graph.kinds[in_kind].premaps("backward")):
                continue
        key = f"conv/{len(links)}"
        link = ConvLink(kname, fb[2].group, field, stored, (Ci, H, W), int(Co), int(k), s, p, key, len(uses))
        arrays[key + "/kslot"] = first.astype(np.int32)
        x_kind = np.array(A.kind_names, dtype=object)[A.kind[inputs]]
        x_out = A.strings[A.src_port[f_in[0]]]
        arrays[key + "/x"] = np.array([base[("forward", kk, x_out)] for kk in x_kind], np.int64) + row[inputs]
        m_out = A.strings[A.src_port[b_in[0]]]
        arrays[key + "/m"] = (base[("backward", out_kind, m_out)] + row[outputs]).astype(np.int64)
        shifts += [("forward", 1, key + "/x"), ("backward", 1, key + "/m")]
        # receivers in block order -> canonical (c, y, x) index
        inv = np.empty(len(outputs), np.int64)
        inv[row[outputs] - ob[2].start] = np.arange(len(outputs))
        arrays[key + "/out_perm"] = inv.astype(np.int32)
        _replace_port(sweeps, "forward", ob, oport, link)
        if ib is not None:
            inv = np.empty(len(inputs), np.int64)
            inv[row[inputs] - ib[2].start] = np.arange(len(inputs))
            arrays[key + "/in_perm"] = inv.astype(np.int32)
            _replace_port(sweeps, "backward", ib, iport, link, "conv_t")
        wi, bi, blk = fb
        sweeps["forward"][wi][bi] = dataclasses.replace(blk, dropped=("out",), unwritten=(stored,))
        wi, bi, blk = bb
        sweeps["backward"][wi][bi] = dataclasses.replace(blk, dropped=("out",), conv=link)
        links.append(link)
    return {t: tuple(tuple(w) for w in waves) for t, waves in sweeps.items()}, links, shifts


def _replace_port(sweeps, t: str, found, port, link: ConvLink, lowering: str = "conv") -> None:
    """Port ``port`` (a PortPlan) of the block ``found`` now receives through ``link``."""
    wi, bi, _ = found
    blk = sweeps[t][wi][bi]
    new = dataclasses.replace(port, lowering=lowering, base=0, param=0, key=link.key, link=link)
    sweeps[t][wi][bi] = dataclasses.replace(blk, ports=tuple(new if q.port == port.port else q for q in blk.ports))


# ----------------------------------------------------------------------------------------------
# trace time
# ----------------------------------------------------------------------------------------------
def _conv(link: ConvLink, x, K):
    s, p = link.stride, link.padding
    return jax.lax.conv_general_dilated(x, K, (s, s), [(p, p), (p, p)], dimension_numbers=("NCHW", "OIHW", "NCHW"))


def _index(link: ConvLink, arrays, name: str, value, start: int = 0):
    """``value[arrays[key/name] - start]`` along axis 0; a slice where the index array is ``arange(n)``
    (``start`` 0)."""
    idx = arrays[link.key + "/" + name]
    if name in link.ranges and not start:
        return jax.lax.slice_in_dim(value, 0, idx.shape[0])
    return value[idx - start if start else idx]


def _kernel(link: ConvLink, shared: Mapping, arrays, dtype):
    Ci = link.in_shape[0]
    K = _index(link, arrays, "kslot", shared[(link.kind, link.field)])
    return K.reshape(link.out_channels, Ci, link.kernel, link.kernel).astype(dtype)


def _map(link: ConvLink, bufs, arrays, name: str, window: tuple[int, int], shape):
    """Buffer rows ``[n, B, 1]`` (index array ``name``, within ``window``) in ``(c, y, x)`` order →
    ``[B, C, H, W]``."""
    if name in link.ranges:
        v = bufs.rows(1, *window)
    else:
        buf, off = bufs.window(1, *window)
        v = _index(link, arrays, name, buf, off)
    v = v[..., 0]
    return jnp.transpose(v).reshape(v.shape[1], *shape)


def _rows(link: ConvLink, arrays, name: str, v):
    """``[B, C, H, W]`` → receivers ``[n, B, 1]`` in block order (``name``: receiver → (c, y, x) index)."""
    flat = v.reshape(v.shape[0], -1)
    if name not in link.ranges:
        flat = flat[:, arrays[link.key + "/" + name]]
    return jnp.transpose(flat)[..., None]


def conv_receive(p, bufs: Messages, shared: Mapping, arrays) -> jax.Array:
    """The ``"conv"`` port: ``Σ_uses w x`` per output unit ``[n, B, 1]`` (module docstring)."""
    link: ConvLink = p.link
    x = _map(link, bufs, arrays, "x", link.x_rows, link.in_shape)
    return _rows(link, arrays, "out_perm", _conv(link, x, _kernel(link, shared, arrays, x.dtype)))


def _vjp(link: ConvLink, x, K, m):
    _, back = jax.vjp(lambda K_, x_: _conv(link, x_, K_), K, x)
    return back(m)


def conv_transpose_receive(p, bufs: Messages, shared: Mapping, arrays, forward_bufs: Messages) -> jax.Array:
    """The ``"conv_t"`` port: ``Σ_uses w m`` per input unit ``[n, B, 1]`` (module docstring)."""
    link: ConvLink = p.link
    m = _map(link, bufs, arrays, "m", link.m_rows, link.out_shape)
    K = _kernel(link, shared, arrays, m.dtype)
    x = jnp.zeros((m.shape[0], *link.in_shape), m.dtype)  # the input cotangent does not depend on x
    _, dx = _vjp(link, x, K, m)
    return _rows(link, arrays, "in_perm", dx)


def conv_update(link: ConvLink, kind, params, bufs: Messages, forward_bufs: Messages | None,
                shared: Mapping, arrays, B: int) -> tuple[jax.Array, jax.Array]:
    """The fused kernel update: ``(slots [Co·Ci·k·k], change)`` to add to the tie's shared values —
    ``scale / B`` times the kernel cotangent of the output units' messages."""
    if forward_bufs is None:
        raise ValueError(f"the convolution's update of {link.field!r} reads the forward sweep's messages, but no "
                         "forward sweep ran before it in this step")
    m = _map(link, bufs, arrays, "m", link.m_rows, link.out_shape)
    x = _map(link, forward_bufs, arrays, "x", link.x_rows, link.in_shape)
    K = _kernel(link, shared, arrays, m.dtype)
    dK, _ = _vjp(link, x, K, m)
    scale = jnp.reshape(jnp.asarray(kind.outer_updates()[link.field].scale(params), m.dtype), ())
    return arrays[link.key + "/kslot"], scale * dK.reshape(-1) / B


register_fused("conv", lambda inbox, p, n, B, fn: conv_receive(p, inbox.bufs, inbox.shared, inbox.arrays))
register_fused("conv_t", lambda inbox, p, n, B, fn: conv_transpose_receive(p, inbox.bufs, inbox.shared, inbox.arrays,
                                                                           inbox.forward))
