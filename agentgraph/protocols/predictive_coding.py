"""Predictive coding (discriminative PCN; Whittington & Bogacz 2017, PCX's benchmark setting) on
any library network: ``mlp``, ``random_dag`` and ``cnn`` (tied kernels kept).

Every unit of the network — the ``bias`` agent where a layer sums its synapses — becomes a
**value unit carrying its error**: it holds a value ``v_j`` (per example) and the error
``m_j = μ_j − v_j`` of its prediction ``μ_j = Σ_i w_ij f(v_i) + b_j`` (``m = −e`` in the papers'
``e = v − μ``). The energy is

    ``F = Σ_hidden ½ m_j² + π L(μ_out)``

(the output units are clamped to the target: their energy is the network's own loss, L2 or
cross-entropy, weighted by the output precision ``π``, 1 by default as in PCX). As ``π → 0`` (the
output error shrinks against the hidden ones) the equilibrium errors become ``π`` times backprop's
and the update ``1/π`` times PC's is SGD's (Whittington & Bogacz 2017); at ``π = 1`` they differ. One inner step runs the schedule

    ``forward [loss] → (pc_infer → forward) × T → backward``

1. ``forward`` (the feedforward pass, loss read here): every value starts at its prediction,
   ``v = μ``, so every hidden error is 0;
2. ``T`` inference iterations, each a ``pc_infer`` sweep along the backward arrows (the loss sends
   ``∂L/∂μ_out``; a synapse sends ``w·m``; an activation multiplies by ``f′(v)``; a hidden unit
   moves ``v ← v + γ (m_j − f′(v_j) Σ_k w_jk m_k) = v − γ ∂F/∂v`` and sends its own ``m_j``)
   then a ``forward`` sweep that recomputes every ``μ`` and ``m`` from the new values;
3. ``backward``: the local weight update ``Δw_ij = −lr m_j f(v_i)``, ``Δb_j = −lr m_j`` (the
   library synapse's and bias's own update with the unit's error as the message) — ``−lr ∂F/∂θ``.

Only the unit kind is new (:class:`PCUnit`, under the name ``bias``); every other kind is the
library's, taking part in ``pc_infer`` with its backward function and no update
(:func:`relay_kind`). Output units are marked by one ``pc_clamp`` agent sending 1 to them.
Meta-parameters: ``log γ`` and one ``log lr`` per parameter group.

Example:
    >>> import numpy as np
    >>> from agentgraph import interpreter
    >>> from agentgraph.builders import mlp_network
    >>> p = predictive_coding(T=3, gamma=0.2, lr=0.1)
    >>> net = p.network(mlp_network([3, 4, 2], activation="tanh", loss="l2"))
    >>> prm = p.params(p.init(None, net.graph), {}, net.graph)
    >>> r = interpreter.step(net.graph, interpreter.init_state(net.graph, 2), prm, {"x": np.ones((2, 3)), "y": np.eye(2)})
    >>> bool(r.loss > 0)
    True
"""

from __future__ import annotations

import copy
from typing import Any

import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.ports import Port
from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.network import Network
from agentgraph.nodes import Bias, Field, Kind
from agentgraph.nodes._util import learning_rate
from agentgraph.protocols.base import Protocol
from agentgraph.protocols.units import output_units

__all__ = ["INFER", "PCClamp", "PCUnit", "copy_arrows", "energy", "pc_network", "pc_schedule", "predictive_coding",
           "relay_kind"]

#: The arrow type of the inference iterations.
INFER = "pc_infer"


class PCUnit(Bias):
    """A value unit carrying its error, under the library bias's name (module docstring).

    State: ``b`` (per agent); per example ``z`` (the summed input), ``v`` (the value), ``m``
    (the error ``μ − v``; 0 on output units), ``free`` (1 on hidden units, 0 on clamped output
    units: set from port ``"clamp"``) and ``fresh`` (1 until the step's first forward sweep).
    Params: ``{"lr", "gamma", "pi"}`` (``pi``: the output precision π, module docstring).

    Example:
        >>> s = {"b": 0.5, "z": 0.0, "v": 0.0, "m": 0.0, "free": 1.0, "fresh": 1.0}
        >>> s, out = PCUnit().forward(None, s, {"x": jnp.array([1.0]), "clamp": jnp.zeros(1)})
        >>> float(out[0]), float(s["v"]), float(s["m"])
        (1.5, 1.5, 0.0)
    """

    fields = {"b": Field(), "z": Field(per_example=True), "v": Field(per_example=True),
              "m": Field(per_example=True), "free": Field(per_example=True, init=1.0),
              "fresh": Field(per_example=True, init=1.0)}
    forward_ports = {"x": Port(1, "sum"), "clamp": Port(1, "sum")}
    acts_on = (INFER,)
    arrow_ports = {INFER: {"m": Port(1, "sum")}}
    arrow_outputs = {INFER: {"out": 1}}

    def forward(self, params, state, inputs):
        z = inputs["x"][0]
        mu = z + state["b"]
        free = 1.0 - inputs["clamp"][0]
        v = jnp.where(state["fresh"] > 0, mu, state["v"])
        m = free * (mu - v)
        out = free * v + (1.0 - free) * mu
        return {**state, "z": z, "v": v, "m": m, "free": free, "fresh": 0.0 * state["fresh"]}, out[None]

    def act(self, arrow_type, params, state, inbox):
        fb, free, m = inbox["m"][0], state["free"], state["m"]
        v = state["v"] + free * params["gamma"] * (m - fb)
        return {**state, "v": v}, (free * m + (1.0 - free) * params["pi"] * fb)[None], {}

    def backward(self, params, state, messages):
        free = state["free"]
        g = free * state["m"] + (1.0 - free) * params["pi"] * messages["m"][0]
        lr = learning_rate(params, self.name)
        return {**state, "fresh": 1.0 + 0.0 * state["fresh"]}, g[None], {"b": -lr * g}


class PCClamp(Kind):
    """Marks output units: sends its constant ``c = 1`` forward into their port ``"clamp"`` (one
    agent for all).

    Example:
        >>> float(PCClamp().forward(None, {"c": jnp.ones(())}, {})[1][0])
        1.0
    """

    name = "pc_clamp"
    fields = {"c": Field(init=1.0)}
    forward_outputs = {"out": 1}

    def forward(self, params, state, inputs):
        return state, state["c"][None]


def relay_kind(kind: Kind, arrow_type: str) -> Kind:
    """``kind`` (same name, same state, same forward and backward) also acting on ``arrow_type``
    with its backward function's ports, outputs and messages and no update — a library kind
    relaying messages along a copy of the backward arrows. Declarations are kept.

    Example:
        >>> from agentgraph.nodes import Synapse
        >>> k = relay_kind(Synapse(), "pc_infer")
        >>> s, out, upd = k.apply("pc_infer", {"lr": 0.1}, {"w": 2.0, "x": 3.0}, {"m": jnp.ones(1)})
        >>> k.name, float(out[0]), upd
        ('synapse', 2.0, {})
    """
    base = type(kind)

    def act(self, t, params, state, inbox):
        if t != arrow_type:
            return base.act(self, t, params, state, inbox)
        new, out, _ = base.backward(self, params, state, inbox)
        return new, out, {}

    attrs = {"acts_on": (*kind.acts_on, arrow_type), "act": act,
             "arrow_ports": {**dict(kind.arrow_ports), arrow_type: dict(kind.backward_ports)},
             "arrow_outputs": {**dict(kind.arrow_outputs), arrow_type: dict(kind.backward_outputs)}}
    if kind.declared_outer():
        attrs["outer_updates"] = lambda self: base.outer_updates(self)
    back = kind.declared_linear("backward")
    if back:  # the relay is the backward function: the same linear maths, lowered to a product too
        attrs["linear"] = lambda self, sweep: back if sweep == arrow_type else base.linear(self, sweep)
    cls = type(f"{base.__name__}_{arrow_type}", (base,), attrs)
    out = copy.copy(kind)
    out.__class__ = cls
    return out


def copy_arrows(g: AgentGraph, src_type: str, new_type: str, *, delay: bool = False,
                rewire: Any = None) -> None:
    """Add to ``g`` a copy of every ``src_type`` arrow as a ``new_type`` arrow (same ends, ports,
    source ports and multiplicity). ``rewire(src, dst, port) -> (src, dst, keep)`` (arrays of
    agent indices and a port string) may move or drop them first.

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> g = pc_network(mlp_network([2, 1], loss="l2"), T=1).graph
        >>> g.number_of_arrows("pc_infer") == g.number_of_arrows("backward")
        True
    """
    A = g.arrays()
    mask = A.type_mask(src_type)
    keys = {(int(p), int(q)) for p, q in zip(A.port[mask], A.src_port[mask])}
    for p, q in sorted(keys):
        sel = np.flatnonzero(mask & (A.port == p) & (A.src_port == q))
        src, dst = A.src[sel], A.dst[sel]
        if rewire is not None:
            src, dst, keep = rewire(src, dst, A.strings[p])
            src, dst = src[keep], dst[keep]
        if len(src):
            g.add_arrows(src, dst, new_type, port=A.strings[p], src_port=A.strings[q], by_index=True, delay=delay)


def pc_schedule(T: int) -> Schedule:
    """``forward [loss] → (pc_infer → forward) × T → backward``.

    Example:
        >>> pc_schedule(1)
        Schedule(forward [loss] -> pc_infer -> forward -> backward)
    """
    return Schedule((Phase("forward", loss=True), *(p for _ in range(T) for p in (Phase(INFER), Phase("forward"))),
                     Phase("backward")))


def pc_network(net: Network, T: int) -> Network:
    """The predictive-coding network of a library network (module docstring): its kinds relaying
    on ``pc_infer`` arrows (a copy of the backward arrows), its units :class:`PCUnit`, one
    ``pc_clamp`` agent marking the output units, the schedule :func:`pc_schedule`. Agents, ties,
    fresh-weight initialisers and read-out are the given network's.

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> pc_network(mlp_network([3, 2]), T=2).graph.number_of_arrows("pc_infer")
        14
    """
    lib = net.graph
    if "bias" not in {lib.kind_of(a).name for a in lib.agents()}:
        raise AgentGraphError("predictive coding runs on library networks whose units are 'bias' agents (mlp, "
                              f"random_dag, cnn); this graph has kinds {sorted(lib.kinds)}.")
    if T < 0:
        raise AgentGraphError(f"protocol.T must be >= 0, got {T}.")
    outputs = output_units(net, "predictive coding")
    used = {lib.kind_of(a).name for a in lib.agents()}
    kinds = {n: relay_kind(k, INFER) for n, k in lib.kinds.items() if n in used and n != "bias" and k.runs("backward")}
    g = lib.with_kinds({**kinds, "bias": PCUnit()}).with_schedule(pc_schedule(T))
    g.add_kind(PCClamp())
    g.add_agent(("pc_clamp",), "pc_clamp")
    names = g.arrays().names
    g.add_arrows([("pc_clamp",)] * len(outputs), [names[i] for i in outputs], "forward", port="clamp")
    if T:
        copy_arrows(g, "backward", INFER)
    return net.with_graph(g.validate())


def energy(graph: AgentGraph, state: dict, precision: float = 1.0) -> np.ndarray:
    """The energy ``F = Σ_hidden ½ m² + π Σ losses`` per example ``[B]`` of an interpreter state
    (``{agent: {field: [B]}}``, e.g. ``Program.to_agents``) of a :func:`pc_network` graph.

    Example:
        >>> from agentgraph import interpreter
        >>> from agentgraph.builders import mlp_network
        >>> g = pc_network(mlp_network([3, 2], loss="l2"), T=0).graph
        >>> energy(g, interpreter.init_state(g, 2)).shape
        (2,)
    """
    total = 0.0
    for a in graph.agents():
        k = graph.kind_of(a)
        s = state[a]
        if isinstance(k, PCUnit):
            total = total + 0.5 * np.asarray(s["free"]) * np.asarray(s["m"]) ** 2
        elif k.loss_field is not None:
            total = total + precision * np.asarray(s[k.loss_field])
    return np.asarray(total)


def predictive_coding(T: int = 20, gamma: float = 0.1, lr: float = 0.05, lrs: dict[str, float] | None = None,
                      precision: float = 1.0) -> Protocol:
    """Predictive coding as a :class:`~agentgraph.protocols.base.Protocol` (config
    ``protocol: {rule: predictive_coding, T: 20, gamma: 0.1, lr: 0.05}``).

    Args:
        T: inference iterations per step (static: the schedule's length).
        gamma: the inference rate γ (meta-learned as ``log_gamma``).
        lr: every group's weight learning rate (meta-learned as ``log_lr[group]``).
        lrs: per-group learning rates overriding ``lr`` (``{"synapse:0": 0.1, ...}``).
        precision: the output precision π (a fixed setting; module docstring).

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> p = predictive_coding(T=2, lrs={"synapse:0": 0.2})
        >>> net = p.network(mlp_network([3, 2]))
        >>> prm = p.params(p.init(None, net.graph), {}, net.graph)
        >>> round(float(prm["synapse:0"]["lr"]), 4), round(float(prm["bias:0"]["gamma"]), 4)
        (0.2, 0.1)
    """
    if not (gamma > 0 and lr > 0 and precision > 0 and all(v > 0 for v in (lrs or {}).values())):
        raise AgentGraphError(f"protocol.gamma, lr, lrs and precision must be positive, got "
                             f"{gamma}, {lr}, {lrs}, {precision}.")
    if T < 0:
        raise AgentGraphError(f"protocol.T must be >= 0, got {T}.")
    rates = dict(lrs or {})
    pi = float(precision)

    def init(key, graph):
        return {"log_gamma": jnp.asarray(np.log(gamma), jnp.float32),
                "log_lr": {g: jnp.asarray(np.log(rates.get(g, lr)), jnp.float32) for g in graph.groups()}}

    def params(learned, stats, graph):
        gm = jnp.exp(learned["log_gamma"])
        return {g: {"lr": jnp.exp(learned["log_lr"][g]), "gamma": gm, "pi": pi} for g in graph.groups()}

    return Protocol(name="predictive_coding", network=lambda net: pc_network(net, T), init=init, params=params,
                    settings={"T": T, "gamma": gamma, "lr": lr, "lrs": rates, "precision": pi})
