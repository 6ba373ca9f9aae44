"""`Program`: a lowered agent graph as pure JAX functions.

``compile(graph)`` returns a :class:`Program`. Its ``step`` / ``unroll`` are pure functions of
``(params, state, batch)`` that work under ``jit``, ``vmap`` (over tasks) and ``grad`` (through the
unroll). The program's index arrays are pytree leaves; its structure (the :class:`Plan`) is static,
so programs with equal plans share one executable.

State layout (a pytree): ``state[kind][field]`` — per-agent fields ``[N_kind, *shape]``,
per-example fields ``[N_kind, B, *shape]``; rows are numbered by the plan (``program.index``
maps each agent to its ``(kind, row)``).
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.compiler.plan import AgentRows, BlockPlan, Bucket, Plan, PortPlan, make_plan
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.nodes.base import Kind

__all__ = ["Program", "compile", "stack_arrays"]


# ----------------------------------------------------------------------------------------------
# port aggregation
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


def _receive(buf, p: PortPlan, n: int, B: int, arrays: Mapping[str, jax.Array], premap=None, dtype=None):
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
        return jnp.repeat(src, p.param, axis=0, total_repeat_length=n)
    if low == "tile":
        src = fn(jax.lax.slice_in_dim(buf, p.base, p.base + p.param))
        return _tile(src, n // p.param)
    if low == "gather":  # one arrow per receiver from a few senders: premap the senders only
        return fn(buf[arrays[p.key + "/src"]])[arrays[p.key + "/inv"]]
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


def _premap_fn(kind: Kind, params, sweep: str, port: str):
    """``kind.premap`` for one port, vmapped over ``[rows, B, size]``."""
    one = lambda m: kind.premap(params, sweep, port, m)  # noqa: E731
    return jax.vmap(jax.vmap(one))


# ----------------------------------------------------------------------------------------------
# one block: the kind's per-agent function, vmapped over agents and the inner batch
# ----------------------------------------------------------------------------------------------
def _split(kind: Kind, st: Mapping[str, jax.Array]):
    pa = {f: v for f, v in st.items() if not kind.fields[f].per_example}
    ex = {f: v for f, v in st.items() if kind.fields[f].per_example}
    return pa, ex


def _run_block(kind: Kind, sweep: str, params, st, inputs, B: int):
    """Apply ``kind.<sweep>`` to ``n`` agents × ``B`` examples: st per-agent ``[n, ...]``,
    per-example ``[n, B, ...]``; inputs ``[n, B, size]``. Returns ``(new, outputs, updates)``
    shaped ``[n, B, ...]``."""
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
        return new, dict(raw), dict(upd or {})

    # one vmap over the n*B (agent, example) rows: the kind's matmuls become plain 2-d
    # [rows, in] @ [in, out] products (two nested vmaps give [n, B, in] operands, whose weight
    # gradients XLA:CPU computes through transposed copies)
    n = next(iter(jax.tree.leaves((inputs, pa, ex)))).shape[0]
    to_rows = lambda v: v.reshape(n * B, *v.shape[2:])  # noqa: E731
    pa_rows = jax.tree.map(lambda v: to_rows(jnp.broadcast_to(v[:, None], (n, B, *v.shape[1:]))), pa)
    out = jax.vmap(per_example)(pa_rows, jax.tree.map(to_rows, ex), jax.tree.map(to_rows, inputs))
    return jax.tree.map(lambda v: v.reshape(n, B, *v.shape[1:]), out)


class _BlockError(Exception):
    """Raised while tracing a block; :meth:`Program.step` turns it into an AgentGraphError."""

    def __init__(self, sweep: str, kind: str, group: str, row: int, cause: Exception | str) -> None:
        super().__init__(str(cause))
        self.sweep, self.kind, self.group, self.row, self.cause = sweep, kind, group, row, cause


def _check_block(kind: Kind, sweep: str, blk, B: int, st, new, raw, upd) -> None:
    n = blk.n
    for o, size in kind.outputs(sweep).items():
        if o in raw and tuple(raw[o].shape) != (n, B, size):
            raise _BlockError(sweep, blk.kind, blk.group, blk.start,
                              f"output {o!r} has per-agent shape {tuple(raw[o].shape[2:])}; the kind declares ({size},)")
    extra = set(raw) - set(kind.outputs(sweep))
    if extra:
        raise _BlockError(sweep, blk.kind, blk.group, blk.start, f"returned undeclared outputs {sorted(extra)}")
    for f, spec in kind.fields.items():
        if f not in new:
            raise _BlockError(sweep, blk.kind, blk.group, blk.start, f"returned a state without field {f!r}")
        if spec.per_example and tuple(new[f].shape) != (n, B, *spec.shape):
            raise _BlockError(sweep, blk.kind, blk.group, blk.start,
                              f"returned field {f!r} of shape {tuple(new[f].shape[2:])}; the kind declares {spec.shape}")
    for f, u in upd.items():
        spec = kind.fields.get(f)
        if spec is None or spec.per_example:
            raise _BlockError(sweep, blk.kind, blk.group, blk.start, f"returned an update for {f!r}, which is not a per-agent field")
        if tuple(u.shape) != (n, B, *spec.shape):
            raise _BlockError(sweep, blk.kind, blk.group, blk.start,
                              f"update for {f!r} has shape {tuple(u.shape[2:])}; the field has shape {spec.shape}")


def _rows(arr, blk_start: int, blk_stop: int, rows):
    if rows is not None:  # padding rows point past the end: clipped on read, dropped on write
        return arr.at[rows].get(mode="clip")
    return jax.lax.slice_in_dim(arr, blk_start, blk_stop)


def _set_rows(arr, blk_start: int, rows, val):
    if rows is not None:
        return arr.at[rows].set(val.astype(arr.dtype), mode="drop")
    return jax.lax.dynamic_update_slice_in_dim(arr, val.astype(arr.dtype), blk_start, 0)


class Program:
    """A compiled agent graph. Build with :func:`compile`.

    Attributes:
        plan: the static :class:`~agentgraph.compiler.plan.Plan` (hashable).
        arrays: ``{key: int32 array}`` index arrays (pytree leaves).
        index: ``{agent: (kind, row)}``.
        kinds: ``{name: Kind}``.
    """

    def __init__(self, graph: AgentGraph, plan: Plan, arrays: dict, rows: AgentRows, dtype) -> None:
        self.plan = plan
        self.arrays = {k: jnp.asarray(v, dtype if v.dtype.kind == "f" else None) for k, v in arrays.items()}
        self.rows = rows
        self.kinds = {l.kind: graph.kinds[l.kind] for l in plan.kinds}
        self.dtype = dtype
        self._index: dict | None = None
        self._init_cache = {}
        for layout in plan.kinds:
            kind = self.kinds[layout.kind]
            agents, vals = graph.initial_states(layout.kind)
            full = {f: np.full((layout.n, *spec.shape), spec.init) for f, spec in kind.fields.items()}
            for f, v in vals.items():  # phantom rows (buckets) keep the field defaults
                full[f][rows.row[agents]] = v
            self._init_cache[layout.kind] = full

    @property
    def index(self) -> dict[Hashable, tuple[str, int]]:
        """``{agent: (kind, row)}``: where each agent's state lives (built on first use)."""
        if self._index is None:
            self._index = self.rows.as_dict()
        return self._index

    # -- state -----------------------------------------------------------------------------------
    def init(self, batch_size: int) -> dict:
        """Initial state pytree; per-example fields tiled to ``[N, batch_size, ...]``.

        Example:
            >>> from agentgraph import mlp, compile
            >>> s = compile(mlp([2, 1], loss="l2")).init(3)
            >>> s["synapse"]["w"].shape, s["synapse"]["x"].shape
            ((2,), (2, 3))
        """
        out = {}
        for k, vals in self._init_cache.items():
            kind = self.kinds[k]
            out[k] = {}
            for f, v in vals.items():
                if kind.fields[f].per_example:
                    v = np.broadcast_to(v[:, None], (v.shape[0], batch_size, *v.shape[1:]))
                out[k][f] = jnp.asarray(v, self.dtype)
        return out

    def to_agents(self, state: Mapping) -> dict[Hashable, dict[str, np.ndarray]]:
        """Per-agent view ``{agent: {field: array}}`` (per-example fields ``[B, ...]``), as the
        interpreter lays state out."""
        host = jax.tree.map(np.asarray, state)
        return {a: {f: v[r] for f, v in host[k].items()} for a, (k, r) in self.index.items()}

    def from_agents(self, agents: Mapping[Hashable, Mapping[str, Any]]) -> dict:
        """Inverse of :meth:`to_agents`."""
        out: dict[str, dict[str, np.ndarray]] = {l.kind: {} for l in self.plan.kinds}
        for a, (k, r) in self.index.items():
            kind = self.kinds[k]
            n = next(l.n for l in self.plan.kinds if l.kind == k)
            for f in kind.fields:
                v = np.asarray(agents[a][f])
                if f not in out[k]:
                    out[k][f] = np.zeros((n, *v.shape))
                out[k][f][r] = v
        return jax.tree.map(lambda v: jnp.asarray(v, self.dtype), out)

    # -- the step ------------------------------------------------------------------------------
    def step(self, params: Mapping[str, Any] | None, state: Mapping, batch: Mapping[str, Any], arrays=None):
        """One inner step: ``(new_state, loss)``; pure, jit/vmap/grad-compatible.

        Args:
            params: ``{group: pytree}``.
            state: from :meth:`init`.
            batch: ``{key: [B, n]}`` or ``[B, n, d]`` arrays for the external kinds.
            arrays: index arrays to use instead of this program's own — another graph of the
                same bucket, or (under ``vmap``) many graphs stacked by :func:`stack_arrays`.

        Example:
            >>> import numpy as np
            >>> from agentgraph import mlp, compile
            >>> from agentgraph.protocols import gradient
            >>> g = mlp([2, 3, 1], activation="tanh", loss="l2")
            >>> prog = compile(g)
            >>> s, loss = prog.step(gradient.params(g, 0.1), prog.init(4), {"x": np.ones((4, 2)), "y": np.zeros((4, 1))})
            >>> loss.shape
            ()
        """
        arrays = self.arrays if arrays is None else arrays
        self._check_batch(batch)
        try:
            return _step_jit(self.plan, tuple(self.kinds.items()), arrays, params or {}, state, batch)
        except _BlockError as e:
            raise self._lowering_error(e) from e.cause if isinstance(e.cause, Exception) else None

    def _lowering_error(self, e: _BlockError) -> AgentGraphError:
        who = [a for a, (k, r) in self.index.items() if k == e.kind and r == e.row]
        where = f", e.g. agent {who[0]!r}" if who else ""
        cause = e.cause if isinstance(e.cause, str) else f"{type(e.cause).__name__}: {e.cause}"
        return AgentGraphError(
            f"Cannot lower the {e.sweep} function of kind {e.kind!r} (group {e.group!r}{where}): {cause}. "
            "Kind functions must be pure jax.numpy code for one agent and one example, returning the "
            "declared fields and outputs."
        )

    def _check_batch(self, batch: Mapping[str, Any]) -> None:
        if not isinstance(batch, Mapping):
            raise AgentGraphError(f"batch must be a mapping {{key: array}}, got {type(batch).__name__}.")
        for k in sorted({kd.external for kd in self.kinds.values() if kd.external is not None}):
            if k not in batch:
                raise AgentGraphError(f"Batch has no key {k!r}, which the graph's {k!r}-reading agents need.")
            shape = np.shape(batch[k])
            if len(shape) not in (2, 3):
                raise AgentGraphError(f"batch[{k!r}] has shape {shape}; expected [B, n] or [B, n, d].")
            v = batch[k]
            if isinstance(v, np.ndarray) and not np.all(np.isfinite(v)):
                raise AgentGraphError(f"batch[{k!r}] contains NaN or inf; clean the data before stepping.")

    def forward(self, params: Mapping[str, Any] | None, state: Mapping, batch: Mapping[str, Any], arrays=None):
        """The forward sweep only (no backward, no reflexive arrows): ``(state, loss)`` — how a
        network is evaluated (hint and held-out losses, accuracy).

        Example:
            >>> import numpy as np
            >>> from agentgraph import mlp, compile
            >>> prog = compile(mlp([2, 3, 2], loss="cross_entropy"))
            >>> s, loss = prog.forward(None, prog.init(5), {"x": np.ones((5, 2)), "y": np.eye(2)[[0, 1, 0, 1, 0]]})
            >>> round(float(loss), 2)
            0.69
        """
        arrays = self.arrays if arrays is None else arrays
        self._check_batch(batch)
        try:
            return _step_jit(self.plan, tuple(self.kinds.items()), arrays, params or {}, state, batch, backward=False)
        except _BlockError as e:
            raise self._lowering_error(e) from None

    def resize(self, state: Mapping, batch_size: int) -> dict:
        """``state`` with per-agent fields kept and per-example fields reset to their initial
        values for a batch of ``batch_size`` (e.g. to evaluate on a bigger test batch).

        Example:
            >>> from agentgraph import mlp, compile
            >>> prog = compile(mlp([2, 1], loss="l2"))
            >>> prog.resize(prog.init(3), 7)["synapse"]["x"].shape
            (2, 7)
        """
        fresh = self.init(batch_size)
        return {k: {f: (fresh[k][f] if self.kinds[k].fields[f].per_example else v) for f, v in fields.items()}
                for k, fields in state.items()}

    def read(self, state: Mapping, agents: Sequence[Hashable], field: str) -> jax.Array:
        """Field ``field`` of ``agents`` (all of one kind): ``[n, ...]`` for a per-agent field,
        ``[B, n, ...]`` for a per-example one. Works under ``jit``/``vmap`` (indices are static).

        Example:
            >>> from agentgraph import mlp, compile
            >>> prog = compile(mlp([2, 2], loss="cross_entropy"))
            >>> prog.read(prog.init(4), [("softmax", 0), ("softmax", 1)], "p").shape
            (4, 2)
        """
        kinds = {self.index[a][0] for a in agents}
        if len(kinds) != 1:
            raise AgentGraphError(f"read: agents must share one kind, got kinds {sorted(kinds)}.")
        (k,) = kinds
        if field not in self.kinds[k].fields:
            raise AgentGraphError(f"read: kind {k!r} has no field {field!r}; it has {sorted(self.kinds[k].fields)}.")
        rows = np.array([self.index[a][1] for a in agents])
        v = state[k][field][rows]
        return jnp.swapaxes(v, 0, 1) if self.kinds[k].fields[field].per_example else v

    def unroll(self, params, state, batches, *, remat: bool = True, arrays=None):
        """``T`` inner steps as a ``lax.scan`` (``jax.checkpoint`` on the body when ``remat``).

        Args:
            batches: pytree of arrays with a leading ``T`` axis.
            arrays: as in :meth:`step`.

        Returns:
            ``(final_state, losses [T])``.
        """
        arrays = self.arrays if arrays is None else arrays
        body = functools.partial(_step, self.plan, tuple(self.kinds.items()), arrays, params or {})
        if remat:
            body = jax.checkpoint(body)
        try:
            return jax.lax.scan(body, state, batches)
        except _BlockError as e:
            raise self._lowering_error(e) from None

    def __repr__(self) -> str:
        nb = sum(len(w) for w in self.plan.forward) + sum(len(w) for w in self.plan.backward)
        return (
            f"Program({sum(l.n for l in self.plan.kinds)} agent rows, {len(self.plan.kinds)} kinds, "
            f"{len(self.plan.forward)} forward / {len(self.plan.backward)} backward waves, "
            f"{nb} blocks)"
        )


def _step(plan: Plan, kinds_items, arrays, params, state, batch, backward: bool = True):
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
        for wave in waves:
            results = []
            for blk in wave:
                kind = kinds[blk.kind]
                rows = rows_of(blk)
                st = {f: _rows(v, blk.start, blk.stop, rows) for f, v in state[blk.kind].items()}
                try:
                    pre = kind.premaps(sweep)
                    inputs = {
                        p.port: _receive(bufs.get(p.size), p, blk.n, B, arrays, dtype=dtype,
                                         premap=_premap_fn(kind, params.get(blk.group), sweep, p.port)
                                         if p.port in pre else None)
                        for p in blk.ports
                    }
                    if blk.slots_key:
                        cols = data[kind.external][:, arrays[blk.slots_key]]  # [B, n, d]
                        inputs["data"] = jnp.swapaxes(cols, 0, 1)
                    new, raw, upd = _run_block(kind, sweep, params.get(blk.group), st, inputs, B)
                    _check_block(kind, sweep, blk, B, st, new, raw, upd)
                except _BlockError:
                    raise
                except Exception as e:  # tracing a kind's function failed: say which block
                    raise _BlockError(sweep, blk.kind, blk.group, blk.start, e) from e
                results.append((blk, rows, new, raw, upd))
            # write after the whole wave (agents of one wave never read each other)
            for blk, rows, new, raw, upd in results:
                kind = kinds[blk.kind]
                for f, spec in kind.fields.items():
                    if spec.per_example:
                        state[blk.kind][f] = _set_rows(state[blk.kind][f], blk.start, rows, new[f])
                for f, u in upd.items():
                    cur = _rows(state[blk.kind][f], blk.start, blk.stop, rows)
                    state[blk.kind][f] = _set_rows(state[blk.kind][f], blk.start, rows, cur + u.mean(axis=1))
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


#: ``_step`` compiled once per (plan, kinds): graphs with equal plans share the executable.
_step_jit = jax.jit(_step, static_argnums=(0, 1), static_argnames=("backward",))


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


def stack_arrays(programs: Sequence[Program]) -> dict:
    """Stack the index arrays of programs of one bucket along a new leading axis (for ``vmap``).

    Example:
        >>> from agentgraph import random_dag, compile
        >>> from agentgraph.compiler import make_bucket
        >>> gs = [random_dag(2, 3, 1, seed=s) for s in range(2)]
        >>> b = make_bucket(gs)
        >>> arrays = stack_arrays([compile(g, bucket=b) for g in gs])
        >>> next(iter(arrays.values())).shape[0]
        2
    """
    plans = {p.plan for p in programs}
    if len(plans) != 1:
        raise AgentGraphError(
            "stack_arrays needs programs of one bucket (equal plans); compile them with the same "
            "bucket=make_bucket(graphs)."
        )
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[p.arrays for p in programs])


def compile(graph: AgentGraph, *, dense: bool = True, bucket: Bucket | None = None, dtype=None) -> Program:
    """Lower ``graph`` to a :class:`Program` of batched JAX kernels.

    Args:
        graph: a valid :class:`~agentgraph.AgentGraph`.
        dense: use the dense-block lowerings where the wiring allows (default); ``False`` uses
            the generic sorted-segment lowering everywhere.
        bucket: lower into a padded :class:`~agentgraph.compiler.plan.Bucket` (from
            :func:`~agentgraph.compiler.make_bucket`) so that every graph of the bucket shares one
            executable and their programs can be ``vmap``-ed over (:func:`stack_arrays`).
        dtype: state dtype (default float32, or float64 when ``jax_enable_x64`` is on).

    Example:
        >>> from agentgraph import mlp, compile
        >>> compile(mlp([4, 3, 2]))  # doctest: +ELLIPSIS
        Program(... agent rows, ... kinds, ... forward / ... backward waves, ... blocks)
    """
    plan, arrays, rows = make_plan(graph, dense=dense, bucket=bucket)
    if dtype is None:
        dtype = jnp.zeros(()).dtype  # float32, or float64 under x64
    return Program(graph, plan, arrays, rows, dtype)
