"""One inner step of a lowered graph: blocks run wave by wave, messages flow through buffers.

:func:`step` is the pure function behind :meth:`~agentgraph.compiler.Program.step`: given the
static :class:`~agentgraph.compiler.plan.Plan`, the kinds and the program's index arrays, it runs
the phases of the graph's schedule (with ``until_loss=True`` only up to the loss phase) as one
batched call of each kind's per-agent function per block (:func:`run_block`). Shapes: per-agent
state fields ``[N_kind, *shape]``, per-example fields and messages ``[N_kind, B, ...]``; the
messages in flight on delayed arrows are ``state["@delayed"]["type/size"]`` ``[M, B, size]``
(the type's whole buffer of that size from its previous run).

Tied fields (``plan.ties``) are stored once per tie, ``[slots, *shape]``; within a step they are
expanded to one row per agent (:func:`~agentgraph.compiler.ties.expand_ties`), every phase works on the rows as for untied
agents, and after each phase the rows' changes are reduced into the shared values
(:func:`~agentgraph.compiler.ties.join_ties`) — the semantics of :mod:`agentgraph.graph.ties`.

A block whose kind function cannot be traced raises :class:`BlockError` (which block, why); the
program turns it into an :class:`~agentgraph.AgentGraphError` naming an agent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.schedule import DELAYED
from agentgraph.compiler.buffers import Messages
from agentgraph.compiler.conv import conv_update
from agentgraph.compiler.linear import outer_update
from agentgraph.compiler.lowerings import Inbox, premap_fn, receive
from agentgraph.compiler.plan import Plan
from agentgraph.compiler.ties import expand_ties, join_ties
from agentgraph.nodes.base import Kind

__all__ = ["BlockError", "run_block", "step", "step_jit"]


def _split(kind: Kind, st: Mapping[str, jax.Array]):
    pa = {f: v for f, v in st.items() if not kind.fields[f].per_example}
    ex = {f: v for f, v in st.items() if kind.fields[f].per_example}
    return pa, ex


def run_block(kind: Kind, sweep: str, params, st, inputs, B: int, unchanged: set | None = None, n: int | None = None):
    """Apply ``kind.apply(sweep, ...)`` to ``n`` agents × ``B`` examples: st per-agent ``[n, ...]``,
    per-example ``[n, B, ...]``; inputs ``[n, B, size]``. Returns ``(new, outputs, updates)``
    shaped ``[n, B, ...]``. ``unchanged`` (if given) receives the fields the kind returned as
    they were (the very input value), which need not be written back. ``n`` is read from the
    arrays when not given (a kind with no fields and no inputs needs it given)."""
    pa, ex = _split(kind, st)

    def per_example(pa1, ex1, in1):
        state = {**pa1, **ex1}
        new, raw, upd = kind.apply(sweep, params, state, in1)
        if not isinstance(raw, Mapping):
            raw = {"out": raw}
        if unchanged is not None:
            unchanged.update(f for f in state if new.get(f) is state[f])
        return new, dict(raw), dict(upd or {})

    # one vmap over the n*B (agent, example) rows: the kind's matmuls become plain 2-d
    # [rows, in] @ [in, out] products (two nested vmaps give [n, B, in] operands, whose weight
    # gradients XLA:CPU computes through transposed copies)
    if n is None:
        n = next(iter(jax.tree.leaves((inputs, pa, ex)))).shape[0]
    to_rows = lambda v: v.reshape(n * B, *v.shape[2:])  # noqa: E731
    pa_rows = jax.tree.map(lambda v: to_rows(jnp.broadcast_to(v[:, None], (n, B, *v.shape[1:]))), pa)
    out = jax.vmap(per_example, axis_size=n * B)(pa_rows, jax.tree.map(to_rows, ex), jax.tree.map(to_rows, inputs))
    return jax.tree.map(lambda v: v.reshape(n, B, *v.shape[1:]), out)


def _run_block_self(kind: Kind, t: str, params, st, n, B):
    """``kind.apply(t, ...)`` with no messages on ``n`` agents × ``B`` examples; returns
    ``(fields, updates)`` shaped ``[n, B, ...]``."""
    pa, ex = _split(kind, st)

    def per_example(pa1, ex1):
        new, _raw, upd = kind.apply(t, params, {**pa1, **ex1}, {})
        return new, dict(upd or {})

    if ex:
        return jax.vmap(jax.vmap(per_example, in_axes=(None, 0)), in_axes=(0, 0))(pa, ex)
    # no per-example fields: every example would compute the same thing
    one = jax.vmap(lambda p: per_example(p, {}), axis_size=n)(pa)
    return jax.tree.map(lambda v: jnp.broadcast_to(v[:, None], (v.shape[0], B, *v.shape[1:])), one)


class BlockError(Exception):
    """Raised while tracing a block; :meth:`Program.step` turns it into an AgentGraphError."""

    def __init__(self, sweep: str, kind: str, group: str, row: int, cause: Exception | str) -> None:
        super().__init__(str(cause))
        self.sweep, self.kind, self.group, self.row, self.cause = sweep, kind, group, row, cause


def _check_block(kind: Kind, sweep: str, blk, B: int, st, new, raw, upd) -> None:
    n = blk.n
    for o, size in kind.outputs(sweep).items():
        if o in raw and tuple(raw[o].shape) != (n, B, size):
            raise BlockError(sweep, blk.kind, blk.group, blk.start,
                             f"output {o!r} has per-agent shape {tuple(raw[o].shape[2:])}; the kind declares ({size},)")
    extra = set(raw) - set(kind.outputs(sweep))
    if extra:
        raise BlockError(sweep, blk.kind, blk.group, blk.start, f"returned undeclared outputs {sorted(extra)}")
    for f, spec in kind.fields.items():
        if f not in new:
            raise BlockError(sweep, blk.kind, blk.group, blk.start, f"returned a state without field {f!r}")
        if spec.per_example and tuple(new[f].shape) != (n, B, *spec.shape):
            raise BlockError(sweep, blk.kind, blk.group, blk.start,
                             f"returned field {f!r} of shape {tuple(new[f].shape[2:])}; the kind declares {spec.shape}")
    for f, u in upd.items():
        spec = kind.fields.get(f)
        if spec is None or spec.per_example:
            raise BlockError(sweep, blk.kind, blk.group, blk.start, f"returned an update for {f!r}, which is not a per-agent field")
        if tuple(u.shape) != (n, B, *spec.shape):
            raise BlockError(sweep, blk.kind, blk.group, blk.start,
                             f"update for {f!r} has shape {tuple(u.shape[2:])}; the field has shape {spec.shape}")


def _rows(arr, blk_start: int, blk_stop: int, rows):
    if rows is not None:  # padding rows point past the end: clipped on read, dropped on write
        return arr.at[rows].get(mode="clip")
    return jax.lax.slice_in_dim(arr, blk_start, blk_stop)


def _set_rows(arr, blk_start: int, rows, val):
    if rows is not None:
        return arr.at[rows].set(val.astype(arr.dtype), mode="drop")
    if blk_start == 0 and val.shape == arr.shape:  # the block is the whole kind
        return val.astype(arr.dtype)
    return jax.lax.dynamic_update_slice_in_dim(arr, val.astype(arr.dtype), blk_start, 0)


def step(plan: Plan, kinds_items, arrays, params, state, batch, until_loss: bool = False):
    """One inner step ``(state, batch) -> (state, loss)`` of the graph ``plan`` describes.

    Args:
        plan: the static plan.
        kinds_items: ``((name, Kind), ...)`` (hashable: a static argument of :data:`step_jit`).
        arrays: ``{key: array}`` the plan's index arrays.
        params: ``{group: pytree}``.
        state: ``{kind: {field: array}}`` (and ``"@delayed"`` for graphs with delayed arrows).
        batch: ``{key: [B, n(, d)]}``.
        until_loss: stop after the phase the loss is read after (the forward sweep by default).
    """
    kinds = dict(kinds_items)
    mail = dict(state.get(DELAYED, {}))
    state = {l.kind: dict(state.get(l.kind, {})) for l in plan.kinds}
    some = next((v for k in state for f, v in state[k].items() if kinds[k].fields[f].per_example), None)
    if some is None:
        B = next(iter(np.shape(v)[0] for v in batch.values())) if batch else 1
    else:
        B = some.shape[1]
    dtype = next(iter(jax.tree.leaves(state)), jnp.zeros(())).dtype
    data = {}
    for k, v in batch.items():
        v = jnp.asarray(v, dtype)
        data[k] = v[..., None] if v.ndim == 2 else v

    runs = plan.schedule.runs()
    last = max(i for i, (ph, _) in enumerate(runs) if ph == plan.schedule.loss_index())
    selfs = dict(plan.selfs)
    loss = jnp.zeros((), dtype)
    for k, f in plan.absent:  # never written: zeros nobody reads (XLA removes them)
        spec = kinds[k].fields[f]
        n = next(l.n for l in plan.kinds if l.kind == k)
        state[k][f] = jnp.zeros((n, B, *spec.shape), dtype)
    shared = expand_ties(plan, arrays, state)
    pending: dict = {}  # convolutions' kernel updates, joined into the shared values after their phase
    swept: dict = {}  # the latest run's buffers of each sweep type (fused updates of scratch fields read the forward's)
    for i, (_, phase) in enumerate(runs):
        if phase.self_loops:
            sets = selfs.get(phase.type, ())
            _self_phase(plan, kinds, arrays, params, state, phase.type, sets, B, dtype)
            ran = {rp.kind for rp in sets}
        else:
            swept[phase.type] = _sweep(plan, kinds, arrays, params, state, mail, data, phase.type, B, dtype,
                                       swept.get("forward"), shared, pending)
            ran = {b.kind for w in plan.waves(phase.type) for b in w}
        join_ties(plan, arrays, state, shared, ran, pending)
        if i == last:
            loss = _loss(plan, kinds, arrays, state, B, dtype)
            if until_loss:
                break
    for tp in plan.ties:
        state[tp.kind][tp.field] = shared[(tp.kind, tp.field)]
    for k, f in plan.absent:
        state[k].pop(f, None)
    if mail:
        state[DELAYED] = mail
    return state, loss


def _loss(plan: Plan, kinds, arrays, state, B: int, dtype):
    """The batch mean of the per-example sum of every loss agent's loss."""
    per_ex = jnp.zeros((B,), dtype)
    for k in plan.loss_kinds:
        lv = state[k][kinds[k].loss_field]
        lv = lv.reshape(lv.shape[0], B, -1)
        if f"valid/{k}" in arrays:  # phantom agents of a bucket do not count
            lv = jnp.where(arrays[f"valid/{k}"][:, None, None] > 0, lv, 0.0)
        per_ex = per_ex + lv.sum(axis=(0, 2))
    return per_ex.mean()


def _self_phase(plan: Plan, kinds, arrays, params, state, t: str, sets, B: int, dtype) -> None:
    """One run of the self-loop phase of type ``t``: each set's function ``repeats`` times."""
    for rp in sets:
        kind = kinds[rp.kind]
        rows = arrays[rp.rows_key]
        for _ in range(rp.repeats):
            st = {f: v.at[rows].get(mode="clip") for f, v in state[rp.kind].items()}
            try:
                new, upd = _run_block_self(kind, t, params.get(rp.group), st, rows.shape[0], B)
            except Exception as e:  # tracing a kind's function failed: say which set
                raise BlockError(t, rp.kind, rp.group, 0, e) from e
            for f, spec in kind.fields.items():
                # per-agent fields: old + batch mean of the change (exact when unchanged), + mean update
                val = new[f] if spec.per_example else st[f] + (new[f] - st[f][:, None]).mean(axis=1)
                if f in upd:
                    val = val + upd[f].mean(axis=1)
                state[rp.kind][f] = state[rp.kind][f].at[rows].set(val.astype(dtype), mode="drop")


def _sweep(plan: Plan, kinds, arrays, params, state, mail, data, t: str, B: int, dtype, forward_bufs=None,
           shared=None, pending=None) -> dict:
    """One run of the sweep phase of type ``t``: blocks wave by wave, messages through buffers;
    delayed ports read ``mail`` (the previous run's buffers), which this run's buffers replace.
    ``forward_bufs``: the forward sweep's buffers of this step (read by fused updates of scratch
    fields). ``shared``: the tied fields' shared values at the sweep's start (read by convolutions);
    ``pending``: receives convolutions' kernel updates ``{(kind, field): [(slots, change)]}``.
    Returns this run's :class:`~agentgraph.compiler.buffers.Messages`."""
    bufs = Messages({s: m for tt, s, m in plan.buffers if tt == t}, B, dtype, t in plan.piecewise)
    prev = {s: mail[f"{t}/{s}"] for tt, s, _ in plan.delayed if tt == t}
    coefs = {k: dict(v) for k, v in state.items()}  # per-agent values at the sweep's start (matmul ports)
    inbox = Inbox(bufs, arrays, dtype, t, coefs, kinds, params, shared, forward_bufs)
    for wave in plan.waves(t):
        results = []
        for blk in wave:
            kind = kinds[blk.kind]
            rows = arrays[blk.rows_key] if blk.rows_key else None
            st = {f: _rows(v, blk.start, blk.stop, rows) for f, v in state[blk.kind].items()}
            try:
                pre = kind.premaps(t)
                inputs = {}
                for p in blk.ports:
                    fn = premap_fn(kind, params.get(blk.group), t, p.port) if p.port in pre else None
                    box = inbox
                    if p.source != "now" and p.size in prev:  # delayed arrows: the dense layout
                        old = prev[p.size]
                        box = dataclasses.replace(inbox, bufs=Messages.of({p.size: old if p.source == "prev" else
                                                                           jnp.concatenate([bufs.full(p.size), old])}))
                    inputs[p.port] = receive(box, p, blk.n, B, premap=fn)
                if blk.slots_key:
                    cols = data[kind.external][:, arrays[blk.slots_key]]  # [B, n, d]
                    inputs["data"] = jnp.swapaxes(cols, 0, 1)
                same: set = set()
                new, raw, upd = run_block(kind, t, params.get(blk.group), st, inputs, B, same, n=blk.n)
                _check_block(kind, t, blk, B, st, new, raw, upd)
                raw = {o: v for o, v in raw.items() if o not in blk.dropped}
                fused = {ol.field: outer_update(blk, ol, bufs, state[blk.kind], kind, params.get(blk.group), B,
                                                forward_bufs)
                         for ol in blk.outer}
                if blk.conv is not None:  # the kernel's update goes to the shared values; the uses' rows are not kept
                    key = (blk.kind, blk.conv.field)
                    pending.setdefault(key, []).append(conv_update(blk.conv, kind, params.get(blk.group), bufs, forward_bufs,
                                                                   shared, arrays, B))
                    upd = {f: u for f, u in upd.items() if f != blk.conv.field}
                    new = {f: v for f, v in new.items() if f != blk.conv.field}
            except BlockError:
                raise
            except Exception as e:  # tracing a kind's function failed: say which block
                raise BlockError(t, blk.kind, blk.group, blk.start, e) from e
            new = {f: v for f, v in new.items() if f not in same and f not in blk.unwritten}
            results.append((blk, rows, new, raw, upd, fused))
        # write after the whole wave (agents of one wave never read each other)
        for blk, rows, new, raw, upd, fused in results:
            kind = kinds[blk.kind]
            for f, spec in kind.fields.items():
                if spec.per_example and f in new:
                    state[blk.kind][f] = _set_rows(state[blk.kind][f], blk.start, rows, new[f])
            for f, spec in kind.fields.items():
                if not spec.per_example and f in new:  # returned changed: the batch mean of the values
                    cur = _rows(state[blk.kind][f], blk.start, blk.stop, rows)
                    state[blk.kind][f] = _set_rows(state[blk.kind][f], blk.start, rows,
                                                   cur + (new[f] - cur[:, None]).mean(axis=1))
            for f, u in upd.items():
                cur = _rows(state[blk.kind][f], blk.start, blk.stop, rows)
                mean = fused[f] if f in fused else u.mean(axis=1)
                state[blk.kind][f] = _set_rows(state[blk.kind][f], blk.start, rows, cur + mean)
            for o, size, base in blk.outputs:
                val = raw.get(o)
                if val is None:
                    continue
                val = jnp.broadcast_to(val, (blk.n, B, size)).astype(dtype)
                if rows is None:
                    bufs.write(size, base + blk.start, val)
                else:  # padding rows would land on the next kind's rows: send them past the end
                    n_k = next(l.n for l in plan.kinds if l.kind == blk.kind)
                    bufs.scatter(size, jnp.where(rows < n_k, base + rows, bufs.M[size]), val)
    for s in prev:
        mail[f"{t}/{s}"] = bufs.full(s)
    return bufs


#: :func:`step` compiled once per (plan, kinds): graphs with equal plans share the executable.
step_jit = jax.jit(step, static_argnums=(0, 1), static_argnames=("until_loss",))
