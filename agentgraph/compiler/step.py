"""One inner step of a lowered graph: blocks run wave by wave, messages flow through buffers.

:func:`step` is the pure function behind :meth:`~agentgraph.compiler.Program.step`: given the
static :class:`~agentgraph.compiler.plan.Plan`, the kinds and the program's index arrays, it runs
the forward sweep (then, unless ``backward=False``, the backward sweep and the reflexive arrows)
as one batched call of each kind's per-agent function per block (:func:`run_block`). Shapes:
per-agent state fields ``[N_kind, *shape]``, per-example fields and messages ``[N_kind, B, ...]``.

A block whose kind function cannot be traced raises :class:`BlockError` (which block, why); the
program turns it into an :class:`~agentgraph.AgentGraphError` naming an agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.compiler.linear import outer_update, receive_matmul
from agentgraph.compiler.lowerings import premap_fn, receive
from agentgraph.compiler.plan import BlockPlan, Plan
from agentgraph.nodes.base import Kind

__all__ = ["BlockError", "run_block", "step", "step_jit"]


def _split(kind: Kind, st: Mapping[str, jax.Array]):
    pa = {f: v for f, v in st.items() if not kind.fields[f].per_example}
    ex = {f: v for f, v in st.items() if kind.fields[f].per_example}
    return pa, ex


def run_block(kind: Kind, sweep: str, params, st, inputs, B: int, unchanged: set | None = None):
    """Apply ``kind.<sweep>`` to ``n`` agents × ``B`` examples: st per-agent ``[n, ...]``,
    per-example ``[n, B, ...]``; inputs ``[n, B, size]``. Returns ``(new, outputs, updates)``
    shaped ``[n, B, ...]``. ``unchanged`` (if given) receives the per-example fields the kind
    returned as they were (the very input value), which need not be written back."""
    pa, ex = _split(kind, st)

    def per_example(pa1, ex1, in1):
        state = {**pa1, **ex1}
        if sweep == "forward":
            new, raw = kind.forward(params, state, in1)
            upd = {}
        elif sweep == "backward":
            new, raw, upd = kind.backward(params, state, in1)
        else:
            new, raw, upd = kind.reflexive(params, state), {}, {}
        if not isinstance(raw, Mapping):
            raw = {"out": raw}
        if unchanged is not None:
            unchanged.update(f for f in ex1 if new.get(f) is ex1[f])
        return new, dict(raw), dict(upd or {})

    # one vmap over the n*B (agent, example) rows: the kind's matmuls become plain 2-d
    # [rows, in] @ [in, out] products (two nested vmaps give [n, B, in] operands, whose weight
    # gradients XLA:CPU computes through transposed copies)
    n = next(iter(jax.tree.leaves((inputs, pa, ex)))).shape[0]
    to_rows = lambda v: v.reshape(n * B, *v.shape[2:])  # noqa: E731
    pa_rows = jax.tree.map(lambda v: to_rows(jnp.broadcast_to(v[:, None], (n, B, *v.shape[1:]))), pa)
    out = jax.vmap(per_example)(pa_rows, jax.tree.map(to_rows, ex), jax.tree.map(to_rows, inputs))
    return jax.tree.map(lambda v: v.reshape(n, B, *v.shape[1:]), out)


def _run_block_reflexive(kind: Kind, params, st, n, B, dtype):
    """``kind.reflexive`` on ``n`` agents × ``B`` examples; returns fields shaped ``[n, B, ...]``."""
    pa, ex = _split(kind, st)

    def per_example(pa1, ex1):
        return kind.reflexive(params, {**pa1, **ex1})

    if ex:
        new = jax.vmap(jax.vmap(per_example, in_axes=(None, 0)), in_axes=(0, 0))(pa, ex)
    else:  # no per-example fields: every example would compute the same thing
        one = jax.vmap(lambda p: per_example(p, {}))(pa)
        new = jax.tree.map(lambda v: jnp.broadcast_to(v[:, None], (v.shape[0], B, *v.shape[1:])), one)
    return new, None, None


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


def step(plan: Plan, kinds_items, arrays, params, state, batch, backward: bool = True):
    """One inner step ``(state, batch) -> (state, loss)`` of the graph ``plan`` describes.

    Args:
        plan: the static plan.
        kinds_items: ``((name, Kind), ...)`` (hashable: a static argument of :data:`step_jit`).
        arrays: ``{key: array}`` the plan's index arrays.
        params: ``{group: pytree}``.
        state: ``{kind: {field: array}}``.
        batch: ``{key: [B, n(, d)]}``.
        backward: ``False``: the forward sweep only.
    """
    kinds = dict(kinds_items)
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

    def rows_of(blk: BlockPlan | Any):
        return arrays[blk.rows_key] if blk.rows_key else None

    sweeps = (("forward", plan.forward), ("backward", plan.backward)) if backward else (("forward", plan.forward),)
    for sweep, waves in sweeps:
        bufs = {s: jnp.zeros((m, B, s), dtype) for t, s, m in plan.buffers if t == sweep}
        coefs = {k: dict(v) for k, v in state.items()}  # per-agent values at the sweep's start (matmul ports)
        for wave in waves:
            results = []
            for blk in wave:
                kind = kinds[blk.kind]
                rows = rows_of(blk)
                st = {f: _rows(v, blk.start, blk.stop, rows) for f, v in state[blk.kind].items()}
                try:
                    pre = kind.premaps(sweep)
                    inputs = {}
                    for p in blk.ports:
                        fn = premap_fn(kind, params.get(blk.group), sweep, p.port) if p.port in pre else None
                        if p.lowering == "matmul":
                            agg = receive_matmul(p, sweep, bufs, coefs, kinds, params)
                            inputs[p.port] = agg if fn is None else fn(agg)
                        else:
                            inputs[p.port] = receive(bufs.get(p.size), p, blk.n, B, arrays, dtype=dtype, premap=fn)
                    if blk.slots_key:
                        cols = data[kind.external][:, arrays[blk.slots_key]]  # [B, n, d]
                        inputs["data"] = jnp.swapaxes(cols, 0, 1)
                    same: set = set()
                    new, raw, upd = run_block(kind, sweep, params.get(blk.group), st, inputs, B, same)
                    _check_block(kind, sweep, blk, B, st, new, raw, upd)
                    raw = {o: v for o, v in raw.items() if o not in blk.dropped}
                    fused = {ol.field: outer_update(blk, ol, bufs, state[blk.kind], kind, params.get(blk.group), B)
                             for ol in blk.outer}
                except BlockError:
                    raise
                except Exception as e:  # tracing a kind's function failed: say which block
                    raise BlockError(sweep, blk.kind, blk.group, blk.start, e) from e
                new = {f: v for f, v in new.items() if f not in same}
                results.append((blk, rows, new, raw, upd, fused))
            # write after the whole wave (agents of one wave never read each other)
            for blk, rows, new, raw, upd, fused in results:
                kind = kinds[blk.kind]
                for f, spec in kind.fields.items():
                    if spec.per_example and f in new:
                        state[blk.kind][f] = _set_rows(state[blk.kind][f], blk.start, rows, new[f])
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
                        bufs[size] = jax.lax.dynamic_update_slice_in_dim(bufs[size], val, base + blk.start, 0)
                    else:  # padding rows would land on the next kind's rows: send them past the end
                        n_k = next(l.n for l in plan.kinds if l.kind == blk.kind)
                        dest = jnp.where(rows < n_k, base + rows, bufs[size].shape[0])
                        bufs[size] = bufs[size].at[dest].set(val, mode="drop")
        if sweep == "forward":
            per_ex = jnp.zeros((B,), dtype)
            for k in plan.loss_kinds:
                lv = state[k][kinds[k].loss_field]
                lv = lv.reshape(lv.shape[0], B, -1)
                if f"valid/{k}" in arrays:  # phantom agents of a bucket do not count
                    lv = jnp.where(arrays[f"valid/{k}"][:, None, None] > 0, lv, 0.0)
                per_ex = per_ex + lv.sum(axis=(0, 2))
            loss = per_ex.mean()

    for rp in plan.reflexive if backward else ():
        kind = kinds[rp.kind]
        rows = arrays[rp.rows_key]
        for _ in range(rp.repeats):
            st = {f: v.at[rows].get(mode="clip") for f, v in state[rp.kind].items()}
            new, _, _ = _run_block_reflexive(kind, params.get(rp.group), st, rows.shape[0], B, dtype)
            for f, spec in kind.fields.items():
                # per-agent fields: old + batch mean of the change (exact when unchanged)
                val = new[f] if spec.per_example else st[f] + (new[f] - st[f][:, None]).mean(axis=1)
                state[rp.kind][f] = state[rp.kind][f].at[rows].set(val.astype(dtype), mode="drop")
    return state, loss


#: :func:`step` compiled once per (plan, kinds): graphs with equal plans share the executable.
step_jit = jax.jit(step, static_argnums=(0, 1), static_argnames=("backward",))
