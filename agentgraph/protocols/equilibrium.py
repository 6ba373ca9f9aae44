"""Equilibrium propagation (Scellier & Bengio 2017; the centred variant of Laborde et al. 2021)
on library networks with an L2 head: ``mlp``, ``random_dag`` and ``cnn`` (conv, average pool and
dense layers; the kernel ties are kept, reduction ``sum``: a kernel entry moves by the sum of its
uses' contrastive updates, which tends to ``−lr dL/dw`` of the shared weight; max pools are refused).

The network becomes a symmetric recurrent one: every synapse couples its two units both ways
with one weight. Unit ``j`` (the ``bias`` agent) holds a pre-activation ``u_j``; the activity of a
hidden unit is its activation ``ρ(u_j)`` (its ``tanh``/``sigmoid``… agent), of an input its data,
of an output unit ``u_j`` itself (``output_activation``: ``ρ_out(u_j)``, e.g. the authors'
clipped output ``hard_sigmoid``). The energy and the cost are

    ``E = Σ_j [u_j ρ(u_j) − P(u_j)] − Σ_{synapses} w ρ(u_i) ρ(u_j) − Σ_j b_j ρ(u_j)``  (``P′ = ρ``),
    ``C = ½ Σ_out (ρ(u_j) − y_j)²``  (``ρ = ρ_out`` on the outputs, the identity by default),

whose stationary points under ``E + βC`` (``∂/∂u_j = ρ′(u_j) × […]``) are the fixed points of
``u_j = Σ_i w_ij ρ(u_i) + Σ_k w_jk ρ(u_k) + b_j − β [j output] (ρ(u_j) − y_j)``. One relaxation tick
moves every unit at once, ``u ← u + γ (that − u)``, from the activities of the previous tick: an
``ep`` sweep (activity agents → synapses → units: each unit's activity agent — its activation,
or for a unit without one an identity agent of kind ``ep_out`` — sends ``ρ`` of its copy of
``u``; a synapse sends ``w·ρ`` up and down, declared linear, so a dense layer's sweep is two
matrix products) then an ``ep_copy`` sweep (each unit sends its new ``u`` to its activity agent).
No arrow is delayed. One inner step:

    ``(ep → ep_copy) × T`` (free phase, from ``u = 0``) ``→ forward [loss]`` (the free fixed
    point's loss; the activity agents store ``ρ|0``) ``→ (ep → ep_copy) × K`` (nudged, ``+β``)
    ``→ ep_learn``

and the local update ``Δw = (lr/β) (ρ_i ρ_j|β − ρ_i ρ_j|0)``, ``Δb_j = (lr/β) (ρ_j|β − ρ_j|0)``
(on ``ep_learn`` each activity agent sends its synapses the pair ``[ρ|β, ρ|0]``: the per-example
products are formed there only), which tends to ``−lr dL/dθ`` (``L = C`` at the free fixed
point) as ``β → 0``. ``nudge="centred"`` adds a ``−β`` phase from the free fixed point
(``ep_flip → (ep → ep_copy) × K``) and uses ``(ρρ|β − ρρ|−β)/(2β)`` (error ``O(β²)`` instead of
``O(β)``). An average pool is a fixed linear coupling (:class:`EPAvgPool` up, :class:`EPPoolDown`
down); max pooling is refused. Meta-parameters: ``log β``, ``log γ`` and one ``log lr`` per
parameter group (but ``ep_out`` and ``ep_pool_down``, which have no parameters).

Example:
    >>> import numpy as np
    >>> from agentgraph import interpreter
    >>> from agentgraph.builders import mlp_network
    >>> p = equilibrium(T=4, K=2, beta=0.1, gamma=0.5, lr=0.1)
    >>> net = p.network(mlp_network([3, 4, 2], activation="tanh", loss="l2"))
    >>> prm = p.params(p.init(None, net.graph), {}, net.graph)
    >>> r = interpreter.step(net.graph, interpreter.init_state(net.graph, 2), prm, {"x": np.ones((2, 3)), "y": np.eye(2)})
    >>> bool(r.loss > 0)
    True
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.network import Network
from agentgraph.protocols.base import Protocol
from agentgraph.protocols.equilibrium_kinds import (COPY, DOWN, FLIP, LEARN, OUT, RELAX, EPAvgPool, EPInput, EPPoolDown,
                                                    EPSynapse, EPTarget, EPUnit, check_output_activation, ep_activation,
                                                    output_activity)

__all__ = ["DOWN", "OUT", "EPAvgPool", "EPPoolDown", "EPSynapse", "EPUnit", "ep_activation", "ep_network",
           "ep_schedule", "equilibrium"]


def _ticks(n: int) -> tuple[Phase, ...]:
    return tuple(p for _ in range(n) for p in (Phase(RELAX), Phase(COPY)))


def ep_schedule(T: int, K: int, centred: bool = False) -> Schedule:
    """The step of module docstring: free phase, loss, nudged phase(s), update; a tick is an
    ``ep`` sweep (the units move) then an ``ep_copy`` sweep (their activity agents copy ``u``).

    Example:
        >>> ep_schedule(1, 2)
        Schedule(ep -> ep_copy -> forward [loss] -> ep -> ep_copy -> ep -> ep_copy -> ep_learn)
    """
    flip = (Phase(FLIP), *_ticks(K)) if centred else ()
    return Schedule((*_ticks(T), Phase("forward", loss=True), *_ticks(K), *flip, Phase(LEARN)))


def ep_network(net: Network, T: int, K: int, centred: bool = False, output_activation: str | None = None) -> Network:
    """The EP network of a library network with an L2 head (module docstring): its agents with
    the EP kinds under the library names, an activity agent (kind ``ep_out``, name
    ``("ep_out", *unit)``: the identity, or ``output_activation``'s ``ρ_out``) for each unit
    without an activation (an output unit), a downward half (kind
``ep_pool_down``, name ``("ep_pool_down", *pool)``) for each average pool, and the arrows of ``ep``
    (activities into synapses, copies of the forward and backward arrows; synapses into units;
    targets into their output units), ``ep_copy`` (each unit to its activity agent) and
    ``ep_learn`` (activity agents to their units and, as pairs, to their synapses). No arrow is
    delayed. Fresh-weight initialisers and read-out are the given network's; ties (a cnn's
    kernels) are kept.

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> g = ep_network(mlp_network([3, 2], loss="l2"), T=2, K=1).graph
        >>> g.number_of_arrows("ep"), g.number_of_arrows("ep_copy"), g.number_of_arrows("ep_learn")
        (20, 2, 14)
    """
    lib = net.graph
    A = lib.arrays()
    kind_of = np.array(A.kind_names, dtype=object)[A.kind]
    acts = {n for n in A.kind_names if n not in ("input", "target", "synapse", "bias", "l2", "avg_pool")}
    odd = sorted(n for n in acts if not hasattr(lib.kinds[n], "fn") or n == "step")
    if odd:
        raise AgentGraphError(f"equilibrium propagation runs on library networks with an L2 head, synapses, "
                              f"activations and average pools (mlp, random_dag, or a cnn of conv, avg pool and "
                              f"dense layers with loss='l2'); this one has kinds {odd} (max pooling is not a fixed "
                              f"linear map, so not a coupling of EP's energy: use Pool(mode='avg') or strided "
                              f"convolutions).")
    for name in (OUT, DOWN):
        if name in A.kind_names:
            raise AgentGraphError(f"equilibrium propagation names kinds of its own {name!r}; this network already "
                                  f"has a kind of that name.")
    t = lib.ties()
    if any(f not in ("w", "b") or r != "sum" for f, r in zip(t.fields, t.reductions)):
        raise AgentGraphError(f"equilibrium propagation keeps ties of w and b summed (a cnn's kernels); this network "
                              f"ties {sorted(set(zip(t.fields, t.reductions)))}.")
    if T < 0 or K < 1:
        raise AgentGraphError(f"protocol.T must be >= 0 and protocol.K >= 1, got {T} and {K}.")
    check_output_activation(output_activation)
    heads = A.type_mask("forward") & (kind_of[A.dst] == "l2") & (kind_of[A.src] != "target")
    if (kind_of[A.src[heads]] != "bias").any():
        raise AgentGraphError(f"equilibrium propagation nudges the output units themselves; this network's L2 head "
                              f"reads kinds {sorted(set(kind_of[A.src[heads]]) - {'bias'})} (an output activation "
                              f"of the builder): build it without one (output_activation=None) and give the "
                              f"protocol's output_activation instead.")
    subs = {"input": EPInput(), "target": EPTarget(), "synapse": EPSynapse(centred),
            "bias": EPUnit(centred, output_activation),
            "avg_pool": EPAvgPool(), **{n: ep_activation(lib.kinds[n], centred) for n in acts}}
    h = lib.to_networkx()  # without the backward arrows: nothing runs them
    h.remove_edges_from([e for e in h.edges(keys=True, data="type") if e[3] == "backward"])
    h.graph["schedule"] = ep_schedule(T, K, centred)
    g = AgentGraph.from_networkx(h, kinds=[k for n, k in subs.items() if n in A.kind_names])
    names = list(A.names)
    fwd, bwd = A.type_mask("forward"), A.type_mask("backward")
    is_unit, is_syn, is_act = kind_of == "bias", kind_of == "synapse", np.isin(kind_of, sorted(acts))
    ua = fwd & is_unit[A.src] & is_act[A.dst]
    act_of = np.arange(len(kind_of))
    act_of[A.src[ua]] = A.dst[ua]  # a hidden unit's activity is its activation's
    lone = np.flatnonzero(is_unit & (act_of == np.arange(len(kind_of))))  # an output's: a new identity agent's
    if len(lone):
        g.add_kind(output_activity(centred, output_activation))
        new = [(OUT, *n) if isinstance(n, tuple) else (OUT, n) for n in (names[i] for i in lone)]
        g.add_agents(new, OUT)
        act_of[lone] = len(names) + np.arange(len(lone))
        names += new
    unit_of = np.arange(len(names))
    unit_of[act_of[is_unit]] = np.flatnonzero(is_unit)
    is_pool = kind_of == "avg_pool"
    down_of = np.arange(len(names))  # a pool's downward half
    pools = np.flatnonzero(is_pool)
    if len(pools):
        g.add_kind(EPPoolDown())
        new = [(DOWN, *n) if isinstance(n, tuple) else (DOWN, n) for n in (names[i] for i in pools)]
        agents, init = lib.initial_states("avg_pool")  # the window sizes, in agent order like `pools`
        g.add_agents(new, DOWN, states={"n": init["n"][np.searchsorted(agents, pools)]})
        down_of[pools] = len(names) + np.arange(len(pools))
        names += new

    def add(src, dst, port, t, src_port="out"):
        if len(src):
            g.add_arrows([names[i] for i in src], [names[i] for i in dst], t, port=port, src_port=src_port)

    into = fwd & is_syn[A.dst]  # activity below -> synapse (an input's, or a unit's activity agent's)
    add(act_of[A.src[into]], A.dst[into], "x", RELAX)
    add(A.src[fwd & is_syn[A.src] & is_unit[A.dst]], A.dst[fwd & is_syn[A.src] & is_unit[A.dst]], "x", RELAX)
    down = bwd & is_unit[A.src] & is_syn[A.dst]  # activity above -> synapse
    add(act_of[A.src[down]], A.dst[down], "m", RELAX)
    up = bwd & is_syn[A.src] & is_act[A.dst]
    add(A.src[up], unit_of[A.dst[up]], "m", RELAX, src_port="back")
    pin = fwd & is_pool[A.dst]  # activities (or pools) below -> pool: up; their backward arrows: down
    add(act_of[A.src[pin]], A.dst[pin], "x", RELAX)
    add(act_of[A.src[pin]], A.dst[pin], "x", LEARN, src_port="pair")
    syn_down, pool_pool = bwd & is_pool[A.dst] & is_syn[A.src], bwd & is_pool[A.dst] & is_pool[A.src]
    add(A.src[syn_down], down_of[A.dst[syn_down]], "m", RELAX, src_port="back")
    add(down_of[A.src[pool_pool]], down_of[A.dst[pool_pool]], "m", RELAX)
    pool_down = bwd & is_pool[A.src] & is_act[A.dst]
    add(down_of[A.src[pool_down]], unit_of[A.dst[pool_down]], "m", RELAX)
    loss = fwd & (kind_of[A.dst] == "l2")
    port = np.array(A.strings, dtype=object)[A.port]
    pred, tgt = loss & (port == "pred"), loss & (port == "target")
    unit_for = dict(zip(A.dst[pred].tolist(), A.src[pred].tolist()))
    add(A.src[tgt], np.array([unit_for[int(d)] for d in A.dst[tgt]], np.int64), "y", RELAX)
    units = np.flatnonzero(is_unit)
    add(units, act_of[units], "x", COPY)
    add(act_of[units], units, "d", LEARN)
    add(act_of[A.src[into]], A.dst[into], "x", LEARN, src_port="pair")
    add(act_of[A.src[down]], A.dst[down], "m", LEARN, src_port="pair")
    return net.with_graph(g.validate())


def equilibrium(T: int = 20, K: int | None = None, beta: float = 0.1, gamma: float = 0.5, lr: float = 0.05,
                lrs: dict[str, float] | None = None, nudge: Literal["positive", "centred"] = "positive",
                learn: tuple[Literal["lr", "beta", "gamma"], ...] = ("lr", "beta", "gamma"),
                lr_max: float | None = None, output_activation: str | None = None) -> Protocol:
    """Equilibrium propagation as a :class:`~agentgraph.protocols.base.Protocol` (config
    ``protocol: {rule: equilibrium, T: 20, beta: 0.1}``; module docstring).

    Args:
        T: free-phase relaxation ticks; K: nudged-phase ticks (default ``T``); both static.
        beta: the nudge β; gamma: the relaxation rate γ; lr: every group's learning rate
            (meta-learned as ``log_beta``, ``log_gamma``, ``log_lr[group]``).
        lrs: per-group learning rates overriding ``lr``.
        nudge: ``"positive"`` (one nudged phase, ``+β``) or ``"centred"`` (``±β``).
        learn: which settings are meta-parameters (``log_lr``, ``log_beta``, ``log_gamma``); the
            others stay at their given values. E.g. ``["lr"]``: only the per-group rates — on the
            digits config β and γ sit on knife edges (γ 0.35 or 0.6 instead of 0.5 makes most
            runs diverge), which a meta-step can cross.
        lr_max: a bounded parameterisation of the rates: group ``g``'s rate is
            ``lr_max · sigmoid(θ_g)`` (meta-parameter ``logit_lr[g]`` instead of ``log_lr[g]``,
            starting at its given rate, which must be below ``lr_max``), so no meta-step takes
            it past ``lr_max`` — a guard for a best rate that sits next to a diverging one
            (``None``: unbounded, ``exp(log_lr[g])``).
        output_activation: the output units' activity ``ρ_out`` (a library activation but
            ``step``: ``hard_sigmoid`` is Scellier & Bengio's clipped output); the energy, the
            cost ``½ Σ_out (ρ_out(u) − y)²``, the nudge ``β (y − ρ_out(u))`` and the update all
            use ``ρ_out(u)``, so the update still tends to ``−lr dL/dθ`` of that loss. ``None``
            (default): linear outputs, ``ρ(u) = u``.

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> p = equilibrium(T=3, beta=0.2)
        >>> net = p.network(mlp_network([3, 2], loss="l2"))
        >>> round(float(p.params(p.init(None, net.graph), {}, net.graph)["synapse:0"]["beta"]), 4)
        0.2
    """
    K = T if K is None else K
    if not (beta > 0 and gamma > 0 and lr > 0 and all(v > 0 for v in (lrs or {}).values())):
        raise AgentGraphError(f"protocol.beta, gamma, lr and lrs must be positive, got {beta}, {gamma}, {lr}, {lrs}.")
    if nudge not in ("positive", "centred"):
        raise AgentGraphError(f"protocol.nudge must be 'positive' or 'centred', got {nudge!r}.")
    if T < 0 or K < 1:
        raise AgentGraphError(f"protocol.T must be >= 0 and protocol.K >= 1, got {T} and {K}.")
    learn = tuple(learn)
    if not learn or not set(learn) <= {"lr", "beta", "gamma"} or len(set(learn)) != len(learn):
        raise AgentGraphError(f"protocol.learn must list some of 'lr', 'beta', 'gamma' once each, got {list(learn)}.")
    rates, centred = dict(lrs or {}), nudge == "centred"
    if lr_max is not None and not all(v < lr_max for v in (lr, *rates.values())):
        raise AgentGraphError(f"protocol.lr_max ({lr_max}) must exceed lr and every lrs value, got {lr} and {rates}.")
    lr_key = "log_lr" if lr_max is None else "logit_lr"
    check_output_activation(output_activation)

    def groups_of(graph):
        return [g for g in graph.groups() if g not in (OUT, DOWN)]

    def init(key, graph):
        f = lambda v: jnp.asarray(np.log(v), jnp.float32)
        r = lambda g: rates.get(g, lr)  # noqa: E731
        start = r if lr_max is None else (lambda g: r(g) / (lr_max - r(g)))  # exp(logit(r / lr_max))
        out = {"log_beta": f(beta), "log_gamma": f(gamma), lr_key: {g: f(start(g)) for g in groups_of(graph)}}
        return {k: v for k, v in out.items() if k.split("_")[1] in learn}

    def params(learned, stats, graph):
        b = jnp.exp(learned["log_beta"]) if "beta" in learn else beta
        gm = jnp.exp(learned["log_gamma"]) if "gamma" in learn else gamma
        if "lr" not in learn:
            lrs_ = {g: rates.get(g, lr) for g in groups_of(graph)}
        elif lr_max is None:
            lrs_ = {g: jnp.exp(v) for g, v in learned[lr_key].items()}
        else:
            lrs_ = {g: lr_max * jax.nn.sigmoid(v) for g, v in learned[lr_key].items()}
        return {g: {"beta": b, "gamma": gm, **({"lr": lrs_[g]} if g in lrs_ else {})} for g in graph.groups()}

    return Protocol(name="equilibrium", network=lambda net: ep_network(net, T, K, centred, output_activation),
                    init=init, params=params,
                    settings={"T": T, "K": K, "beta": beta, "gamma": gamma, "lr": lr, "lrs": rates, "nudge": nudge,
                              "learn": list(learn), "lr_max": lr_max, "output_activation": output_activation})
