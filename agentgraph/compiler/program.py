"""`Program`: a lowered agent graph as pure JAX functions, and a registered JAX pytree.

``compile(graph)`` returns a :class:`Program`. Its ``step`` / ``forward`` / ``unroll`` are pure
functions of ``(params, state, batch)`` that work under ``jit``, ``vmap`` (over tasks) and
``grad`` (through the unroll).

A program is a pytree: its **leaves** are the index arrays (``program.arrays``) and the initial
state values (what :meth:`Program.init` tiles: leaves, so that a traced program initialises to
its own graph's values); its **static part** (treedef aux data) is the
:class:`~agentgraph.compiler.plan.Plan`, the kinds and the dtype (and, for the programs of one
:func:`~agentgraph.compiler.compile_pool` pool, the pool), so programs with equal plans have
equal treedefs and share one executable. A program is therefore an ordinary argument of a
jitted function, and the programs of one pool stack into one pytree to ``vmap`` over::

    jax.jit(lambda prog, params, s, b: prog.step(params, s, b))(prog, params, s, b)
    pool = jax.tree.map(lambda *a: jnp.stack(a), *programs)

State layout (a pytree): ``state[kind][field]`` — per-agent fields ``[N_kind, *shape]``,
per-example fields ``[N_kind, B, *shape]``; rows are numbered by the plan (``program.index``
maps each agent to its ``(kind, row)``). A field with tied agents (``plan.ties``) is stored once
per tie: ``[slots, *shape]``, row ``r``'s value at slot ``program.slots(kind, field)[r]``. Graphs with delayed arrows add
``state["@delayed"]["type/size"]`` ``[M, B, size]``: the messages in flight.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.schedule import DELAYED
from agentgraph.compiler.plan import AgentRows, Plan, make_plan
from agentgraph.compiler.step import BlockError, step
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph

if TYPE_CHECKING:
    from agentgraph.compiler.buckets import Bucket

__all__ = ["Program", "compile"]


class _Static:
    """What a program's traced code depends on besides its arrays: plan, kinds, dtype. Hashable,
    the hash computed once (jit hashes it on every call); equal plans give equal statics."""

    __slots__ = ("plan", "kinds_items", "kinds", "dtype", "_hash")

    def __init__(self, plan: Plan, kinds_items: tuple, dtype) -> None:
        self.plan, self.kinds_items, self.dtype = plan, kinds_items, np.dtype(dtype)
        self.kinds = dict(kinds_items)
        self._hash = hash((plan, kinds_items, self.dtype))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, _Static) and self._hash == other._hash
            and (self.plan, self.kinds_items, self.dtype) == (other.plan, other.kinds_items, other.dtype)
        )


class _Host:
    """Host-side facts of one graph (where each agent's state lives), for :meth:`Program.index`,
    :meth:`~Program.read`, :meth:`~Program.to_agents`. Compares equal to every other ``_Host``: it
    is not part of a program's structure, so the graphs of one bucket share one treedef. Under a
    transformation, a program rebuilt from its treedef carries the ``_Host`` of the program the
    trace was made with: its ``index`` is that graph's (``read`` of a pool program is not: it
    gathers through the leaf ``arrays["pool/rows"]``)."""

    __slots__ = ("rows", "index", "reads", "slots", "mail")

    def __init__(self, rows: AgentRows, reads: dict, slots: dict, mail: frozenset = frozenset()) -> None:
        self.rows, self.index, self.reads, self.slots, self.mail = rows, None, reads, slots, mail

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Host)


#: :func:`~agentgraph.compiler.step.step` compiled once per static part: graphs with equal plans
#: share the executable.
_step_jit = jax.jit(
    lambda static, *a, **kw: step(static.plan, static.kinds_items, *a, **kw),
    static_argnums=(0,), static_argnames=("until_loss",),
)


@jax.tree_util.register_pytree_with_keys_class
class Program:
    """A compiled agent graph. Build with :func:`compile` (or
    :func:`~agentgraph.compiler.compile_pool`).

    A registered pytree: leaves ``arrays`` and ``initial``; static part ``plan``, ``kinds``,
    ``dtype`` (see the module docstring).

    Attributes:
        plan: the static :class:`~agentgraph.compiler.plan.Plan` (hashable).
        arrays: ``{key: int32 array}`` index arrays (leaves; bucket masks are float).
        initial: ``{kind: {field: [N_kind, *shape]}}`` initial values (leaves).
        index: ``{agent: (kind, row)}``.
        kinds: ``{name: Kind}``.
        dtype: the state dtype.

    Example:
        >>> import jax, numpy as np
        >>> from agentgraph import mlp, compile
        >>> prog = compile(mlp([2, 1], loss="l2"))
        >>> other = compile(mlp([2, 1], loss="l2", seed=1))  # same structure, other weights
        >>> jax.tree.structure(prog) == jax.tree.structure(other)
        True
        >>> loss = jax.jit(lambda p, s, b: p.forward(None, s, b)[1])
        >>> b = {"x": np.ones((3, 2)), "y": np.zeros((3, 1))}
        >>> float(loss(prog, prog.init(3), b)) != float(loss(other, other.init(3), b))  # one trace
        True
    """

    def __init__(self, graph: AgentGraph, plan: Plan, arrays: dict, rows: AgentRows, dtype) -> None:
        kinds = tuple((l.kind, graph.kinds[l.kind]) for l in plan.kinds)
        self._static = _Static(plan, kinds, dtype)
        self._host = _Host(rows, _reads(graph), {(tp.kind, tp.field): np.asarray(arrays[tp.key], np.int64)
                                                 for tp in plan.ties}, _delayed_sources(graph))
        self._pool = None  # a compile_pool pool's shared agents (agentgraph.compiler.buckets)
        # device_put, not jnp.asarray: a plain transfer, no conversion kernel to compile per shape
        self.arrays = {k: jax.device_put(v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
        self.initial = {}
        for layout in plan.kinds:
            kind = graph.kinds[layout.kind]
            agents, vals = graph.initial_states(layout.kind)
            full = {f: np.full((layout.n, *spec.shape), spec.init) for f, spec in kind.fields.items()}
            for f, v in vals.items():  # phantom rows (buckets) keep the field defaults
                full[f][rows.row[agents]] = v
                _check_fits(v, dtype, lambda i, f=f: f"Agent {graph.arrays().names[agents[i]]!r}: state field {f!r}")
            for k_f in plan.absent:  # scratch fields no block writes: not kept
                if k_f[0] == layout.kind:
                    full.pop(k_f[1], None)
            for f in full:  # tied fields: one value per slot (the members' values agree: validated)
                slot = self._host.slots.get((layout.kind, f))
                if slot is not None:
                    compact = np.zeros((int(slot.max()) + 1 if len(slot) else 0, *full[f].shape[1:]))
                    compact[slot] = full[f]
                    full[f] = compact
            self.initial[layout.kind] = {f: jax.device_put(v.astype(dtype)) for f, v in full.items()}

    # -- pytree ----------------------------------------------------------------------------------
    def tree_flatten_with_keys(self):
        keys = jax.tree_util.GetAttrKey
        return ((keys("arrays"), self.arrays), (keys("initial"), self.initial)), (self._static, self._pool, self._host)

    @classmethod
    def tree_unflatten(cls, aux, children) -> Program:
        prog = object.__new__(cls)  # no compilation work: the parts are already built
        prog._static, prog._pool, prog._host = aux
        prog.arrays, prog.initial = children
        return prog

    # -- static facts ----------------------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        return self._static.plan

    @property
    def kinds(self) -> dict:
        return self._static.kinds

    @property
    def dtype(self) -> np.dtype:
        return self._static.dtype

    @property
    def rows(self) -> AgentRows:
        return self._host.rows

    def slots(self, kind: str, field: str) -> np.ndarray | None:
        """``int64 [N_kind]``: where each row's value of a tied field lives in
        ``state[kind][field]`` (``None``: the field has no ties; row ``r`` is at ``r``).

        Example:
            >>> from agentgraph import AgentGraph, compile
            >>> g = AgentGraph(); _ = g.add_agents(["a", "b", "c"], "synapse"); _ = g.tie(["a", "c"], "w")
            >>> prog = compile(g)
            >>> prog.slots("synapse", "w").tolist(), prog.init(1)["synapse"]["w"].shape
            ([0, 1, 0], (2,))
        """
        return self._host.slots.get((kind, field))

    def _at(self, kind: str, field: str, rows):
        slot = self._host.slots.get((kind, field))
        return rows if slot is None else slot[rows]

    @property
    def index(self) -> dict[Hashable, tuple[str, int]]:
        """``{agent: (kind, row)}``: where each agent's state lives (built on first use)."""
        if self._host.index is None:
            self._host.index = self.rows.as_dict()
        return self._host.index

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
        for k, kind in self._static.kinds_items:
            out[k] = {}
            for f, v in self.initial[k].items():
                if kind.fields[f].per_example:
                    shape = (v.shape[0], batch_size, *v.shape[1:])
                    if isinstance(v, jax.core.Tracer):  # under a transformation
                        v = jnp.broadcast_to(v[:, None], shape)
                    else:  # concrete: tile on the host, one transfer (faster than a device op each)
                        v = jax.device_put(np.broadcast_to(np.asarray(v)[:, None], shape))
                out[k][f] = v
        if self.plan.delayed:  # messages in flight on delayed arrows: zeros before the first run
            out[DELAYED] = {f"{t}/{s}": jnp.zeros((m, batch_size, s), self.dtype) for t, s, m in self.plan.delayed}
        return out

    def to_agents(self, state: Mapping) -> dict[Hashable, dict[str, np.ndarray]]:
        """Per-agent view ``{agent: {field: array}}`` (per-example fields ``[B, ...]``), as the
        interpreter lays state out (messages in flight as ``["@delayed"][(type, agent, output)]``)."""
        host = jax.tree.map(np.asarray, {k: v for k, v in state.items() if k != DELAYED})
        B = next((v.shape[1] for k, fs in host.items() for f, v in fs.items() if self.kinds[k].fields[f].per_example), 1)
        for k, f in self.plan.absent:  # never kept (scratch, unspecified between steps): zeros
            host.setdefault(k, {})[f] = np.zeros((1, B, *self.kinds[k].fields[f].shape))
        absent = set(self.plan.absent)
        out = {a: {f: v[0 if (k, f) in absent else self._at(k, f, r)] for f, v in host[k].items()}
               for a, (k, r) in self.index.items()}
        if DELAYED in state:
            bufs = jax.tree.map(np.asarray, state[DELAYED])
            out[DELAYED] = {(t, a, o): bufs[f"{t}/{s}"][row] for (t, a, o), (s, row) in self._mail_rows().items()}
        return out

    def _mail_rows(self) -> dict:
        """``{(type, agent, output): (size, buffer row)}`` of every delayed arrow's message."""
        carried = {(t, s) for t, s, _ in self.plan.delayed}
        bases = {(t, b.kind, o): (size, base) for t, waves in self.plan.sweeps for w in waves for b in w
                 for o, size, base in b.outputs if (t, size) in carried}
        out = {}
        for (t, k, o), (size, base) in bases.items():
            for a, (k2, r) in self.index.items():
                if k2 == k and (t, a, o) in self._host.mail:
                    out[(t, a, o)] = (size, base + r)
        return out

    def from_agents(self, agents: Mapping[Hashable, Mapping[str, Any]]) -> dict:
        """Inverse of :meth:`to_agents` (delayed messages the mapping lacks start at zero)."""
        out: dict[str, dict[str, np.ndarray]] = {l.kind: {} for l in self.plan.kinds}
        kinds = self.kinds
        written: dict = {}
        absent = set(self.plan.absent)
        for a, (k, r) in self.index.items():
            for f in kinds[k].fields:
                if (k, f) in absent:
                    continue
                v = np.asarray(agents[a][f])
                if f not in out[k]:
                    out[k][f] = np.zeros((self.initial[k][f].shape[0], *v.shape))
                at = self._at(k, f, r)
                if (k, f) in self._host.slots:  # a tied field: the members must agree
                    prev = written.setdefault((k, f, int(at)), (a, v))
                    if not np.array_equal(prev[1], v):
                        raise AgentGraphError(f"from_agents: tied agents {prev[0]!r} and {a!r} hold different values of "
                                              f"the shared field {f!r}; tied agents hold one value.")
                out[k][f][at] = v
        if self.plan.delayed:
            mail = agents.get(DELAYED, {})
            B = next((np.shape(v)[0] for v in mail.values()), None)
            if B is None:
                B = next((np.shape(agents[a][f])[0] for a, (k, _) in self.index.items()
                          for f, spec in kinds[k].fields.items() if spec.per_example), 1)
            bufs = {f"{t}/{s}": np.zeros((m, B, s)) for t, s, m in self.plan.delayed}
            for (t, a, o), (s, row) in self._mail_rows().items():
                if (t, a, o) in mail:
                    bufs[f"{t}/{s}"][row] = mail[(t, a, o)]
            out[DELAYED] = bufs
        return jax.tree.map(lambda v: jnp.asarray(v, self.dtype), out)

    # -- the step ------------------------------------------------------------------------------
    def step(self, params: Mapping[str, Any] | None, state: Mapping, batch: Mapping[str, Any]):
        """One inner step: ``(new_state, loss)``; pure, jit/vmap/grad-compatible (the program
        itself may be a jit argument, or a pool of programs stacked for ``vmap``).

        Args:
            params: ``{group: pytree}``.
            state: from :meth:`init`.
            batch: ``{key: [B, n]}`` or ``[B, n, d]`` arrays for the external kinds.

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
        self._check_batch(batch)
        self._check_state(state)
        try:
            return _step_jit(self._static, self.arrays, params or {}, state, batch)
        except BlockError as e:
            raise self._lowering_error(e) from e.cause if isinstance(e.cause, Exception) else None

    def _lowering_error(self, e: BlockError) -> AgentGraphError:
        who = [a for a, (k, r) in self.index.items() if k == e.kind and r == e.row]
        where = f", e.g. agent {who[0]!r}" if who else ""
        cause = e.cause if isinstance(e.cause, str) else f"{type(e.cause).__name__}: {e.cause}"
        return AgentGraphError(
            f"Cannot lower the {e.sweep} function of kind {e.kind!r} (group {e.group!r}{where}): {cause}. "
            "Kind functions must be pure jax.numpy code for one agent and one example, returning the "
            "declared fields and outputs."
        )

    def check_columns(self, columns: Mapping[str, int]) -> None:
        """Check that every agent reading external data finds its column: ``columns[key]`` is the
        number of columns ``batch[key]`` will have (e.g. ``{"x": n_in, "y": n_out}``); the same
        check the reference interpreter makes (a column past the end would otherwise be clamped
        to the last one by XLA's indexing: a silently wrong input).

        Raises:
            AgentGraphError: a key the graph reads is missing, or an agent's ``slot`` is past the
                columns (the agent is named).

        Example:
            >>> from agentgraph import mlp, compile
            >>> prog = compile(mlp([3, 2], loss="l2"))
            >>> try:
            ...     prog.check_columns({"x": 2, "y": 2})
            ... except AgentGraphError as e:
            ...     print(e)
            Agent ('x', 2) reads column 2 of batch['x'], which has only 2 columns.
        """
        for key, (slot, agent) in sorted(self._host.reads.items()):
            if key not in columns:
                raise AgentGraphError(f"Batch has no key {key!r}, which agent {agent!r} reads; pass batch[{key!r}] "
                                      f"of shape [B, n] with n > {slot}.")
            if slot >= columns[key]:
                raise AgentGraphError(f"Agent {agent!r} reads column {slot} of batch[{key!r}], which has only "
                                      f"{columns[key]} columns.")

    def _check_state(self, state: Mapping) -> None:
        """The state has this program's kinds and fields (those :meth:`init` makes): a state of
        another program (another graph, or one compiled with other options, whose scratch
        fields differ) is refused naming the first difference."""
        if not isinstance(state, Mapping):
            raise AgentGraphError(f"state must be the mapping this program's init() makes, got {type(state).__name__}.")
        for k, _ in self._static.kinds_items:
            have, want = state.get(k), self.initial[k]
            if not isinstance(have, Mapping) or set(have) != set(want):
                got = "no entry" if not isinstance(have, Mapping) else f"fields {sorted(have)}"
                raise AgentGraphError(
                    f"state[{k!r}] has {got}; this program keeps fields {sorted(want)} for kind {k!r}. The state "
                    "was made by another program (another graph, or compiled with other options such as "
                    "linear=): make it with this program's init(batch_size), or move values over with to_agents().")
        if self.plan.delayed and DELAYED not in state:
            raise AgentGraphError(f"state has no {DELAYED!r} entry (the messages in flight on this graph's delayed "
                                  "arrows): make it with this program's init(batch_size).")

    def _check_batch(self, batch: Mapping[str, Any]) -> None:
        if not isinstance(batch, Mapping):
            raise AgentGraphError(f"batch must be a mapping {{key: array}}, got {type(batch).__name__}.")
        cols = {}
        for k in sorted({kd.external for _, kd in self._static.kinds_items if kd.external is not None}):
            if k not in batch:
                raise AgentGraphError(f"Batch has no key {k!r}, which the graph's {k!r}-reading agents need.")
            shape = np.shape(batch[k])
            if len(shape) not in (2, 3):
                raise AgentGraphError(f"batch[{k!r}] has shape {shape}; expected [B, n] or [B, n, d].")
            cols[k] = shape[1]
            v = batch[k]
            if isinstance(v, np.ndarray):
                if not np.all(np.isfinite(v)):
                    raise AgentGraphError(f"batch[{k!r}] contains NaN or inf; clean the data before stepping.")
                _check_fits(v, self.dtype, lambda i: f"batch[{k!r}]")
        self.check_columns(cols)

    def forward(self, params: Mapping[str, Any] | None, state: Mapping, batch: Mapping[str, Any]):
        """The step up to the phase the loss is read after (by default the forward sweep only:
        no backward, no reflexive arrows): ``(state, loss)`` — how a network is evaluated (hint
        and held-out losses, accuracy).

        Example:
            >>> import numpy as np
            >>> from agentgraph import mlp, compile
            >>> prog = compile(mlp([2, 3, 2], loss="cross_entropy"))
            >>> s, loss = prog.forward(None, prog.init(5), {"x": np.ones((5, 2)), "y": np.eye(2)[[0, 1, 0, 1, 0]]})
            >>> round(float(loss), 2)
            0.69
        """
        self._check_batch(batch)
        self._check_state(state)
        try:
            return _step_jit(self._static, self.arrays, params or {}, state, batch, until_loss=True)
        except BlockError as e:
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
        kinds = self.kinds
        out = {k: {f: (fresh[k][f] if kinds[k].fields[f].per_example else v) for f, v in fields.items()}
               for k, fields in state.items() if k != DELAYED}
        if DELAYED in fresh:
            out[DELAYED] = fresh[DELAYED]
        return out

    def read(self, state: Mapping, agents: Sequence[Hashable], field: str) -> jax.Array:
        """Field ``field`` of ``agents`` (all of one kind): ``[n, ...]`` for a per-agent field,
        ``[B, n, ...]`` for a per-example one. Works under ``jit``/``vmap``: the rows are static,
        or for the programs of a :func:`~agentgraph.compiler.compile_pool` pool (whose agents' rows differ from graph
        to graph) gathered through the leaf ``arrays["pool/rows"]``.

        Example:
            >>> from agentgraph import mlp, compile
            >>> prog = compile(mlp([2, 2], loss="cross_entropy"))
            >>> prog.read(prog.init(4), [("softmax", 0), ("softmax", 1)], "p").shape
            (4, 2)
        """
        if self._pool is None:
            where = [self.index[a] for a in agents]
        else:
            missing = [a for a in agents if a not in self._pool.slot]
            if missing:
                raise AgentGraphError(f"read: agents {missing[:3]} are not in every graph of the pool "
                                      "(with the same kind); a pool's programs read only agents they share.")
            where = [self._pool.slot[a] for a in agents]
        kinds = {k for k, _ in where}
        if len(kinds) != 1:
            raise AgentGraphError(f"read: agents must share one kind, got kinds {sorted(kinds)}.")
        (k,) = kinds
        kind = self.kinds[k]
        if field not in kind.fields:
            raise AgentGraphError(f"read: kind {k!r} has no field {field!r}; it has {sorted(kind.fields)}.")
        if (k, field) in self.plan.absent:
            raise AgentGraphError(f"read: field {field!r} of kind {k!r} is scratch and this program never keeps it "
                                  "(a fused update reads the forward messages instead); its value between steps is "
                                  "unspecified.")
        rows = self._at(k, field, np.array([r for _, r in where], np.int64))
        if self._pool is not None:
            rows = self.arrays["pool/rows"][rows]
        v = state[k][field][rows]
        return jnp.swapaxes(v, 0, 1) if kind.fields[field].per_example else v

    def unroll(self, params, state, batches, *, remat: bool = True):
        """``T`` inner steps as a ``lax.scan`` (``jax.checkpoint`` on the body when ``remat``).

        Args:
            batches: pytree of arrays with a leading ``T`` axis.

        Returns:
            ``(final_state, losses [T])``.
        """
        self._check_state(state)
        body = functools.partial(step, self.plan, self._static.kinds_items, self.arrays, params or {})
        if remat:
            body = jax.checkpoint(body)
        try:
            return jax.lax.scan(body, state, batches)
        except BlockError as e:
            raise self._lowering_error(e) from None

    def __repr__(self) -> str:
        nb = sum(len(w) for _, waves in self.plan.sweeps for w in waves)
        waves = " / ".join(f"{len(w)} {t}" for t, w in self.plan.sweeps) or "no"
        return (
            f"Program({sum(l.n for l in self.plan.kinds)} agent rows, {len(self.plan.kinds)} kinds, "
            f"{waves} waves, {nb} blocks)"
        )


def _delayed_sources(graph: AgentGraph) -> frozenset:
    """``{(type, source agent, output)}`` of every delayed arrow: the messages in flight the
    interpreter keeps (and :meth:`Program.to_agents` shows)."""
    a = graph.arrays()
    return frozenset((a.type_names[a.type[e]], a.names[a.src[e]], a.strings[a.src_port[e]])
                     for e in np.flatnonzero(a.delay))


def _reads(graph: AgentGraph) -> dict[str, tuple[int, Any]]:
    """``{batch key: (largest slot, the agent reading it)}`` of the graph's external kinds."""
    a = graph.arrays()
    out: dict[str, tuple[int, Any]] = {}
    for k, kname in enumerate(a.kind_names):
        key = graph.kinds[kname].external
        members = np.flatnonzero(a.kind == k)
        if key is not None and members.size:
            i = members[np.argmax(a.slot[members])]
            if key not in out or a.slot[i] > out[key][0]:
                out[key] = (int(a.slot[i]), a.names[i])
    return out


def _check_fits(values: np.ndarray, dtype, what) -> None:
    """Values that are finite but overflow the compute ``dtype`` (e.g. 1e39 in float32) are an
    error naming ``what(i)`` for the first offending row ``i``."""
    v = np.asarray(values)
    if v.dtype.kind != "f" or np.dtype(dtype).kind != "f" or not v.size:
        return
    big = np.abs(v) > np.finfo(dtype).max
    if big.any():
        i = int(np.argwhere(big)[0][0]) if v.ndim else 0
        raise AgentGraphError(f"{what(i)} holds {v.reshape(-1)[np.flatnonzero(big.reshape(-1))[0]]:g}, which "
                              f"overflows the compute dtype {np.dtype(dtype).name} (largest {np.finfo(dtype).max:g}); "
                              "scale it down, or compile with dtype=float64 (jax_enable_x64).")


def default_dtype(dtype):
    return jnp.zeros(()).dtype if dtype is None else dtype  # float32, or float64 under x64


def compile(graph: AgentGraph, *, dense: bool = True, bucket: Bucket | None = None, dtype=None,
            linear: bool = True) -> Program:
    """Lower ``graph`` to a :class:`Program` of batched JAX kernels.

    Args:
        graph: a valid :class:`~agentgraph.AgentGraph`.
        dense: use the dense-block lowerings where the wiring allows (default); ``False`` uses
            the generic sorted-segment lowering everywhere.
        bucket: lower into a padded :class:`~agentgraph.compiler.buckets.Bucket` (from
            :func:`~agentgraph.compiler.make_bucket`) so that every graph of the bucket shares one
            executable and their programs can be stacked and ``vmap``-ed over (see
            :func:`~agentgraph.compiler.compile_pool`).
        dtype: state dtype (default float32, or float64 when ``jax_enable_x64`` is on).
        linear: lower dense blocks of linear agents (kinds declaring
            :class:`~agentgraph.nodes.Linear` / :class:`~agentgraph.nodes.Outer`) to matrix
            products (default); ``False`` runs them agent by agent.

    Example:
        >>> from agentgraph import mlp, compile
        >>> compile(mlp([4, 3, 2]))  # doctest: +ELLIPSIS
        Program(... agent rows, ... kinds, ... forward / ... backward waves, ... blocks)
    """
    plan, arrays, rows = make_plan(graph, dense=dense, bucket=bucket, linear=linear)
    return Program(graph, plan, arrays, rows, default_dtype(dtype))
