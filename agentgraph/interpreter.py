"""The reference interpreter: one inner step, agent by agent, example by example, in float64.

Slow and obviously correct — the oracle every compiled program is tested against. It implements
the step semantics of ``docs/concepts.md``: the phases of the graph's
:class:`~agentgraph.arrows.Schedule` in order, each a sweep (agents in topological generations of
the type's non-delayed arrows, ports aggregating immediate arrows' messages of this run and delayed
arrows' messages of the previous run) or a self-loop phase (once per self-loop arrow). Every phase
keeps per-example fields, sets per-agent fields to the batch mean of the returned values and adds
the batch mean of ``update``. The default schedule is:

1. **Forward sweep.** Agents whose kind runs forward, in topological generations of the forward
   arrows (agents with no forward arrows are in generation 0). Each agent's ports receive the
   aggregate of the outputs its in-arrows carry; ports with no arrow receive zeros; kinds with
   ``external`` data receive ``batch[external][:, slot]`` on port ``"data"``. Ports the kind
   declares in ``premaps`` receive ``kind.premap`` of that aggregate (in both sweeps).
2. **Loss.** Per example, the sum of every loss agent's stored elementwise loss; the step's loss
   is its batch mean. (No message seeds the backward sweep: loss kinds compute their backward
   messages from their own stored prediction and target.)
3. **Backward sweep.** Agents whose kind runs backward, in topological generations of the
   backward arrows. Each agent's ``update`` is averaged over the inner batch and added to its
   per-agent fields; updated parameters are used from the next forward sweep.
4. **Reflexive arrows.** Each reflexive arrow applies its agent's reflexive function once, in
   arrow order.

**Ties** (:mod:`agentgraph.graph.ties`): every member of a tie keeps its own copy of the shared
field, all equal between phases. Within a phase each member changes its own copy as an untied
agent would; at the phase's end the shared value moves by the tie's reduction (sum or mean) of
the members' changes, and every copy is set to it.

State layout (``State``): ``{agent: {field: array}}`` with per-agent fields shaped ``[*shape]``
and per-example fields shaped ``[B, *shape]``, all float64 NumPy; graphs with delayed arrows add
``state["@delayed"][(type, source agent, output)] = [B, size]``, the messages in flight.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import jax
import networkx as nx
import numpy as np

from agentgraph.arrows.ports import aggregate
from agentgraph.arrows.schedule import DELAYED
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.nodes.base import Kind

__all__ = ["StepResult", "init_state", "step", "run", "generations_of"]

StateDict = dict[Hashable, dict[str, np.ndarray]]


@dataclasses.dataclass
class StepResult:
    """What one interpreted inner step returns.

    Attributes:
        state: the new state ``{agent: {field: array}}``.
        loss: batch mean of the per-example loss (a float).
        losses: ``[B]`` per-example sum of the loss agents' losses.
        inbox: with ``trace=True``, ``{(agent, type): {port: [B, size]}}`` — what each port
            received, after aggregation; otherwise empty.
        outputs: with ``trace=True``, ``{(agent, type): {output: [B, size]}}``; otherwise empty.
    """

    state: StateDict
    loss: float
    losses: np.ndarray
    inbox: dict = dataclasses.field(default_factory=dict)
    outputs: dict = dataclasses.field(default_factory=dict)


def init_state(graph: AgentGraph, batch_size: int) -> StateDict:
    """The initial state of every agent, per-example fields tiled to ``[batch_size, *shape]``.

    Example:
        >>> from agentgraph.builders import mlp
        >>> s = init_state(mlp([2, 1], loss="l2", seed=0), batch_size=3)
        >>> s[("w", 0, 0, 0)]["x"].shape, s[("w", 0, 0, 0)]["w"].shape
        ((3,), ())
    """
    graph.validate()
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise AgentGraphError(f"batch_size must be a positive int, got {batch_size!r}.")
    out: StateDict = {}
    for name, data in graph.nx.nodes(data=True):
        kind = graph.kinds[data["kind"]]
        init = kind.initial_state(data.get("state"), agent=name)
        out[name] = {
            f: (np.broadcast_to(v, (batch_size, *v.shape)).copy() if kind.fields[f].per_example else v)
            for f, v in init.items()
        }
    mail = {key: np.zeros((batch_size, size)) for key, size in _delayed_sources(graph).items()}
    if mail:
        out[DELAYED] = mail
    return out


def generations_of(graph: AgentGraph, arrow_type: str) -> list[list[Hashable]]:
    """Topological generations of ``graph``'s non-delayed ``arrow_type`` arrows over **all**
    agents: the order a sweep phase of that type runs them in.

    Within a generation, agents keep declaration order.

    Example:
        >>> from agentgraph.builders import mlp
        >>> [len(g) for g in generations_of(mlp([2, 1], loss="l2"), "forward")][:3]
        [3, 2, 1]
    """
    graph.validate()
    order = {n: i for i, n in enumerate(graph.nx.nodes)}
    sub = nx.DiGraph()
    sub.add_nodes_from(graph.nx.nodes)
    sub.add_edges_from((s, d) for s, d, a in graph.nx.edges(data=True)
                       if a["type"] == arrow_type and not a.get("delay", False))
    return [sorted(gen, key=order.__getitem__) for gen in nx.topological_generations(sub)]


def _in_arrows(graph: AgentGraph, arrow_type: str) -> dict[Hashable, list[tuple[Hashable, str, str, bool]]]:
    inbound: dict[Hashable, list[tuple[Hashable, str, str, bool]]] = {}
    for s, d, _, a in graph.arrows(arrow_type):
        inbound.setdefault(d, []).append((s, a.get("src_port", "out"), a["port"], a.get("delay", False)))
    return inbound


def _delayed_sources(graph: AgentGraph) -> dict[tuple[str, Hashable, str], int]:
    """``{(type, source agent, output): size}`` of every delayed arrow's message."""
    out = {}
    for s, _d, _k, a in graph.arrows():
        if a.get("delay", False):
            t, o = a["type"], a.get("src_port", "out")
            out[(t, s, o)] = graph.kind_of(s).outputs(t)[o]
    return out


def _check_mail(graph: AgentGraph, state: Mapping, B: int) -> dict:
    """The messages in flight on delayed arrows, checked: ``{(type, agent, output): [B, size]}``."""
    need = _delayed_sources(graph)
    if not need:
        return {}
    got = state.get(DELAYED)
    if not isinstance(got, Mapping) or set(got) != set(need):
        raise AgentGraphError(
            f"State has no (or a wrong) {DELAYED!r} entry for the graph's delayed arrows; build states with "
            "init_state(graph, B) and pass each step's result state to the next."
        )
    out = {}
    for key, size in need.items():
        v = np.array(got[key], dtype=np.float64)
        if v.shape != (B, size):
            raise AgentGraphError(f"State[{DELAYED!r}][{key!r}] has shape {v.shape}, expected {(B, size)}.")
        out[key] = v
    return out


def _batch_size(graph: AgentGraph, state: Mapping) -> int:
    """B from the first per-example field (after the state's structure has been checked)."""
    for name in graph.agents():
        kind = graph.kind_of(name)
        for f, spec in kind.fields.items():
            if spec.per_example:
                shape = np.shape(state[name][f])
                if len(shape) != 1 + len(spec.shape):
                    raise AgentGraphError(
                        f"State of agent {name!r}: per-example field {f!r} has shape {shape}; expected "
                        f"[B, *{spec.shape}]. Build states with init_state(graph, B)."
                    )
                return int(shape[0])
    return 1


def _check_state_structure(graph: AgentGraph, state: Any) -> None:
    if not isinstance(state, Mapping):
        raise AgentGraphError(f"state must be a mapping {{agent: {{field: array}}}}, got {type(state).__name__}.")
    for name in graph.agents():
        if name not in state:
            raise AgentGraphError(f"State has no entry for agent {name!r}; build it with init_state(graph, B).")
        fields = state[name]
        kind = graph.kind_of(name)
        if not isinstance(fields, Mapping) or set(fields) != set(kind.fields):
            got = sorted(fields) if isinstance(fields, Mapping) else type(fields).__name__
            raise AgentGraphError(
                f"State of agent {name!r} has fields {got}, but kind {kind.name!r} declares {sorted(kind.fields)}."
            )


def _check_state(graph: AgentGraph, state: Mapping, batch_size: int) -> StateDict:
    missing = [n for n in graph.nx.nodes if n not in state]
    if missing:
        raise AgentGraphError(
            f"State has no entry for agent(s) {missing[:5]}; build it with init_state(graph, B)."
        )
    out: StateDict = {}
    for name in graph.nx.nodes:
        kind = graph.kind_of(name)
        fields = state[name]
        if set(fields) != set(kind.fields):
            raise AgentGraphError(
                f"State of agent {name!r} has fields {sorted(fields)}, but kind {kind.name!r} "
                f"declares {sorted(kind.fields)}."
            )
        out[name] = {}
        for f, spec in kind.fields.items():
            v = np.array(fields[f], dtype=np.float64)
            want = (batch_size, *spec.shape) if spec.per_example else spec.shape
            if v.shape != want:
                raise AgentGraphError(
                    f"State of agent {name!r}: field {f!r} has shape {v.shape}, expected {want}."
                )
            out[name][f] = v
    return out


def _check_batch(graph: AgentGraph, batch: Mapping[str, Any], batch_size: int) -> dict[str, np.ndarray]:
    needed: dict[str, list[tuple[Hashable, int]]] = {}
    for name, data in graph.nx.nodes(data=True):
        kind = graph.kinds[data["kind"]]
        if kind.external is not None:
            needed.setdefault(kind.external, []).append((name, int(data["slot"])))
    out = {}
    for key, users in needed.items():
        if key not in batch:
            raise AgentGraphError(
                f"Batch has no key {key!r}, which agent {users[0][0]!r} reads; pass batch[{key!r}] "
                f"of shape [B, n] with n > {max(s for _, s in users)}."
            )
        try:
            arr = np.asarray(batch[key], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise AgentGraphError(f"batch[{key!r}] is not a numeric array ({e}).") from None
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[0] != batch_size:
            raise AgentGraphError(
                f"batch[{key!r}] has shape {np.shape(batch[key])}; expected [B={batch_size}, n] "
                "(or [B, n, d])."
            )
        for name, slot in users:
            if slot >= arr.shape[1]:
                raise AgentGraphError(
                    f"Agent {name!r} reads column {slot} of batch[{key!r}], which has only "
                    f"{arr.shape[1]} columns."
                )
        bad = ~np.isfinite(arr)
        if bad.any():
            b, col, _ = np.argwhere(bad)[0]
            who = [n for n, s in users if s == col]
            raise AgentGraphError(
                f"batch[{key!r}] contains NaN or inf (first at example {b}, column {col}"
                + (f", read by agent {who[0]!r}" if who else "")
                + "); clean the data before stepping."
            )
        out[key] = arr
    return out


def _as_outputs(raw: Any, kind: Kind, sweep: str, agent: Hashable) -> dict[str, np.ndarray]:
    if not isinstance(raw, Mapping):
        raw = {"out": raw}
    declared = kind.outputs(sweep)
    extra = set(raw) - set(declared)
    if extra:
        raise AgentGraphError(
            f"{sweep} of agent {agent!r} (kind {kind.name!r}) returned outputs {sorted(extra)} that "
            f"the kind does not declare; declared {sweep}_outputs: {dict(declared)}."
        )
    out = {}
    for o, size in declared.items():
        if o not in raw:
            out[o] = np.zeros(size)
            continue
        v = np.asarray(raw[o], dtype=np.float64)
        if v.shape != (size,):
            raise AgentGraphError(
                f"{sweep} of agent {agent!r} (kind {kind.name!r}) returned output {o!r} of shape "
                f"{v.shape}; the kind declares size {size}, i.e. shape ({size},)."
            )
        out[o] = v
    return out


def _take_state(new: Any, kind: Kind, agent: Hashable, sweep: str) -> dict[str, np.ndarray]:
    if not isinstance(new, Mapping) or set(new) != set(kind.fields):
        got = sorted(new) if isinstance(new, Mapping) else type(new).__name__
        raise AgentGraphError(
            f"{sweep} of agent {agent!r} (kind {kind.name!r}) returned a state with fields {got}; "
            f"it must return all of {sorted(kind.fields)}."
        )
    out = {}
    for f, spec in kind.fields.items():
        v = np.asarray(new[f], dtype=np.float64)
        if v.shape != spec.shape:
            raise AgentGraphError(
                f"{sweep} of agent {agent!r} (kind {kind.name!r}) returned field {f!r} of shape "
                f"{v.shape}; the kind declares {spec.shape}."
            )
        out[f] = v
    return out


def _call(fn, agent: Hashable, kind: Kind, sweep: str, *args):
    try:
        return fn(*args)
    except Exception as e:  # a kind raised: name the agent
        what = "" if isinstance(e, AgentGraphError) else f"{type(e).__name__}: "
        raise AgentGraphError(f"{sweep} of agent {agent!r} (kind {kind.name!r}): {what}{e}") from e


def _finite(agent: Hashable, kind: Kind, sweep: str, arrays: Mapping[str, np.ndarray]) -> None:
    for k, v in arrays.items():
        if not np.all(np.isfinite(v)):
            raise AgentGraphError(
                f"{sweep} of agent {agent!r} (kind {kind.name!r}) produced NaN/inf in {k!r}; "
                "check its inputs and parameters (or pass check_finite=False)."
            )


def _inbox(graph: AgentGraph, agent, kind: Kind, t: str, inbound, sent, mail, B: int) -> dict[str, np.ndarray]:
    """Aggregated messages at each of ``agent``'s ``t`` ports ``{port: [B, size]}``: this run's
    messages of immediate arrows and the previous run's (``mail``) of delayed ones."""
    arrivals = inbound.get(agent, [])
    out = {}
    for port, spec in kind.ports(t).items():
        msgs = [mail[(t, s, o)] if dl else sent[s][o] for s, o, pp, dl in arrivals if pp == port]
        stacked = np.stack(msgs) if msgs else np.zeros((0, B, spec.size))
        out[port] = aggregate(stacked, spec.aggregation, spec.size, xp=np)
    return out


def _tie_groups(graph: AgentGraph) -> list[tuple[str, str, str, list[Hashable]]]:
    """``(tie name, field, reduction, member agents)`` of every tie."""
    t, names = graph.ties(), graph.arrays().names
    return [(t.names[i], t.fields[i], t.reductions[i], [names[r] for r in t.members(i).tolist()]) for i in range(len(t))]


def _check_tied(groups, st: StateDict) -> None:
    """The members of every tie hold one value of the shared field."""
    for name, f, _, members in groups:
        for m in members[1:]:
            if not np.array_equal(st[m][f], st[members[0]][f]):
                raise AgentGraphError(
                    f"State of tied agents {members[0]!r} and {m!r} differs in the shared field {f!r} (tie {name!r}); "
                    "tied agents hold one value — build states with init_state(graph, B) and pass each step's result on."
                )


def _join_ties(groups, st: StateDict, shared: Mapping[str, np.ndarray]) -> None:
    """End of a phase: each tie's value moves by the reduction of its members' changes from
    ``shared`` (the value at the phase's start); every member's copy is set to the result."""
    for name, f, reduction, members in groups:
        change = sum(st[m][f] - shared[name] for m in members)
        new = shared[name] + (change / len(members) if reduction == "mean" else change)
        for m in members:
            st[m][f] = np.array(new)


def _apply(graph: AgentGraph, agent, kind: Kind, t: str, p, st_agent, inbox, B: int):
    """``kind.apply`` for every example; returns ``(new fields, outputs, updates)`` where new
    fields follow the phase rule (module docstring) and outputs are ``{output: [B, size]}``."""
    outs: dict[str, list] = {o: [] for o in kind.outputs(t)}
    new_state = {f: [] for f in kind.fields}
    updates: dict[str, list] = {}
    for b in range(B):
        sb = {f: (v[b] if kind.fields[f].per_example else v) for f, v in st_agent.items()}
        ib = {port: v[b] for port, v in inbox.items()}
        for port in kind.premaps(t):
            ib[port] = _call(kind.premap, agent, kind, t, p, t, port, ib[port])
        ns, raw, upd = _call(kind.apply, agent, kind, t, t, p, sb, ib)
        ns = _take_state(ns, kind, agent, t)
        for o, v in _as_outputs(raw, kind, t, agent).items():
            outs[o].append(v)
        for f, v in ns.items():
            new_state[f].append(v)
        for f, u in dict(upd or {}).items():
            spec = kind.fields.get(f)
            if spec is None or spec.per_example:
                raise AgentGraphError(
                    f"{t} of agent {agent!r} (kind {kind.name!r}) returned an update for {f!r}, which is "
                    "not a per-agent field of the kind."
                )
            u = np.asarray(u, dtype=np.float64)
            if u.shape != spec.shape:
                raise AgentGraphError(
                    f"{t} of agent {agent!r}: update for {f!r} has shape {u.shape}, the field has shape {spec.shape}."
                )
            updates.setdefault(f, []).append(u)
    fields = {}
    for f, spec in kind.fields.items():
        stacked = np.stack(new_state[f])
        # per-agent fields: old + batch mean of the change (exact when unchanged), + mean update
        v = stacked if spec.per_example else st_agent[f] + (stacked - st_agent[f]).mean(axis=0)
        if f in updates:
            v = v + np.mean(np.stack(updates[f]), axis=0)
        fields[f] = v
    return fields, {o: (np.stack(v) if v else np.zeros((0,))) for o, v in outs.items()}


def step(
    graph: AgentGraph,
    state: Mapping[Hashable, Mapping[str, Any]],
    params: Mapping[str, Any] | None,
    batch: Mapping[str, Any],
    *,
    trace: bool = False,
    check_finite: bool = True,
    until_loss: bool = False,
) -> StepResult:
    """Run one inner step of ``graph`` (the phases of its schedule) in float64.

    Args:
        graph: a valid :class:`AgentGraph`.
        state: ``{agent: {field: array}}`` from :func:`init_state` or a previous step; per-example
            fields are ``[B, *shape]``. Not modified.
        params: ``{group: pytree}``; each agent's kind receives ``params.get(group)``.
        batch: ``{key: [B, n]}`` (or ``[B, n, d]``) arrays for the external kinds, e.g.
            ``{"x": inputs, "y": targets}``.
        trace: also record every agent's aggregated inbox and its outputs.
        check_finite: raise if any agent produces NaN/inf (naming it).
        until_loss: stop after the phase the loss is read after (the forward sweep by default).

    Returns:
        :class:`StepResult`.

    Example:
        >>> import numpy as np
        >>> from agentgraph.builders import mlp
        >>> from agentgraph.protocols import gradient
        >>> g = mlp([2, 3, 1], activation="tanh", loss="l2", seed=0)
        >>> s = init_state(g, batch_size=4)
        >>> b = {"x": np.ones((4, 2)), "y": np.zeros((4, 1))}
        >>> r1 = step(g, s, gradient.params(g, lr=0.1), b)
        >>> r2 = step(g, r1.state, gradient.params(g, lr=0.1), b)
        >>> r2.loss < r1.loss
        True
    """
    graph.validate()
    if params is not None and not isinstance(params, Mapping):
        raise AgentGraphError(f"params must be a mapping {{group: pytree}} or None, got {type(params).__name__}.")
    if not isinstance(batch, Mapping):
        raise AgentGraphError(f"batch must be a mapping {{key: array}}, got {type(batch).__name__}.")
    _check_state_structure(graph, state)
    # the oracle runs in float64: floating parameter leaves are promoted too
    params = jax.tree.map(
        lambda v: np.asarray(v, np.float64) if np.issubdtype(np.asarray(v).dtype, np.floating) else v,
        {} if params is None else dict(params),
    )
    B = _batch_size(graph, state)
    st = _check_state(graph, state, B)
    mail = _check_mail(graph, state, B)
    data = _check_batch(graph, batch, B)
    groups = _tie_groups(graph)
    _check_tied(groups, st)
    result = StepResult(state=st, loss=0.0, losses=np.zeros(B))
    nodes = graph.nx.nodes
    sched = graph.schedule
    runs = sched.runs()
    last = max(k for k, (i, _) in enumerate(runs) if i == sched.loss_index())
    inbound = {t: _in_arrows(graph, t) for t in sched.sweep_types()}
    order = {t: [a for gen in generations_of(graph, t) for a in gen] for t in sched.sweep_types()}

    with jax.enable_x64(True):
        for k, (_, phase) in enumerate(runs):
            t = phase.type
            shared = {name: np.array(st[members[0]][f]) for name, f, _, members in groups}
            if phase.self_loops:
                for s, _d, _k, _a in graph.arrows(t):
                    kind = graph.kind_of(s)
                    st[s], _ = _apply(graph, s, kind, t, params.get(graph.group_of(s)), st[s], {}, B)
                    if check_finite:
                        _finite(s, kind, t, st[s])
            else:
                sent: dict[Hashable, dict[str, np.ndarray]] = {}
                for agent in order[t]:
                    kind = graph.kind_of(agent)
                    if not kind.runs(t):
                        continue
                    inbox = _inbox(graph, agent, kind, t, inbound[t], sent, mail, B)
                    if kind.external is not None and "data" in kind.ports(t):
                        inbox["data"] = data[kind.external][:, int(nodes[agent]["slot"])]
                    st[agent], sent[agent] = _apply(graph, agent, kind, t, params.get(graph.group_of(agent)),
                                                    st[agent], inbox, B)
                    if check_finite:
                        _finite(agent, kind, t, {**sent[agent], **st[agent]})
                    if trace:
                        result.inbox[(agent, t)] = {p: np.array(v) for p, v in inbox.items()}
                        result.outputs[(agent, t)] = sent[agent]
                for (tt, s, o) in mail:
                    if tt == t:
                        mail[(tt, s, o)] = sent[s][o]
            _join_ties(groups, st, shared)
            if k == last:
                for agent in nodes:
                    kind = graph.kind_of(agent)
                    if kind.loss_field is not None:
                        result.losses = result.losses + st[agent][kind.loss_field].reshape(B, -1).sum(axis=1)
                result.loss = float(np.mean(result.losses))
                if until_loss:
                    break
    if mail:
        result.state[DELAYED] = mail
    return result


def run(
    graph: AgentGraph,
    state: StateDict,
    params: Mapping[str, Any] | None,
    batches: Iterable[Mapping[str, Any]],
    **kwargs: Any,
) -> tuple[StateDict, list[float]]:
    """Run one :func:`step` per batch; returns the final state and the per-step losses.

    Example:
        >>> import numpy as np
        >>> from agentgraph.builders import mlp
        >>> from agentgraph.protocols import gradient
        >>> g = mlp([1, 4, 1], activation="tanh", loss="l2", seed=0)
        >>> b = {"x": np.linspace(-1, 1, 8)[:, None], "y": np.linspace(-1, 1, 8)[:, None] ** 2}
        >>> _, losses = run(g, init_state(g, 8), gradient.params(g, lr=0.5), [b] * 5)
        >>> losses[-1] < losses[0]
        True
    """
    losses = []
    for batch in batches:
        r = step(graph, state, params, batch, **kwargs)
        state = r.state
        losses.append(r.loss)
    return state, losses
