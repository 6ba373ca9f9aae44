"""Errors sent backwards without weight transport: feedback alignment, direct feedback alignment
and sign symmetry, each with meta-learned per-group learning rates and a feedback scale.

* **Feedback alignment** (Lillicrap et al. 2016), ``rule: feedback_alignment``: a synapse
  receives its post-unit's error ``m``, sends ``s · b · m`` to its pre-unit (``b`` a fixed random
  feedback weight of its own, ``s`` the feedback scale) and changes ``w`` by ``−lr · m · x``.
* **Sign symmetry** (Liao, Leibo & Poggio 2016), ``rule: sign_symmetry``: the feedback weight is
  ``sign(w)`` (``magnitude: unit``) or ``sign(w) · |b|`` with a fixed random magnitude ``b``
  (``magnitude: random``) — tied to the forward weight's current sign, nothing else transported.
* **Direct feedback alignment** (Nøkland 2016), ``rule: direct_feedback_alignment``: the output
  error ``e = pred − target`` (for a softmax head ``p − t``, the logits' gradient when the targets
  sum to 1) goes straight to every hidden unit ``j`` through fixed random weights ``B_j``
  ``[n_out]``; the unit's error is ``s · (B_j · e) · act'(x_j)`` and the layers below it never hear
  from the layers above. In the graph: one ``dfa_error`` agent per output (it reads the loss
  agent's ``pred`` and ``target`` in the forward sweep) and arrows of a type of its own
  (``arrow_type``, default ``"dfa"``) from every error agent to every hidden activation; the
  schedule runs ``forward [loss] -> dfa -> backward -> reflexive``.

Meta-parameters: ``{"log_lr": {group: log lr}, "log_feedback": log s}``; every group receives
``{"lr": lr, "feedback": s}``. On a ``cnn`` (tied kernels) the feedback weights ``b`` of FA and of
sign symmetry are tied like the kernel weights they mirror (one random feedback kernel);
DFA's ``B`` is one vector per hidden unit and position.

Example:
    >>> import numpy as np
    >>> from agentgraph import interpreter
    >>> from agentgraph.builders import mlp_network
    >>> p = direct_feedback_alignment()
    >>> g = p.network(mlp_network([3, 4, 2], activation="tanh")).graph
    >>> r = interpreter.step(g, interpreter.init_state(g, 2), p.params(p.init(None, g), {}, g),
    ...                      {"x": np.ones((2, 3)), "y": np.eye(2)})
    >>> g.schedule.types(), r.loss > 0
    (('forward', 'dfa', 'backward', 'reflexive'), True)
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.ports import Port
from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.network import FieldInit, Network
from agentgraph.nodes import Synapse
from agentgraph.nodes._util import learning_rate
from agentgraph.nodes.activations import ACTIVATIONS, Activation
from agentgraph.nodes.base import Field, Kind
from agentgraph.nodes.linear import Linear
from agentgraph.protocols.base import Protocol

__all__ = ["DFAActivation", "DFAError", "FeedbackSynapse", "SignSynapse", "direct_feedback_alignment",
           "feedback_alignment", "feedback_params", "sign_symmetry"]


def _scale(params) -> jnp.ndarray:
    """The feedback scale ``s`` of a group's params (1 when the group gives none)."""
    return params.get("feedback", 1.0) if isinstance(params, dict) else 1.0


class FeedbackSynapse(Synapse):
    """The library synapse with a fixed random feedback weight ``b``: backward sends ``s · b · m``
    (not ``w · m``; ``s = params["feedback"]``, default 1) and updates ``w`` by ``−lr · m · x`` as
    SGD does. Its maths is declared (``Linear`` both ways, ``Outer`` update), so a dense layer of
    them is two matrix products and an outer product.

    Example:
        >>> s, out, upd = FeedbackSynapse().backward({"lr": 0.1}, {"w": 2.0, "b": -1.0, "x": 3.0}, {"m": jnp.array([1.0])})
        >>> float(out[0]), round(float(upd["w"]), 6)
        (-1.0, -0.3)
    """

    fields = {**Synapse.fields, "b": Synapse.fields["w"]}

    def linear(self, sweep):
        if sweep == "forward":
            return {"out": Linear("x", "w")}
        return {"out": Linear("m", "b", pre=lambda p, v: _scale(p) * v)} if sweep == "backward" else {}

    def outer_updates(self):
        return super().outer_updates()

    def backward(self, params, state, messages):
        m = messages["m"]
        return state, _scale(params) * state["b"] * m, {"w": -learning_rate(params, self.name) * m[0] * state["x"]}


class SignSynapse(Synapse):
    """Sign-symmetric feedback: backward sends ``s · sign(w) · m`` (``random=False``) or
    ``s · sign(w) · |b| · m`` (``random=True``: a fixed random magnitude ``b``); ``w`` changes by
    ``−lr · m · x``.

    Example:
        >>> k = SignSynapse()
        >>> s, out, upd = k.backward({"lr": 0.1}, {"w": -2.0, "x": 3.0}, {"m": jnp.array([0.5])})
        >>> float(out[0]), round(float(upd["w"]), 6)
        (-0.5, -0.15)
    """

    def __init__(self, random: bool = False) -> None:
        self.random = bool(random)
        self.fields = {**Synapse.fields, "b": Synapse.fields["w"]} if self.random else dict(Synapse.fields)

    def linear(self, sweep):
        return {"out": Linear("x", "w")} if sweep == "forward" else {}

    def outer_updates(self):
        return super().outer_updates()

    def backward(self, params, state, messages):
        m = messages["m"]
        fb = jnp.sign(state["w"]) * (jnp.abs(state["b"]) if self.random else 1.0)
        return state, _scale(params) * fb * m, {"w": -learning_rate(params, self.name) * m[0] * state["x"]}


class DFAError(Kind):
    """One output's error for direct feedback alignment: forward reads the loss agent's ``pred``
    and ``target`` and stores ``e = pred − target``; on ``arrow_type`` it sends ``e · code``
    (``code``: the output's one-hot row, ``[n_out]``), so a hidden unit's sum port receives the
    whole error vector.

    Example:
        >>> k = DFAError(3)
        >>> st, _ = k.forward(None, {"e": 0.0, "code": jnp.eye(3)[1]}, {"pred": jnp.array([0.7]), "target": jnp.array([1.0])})
        >>> [round(float(v), 6) + 0.0 for v in k.act("dfa", None, st, {})[1]["out"]]
        [0.0, -0.3, 0.0]
    """

    name = "dfa_error"
    forward_ports = {"pred": Port(1, "sum"), "target": Port(1, "sum")}

    def __init__(self, n_out: int, arrow_type: str = "dfa") -> None:
        self.n_out, self.arrow_type = int(n_out), arrow_type
        self.fields = {"code": Field((self.n_out,)), "e": Field(per_example=True)}
        self.acts_on = (arrow_type,)
        self.arrow_outputs = {arrow_type: {"out": self.n_out}}

    def forward(self, params, state, inputs):
        return {**state, "e": inputs["pred"][0] - inputs["target"][0]}, {}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": state["e"] * state["code"]}, {}


class DFAActivation(Activation):
    """A hidden unit under direct feedback alignment: forward as the library activation; on
    ``arrow_type`` it receives the output error ``e`` ``[n_out]`` and stores ``d = B · e``
    (``B``: its fixed random feedback row); backward sends ``s · d · act'(x)`` and ignores what
    the synapses above send.

    Example:
        >>> k = DFAActivation("identity", 2)
        >>> st, _, _ = k.act("dfa", None, {"x": 0.0, "B": jnp.array([1.0, 2.0]), "d": 0.0}, {"e": jnp.array([0.5, 1.0])})
        >>> float(k.backward({"feedback": 2.0}, st, {"m": jnp.array([9.0])})[1][0])
        5.0
    """

    def __init__(self, fn: str, n_out: int, arrow_type: str = "dfa") -> None:
        super().__init__(fn)
        self.n_out, self.arrow_type = int(n_out), arrow_type
        self.fields = {"x": Field(per_example=True), "B": Field((self.n_out,)), "d": Field(per_example=True)}
        self.acts_on = (arrow_type,)
        self.arrow_ports = {arrow_type: {"e": Port(self.n_out, "sum")}}

    def act(self, arrow_type, params, state, inbox):
        return {**state, "d": jnp.dot(state["B"], inbox["e"])}, {}, {}

    def backward(self, params, state, messages):
        return state, (_scale(params) * state["d"] * self.dfn(state["x"]))[None], {}


def feedback_params(init_lr: float, feedback_scale: float):
    """The meta-parameters of this module's rules, as ``(init, params)``: ``init(key, graph) ->
    {"log_lr": {group: log init_lr}, "log_feedback": log feedback_scale}`` and ``params(learned,
    stats, graph) -> {group: {"lr": exp(log_lr[group]), "feedback": exp(log_feedback)}}``.

    Example:
        >>> from agentgraph.builders import mlp
        >>> init, params = feedback_params(0.5, 2.0)
        >>> g = mlp([2, 1], loss="l2"); p = params(init(None, g), {}, g)["synapse:0"]
        >>> round(float(p["lr"]), 5), round(float(p["feedback"]), 5)
        (0.5, 2.0)
    """
    if not (init_lr > 0 and feedback_scale > 0):
        raise AgentGraphError(f"protocol.init_lr and protocol.feedback_scale must be positive, got {init_lr}, "
                              f"{feedback_scale}.")

    def init(key, graph: AgentGraph) -> dict:
        return {"log_lr": {g: jnp.asarray(np.log(init_lr), jnp.float32) for g in graph.groups()},
                "log_feedback": jnp.asarray(np.log(feedback_scale), jnp.float32)}

    def params(learned, stats, graph: AgentGraph) -> dict:
        s = jnp.exp(learned["log_feedback"])
        return {g: {"lr": jnp.exp(learned["log_lr"][g]), "feedback": s} for g in graph.groups()}

    return init, params


def _need(net: Network, kinds: set[str], rule: str) -> None:
    if not kinds <= set(net.graph.kinds) or not net.graph.agents("synapse"):
        raise AgentGraphError(f"{rule} runs on library networks (kinds {sorted(kinds)}); this graph has kinds "
                              f"{sorted(net.graph.kinds)}.")


def _with_feedback_weights(net: Network, kind: Kind, feedback_std: float) -> Network:
    """``net`` with its synapse kind replaced by ``kind`` (which has a field ``b``), ``b`` drawn
    fresh ``~ N(0, feedback_std)`` and tied wherever ``w`` is (one feedback kernel per kernel)."""
    g = net.graph.with_kinds({"synapse": kind})
    t, A = g.ties(), g.arrays()
    is_syn = np.asarray(A.kind) == A.kind_names.index("synapse")
    for i, (name, field) in enumerate(zip(t.names, t.fields)):
        members = t.members(i)
        if field == "w" and is_syn[members[0]]:
            g.tie(members, "b", name=f"{name}/b", by_index=True)
    return net.with_graph(g.validate(), init=[*net.init, FieldInit("synapse", "b", std=feedback_std)])


def feedback_alignment(init_lr: float = 0.3, feedback_std: float = 0.05, feedback_scale: float = 1.0) -> Protocol:
    """Feedback alignment (module docstring) with meta-learned per-group rates and feedback scale.

    Args:
        init_lr: every group's learning rate before meta-training.
        feedback_std: the feedback weights ``b ~ N(0, feedback_std)``, drawn fresh per network.
        feedback_scale: the feedback scale ``s`` before meta-training.

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> p = feedback_alignment(0.5)
        >>> net = p.network(mlp_network([3, 2]))
        >>> type(net.graph.kinds["synapse"]).__name__, net.init[-1].field
        ('FeedbackSynapse', 'b')
    """
    init, params = feedback_params(init_lr, feedback_scale)
    if not feedback_std > 0:
        raise AgentGraphError(f"protocol.feedback_std must be positive, got {feedback_std}.")

    def network(net: Network) -> Network:
        _need(net, {"synapse"}, "feedback_alignment")
        return _with_feedback_weights(net, FeedbackSynapse(), feedback_std)

    return Protocol(name="feedback_alignment", network=network, init=init, params=params,
                    settings={"init_lr": init_lr, "feedback_std": feedback_std, "feedback_scale": feedback_scale})


def sign_symmetry(init_lr: float = 0.3, magnitude: Literal["unit", "random"] = "unit", feedback_std: float = 0.05,
                  feedback_scale: float = 1.0) -> Protocol:
    """Sign symmetry (module docstring): feedback ``sign(w)`` (``magnitude="unit"``) or
    ``sign(w) · |b|`` with ``b ~ N(0, feedback_std)`` fixed (``"random"``).

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> p = sign_symmetry(magnitude="random")
        >>> sorted(p.network(mlp_network([3, 2])).graph.kinds["synapse"].fields)
        ['b', 'w', 'x']
    """
    init, params = feedback_params(init_lr, feedback_scale)
    if magnitude not in ("unit", "random"):
        raise AgentGraphError(f"protocol.magnitude must be 'unit' or 'random', got {magnitude!r}.")

    def network(net: Network) -> Network:
        _need(net, {"synapse"}, "sign_symmetry")
        if magnitude == "random":
            return _with_feedback_weights(net, SignSynapse(random=True), feedback_std)
        return net.with_graph(net.graph.with_kinds({"synapse": SignSynapse()}))

    return Protocol(name="sign_symmetry", network=network, init=init, params=params,
                    settings={"init_lr": init_lr, "magnitude": magnitude, "feedback_std": feedback_std,
                              "feedback_scale": feedback_scale})


def _dfa_graph(lib: AgentGraph, feedback_std: float, arrow_type: str) -> tuple[AgentGraph, list[FieldInit]]:
    """The DFA graph of a library graph (module docstring) and the initialisers of its ``B``."""
    A = lib.arrays()
    kind_of = np.array(A.kind_names, dtype=object)[A.kind]
    fwd = A.type_mask("forward")
    loss_kinds = [k for k in A.kind_names if lib.kinds[k].loss_field is not None]
    losses = [int(i) for i in np.flatnonzero(np.isin(kind_of, loss_kinds))]
    slot = {}
    for i in losses:  # the output index of a loss agent: the slot of the target feeding it
        t = [int(s) for s in A.src[fwd & (A.dst == i)] if kind_of[s] == "target"]
        if len(t) != 1:
            raise AgentGraphError(f"direct_feedback_alignment: loss agent {A.names[i]!r} is not fed by one target agent.")
        slot[i] = int(A.slot[t[0]])
    n_out = len(losses)
    acts = sorted({k for k in A.kind_names if k in ACTIVATIONS})
    is_head = np.isin(kind_of, ["softmax", "softmax_norm", *loss_kinds])
    bad = np.flatnonzero(fwd & np.isin(kind_of, acts)[A.src] & is_head[A.dst])
    if len(bad):
        raise AgentGraphError(f"direct_feedback_alignment: activation {A.names[A.src[bad[0]]]!r} feeds the head (an "
                              "output activation); DFA sends the error to hidden units only — build the net without one.")
    g = lib.copy()
    g.add_kind(DFAError(n_out, arrow_type))
    for k in acts:
        g.add_kind(DFAActivation(k, n_out, arrow_type))
    g = g.with_schedule(Schedule((Phase("forward", loss=True), Phase(arrow_type), Phase("backward"),
                                  Phase("reflexive", self_loops=True))))
    errs = [("dfa_error", slot[i]) for i in losses]
    g.add_agents(errs, "dfa_error", states={"code": np.eye(n_out)[[slot[i] for i in losses]]})
    for port in ("pred", "target"):  # the error agents read what the loss agents read
        sel = np.flatnonzero(fwd & np.isin(A.dst, losses) & (np.array(A.strings, dtype=object)[A.port] == port))
        pos = {i: j for j, i in enumerate(losses)}
        g.add_arrows([A.names[s] for s in A.src[sel]], [errs[pos[int(d)]] for d in A.dst[sel]], "forward",
                     port=port)
    hidden = [A.names[i] for i in np.flatnonzero(np.isin(kind_of, acts))]
    if not hidden:
        raise AgentGraphError("direct_feedback_alignment: the network has no hidden units (activation agents).")
    g.add_arrows([e for e in errs for _ in hidden], hidden * n_out, arrow_type, port="e")
    return g.validate(), [FieldInit(k, "B", std=feedback_std) for k in acts]


def direct_feedback_alignment(init_lr: float = 0.3, feedback_std: float = 0.05, feedback_scale: float = 1.0,
                              arrow_type: str = "dfa") -> Protocol:
    """Direct feedback alignment (module docstring): the output error to every hidden unit
    through fixed random weights ``B ~ N(0, feedback_std)``, along arrows of type ``arrow_type``.

    Example:
        >>> from agentgraph.builders import random_dag_network
        >>> p = direct_feedback_alignment(arrow_type="direct")
        >>> g = p.network(random_dag_network(3, 4, 2, seed=1)).graph
        >>> g.number_of_arrows("direct"), len(g.agents("dfa_error"))
        (8, 2)
    """
    init, params = feedback_params(init_lr, feedback_scale)
    if not feedback_std > 0:
        raise AgentGraphError(f"protocol.feedback_std must be positive, got {feedback_std}.")
    if arrow_type in ("forward", "backward", "reflexive"):
        raise AgentGraphError(f"protocol.arrow_type must be a type of its own, not the library's {arrow_type!r}.")

    def network(net: Network) -> Network:
        _need(net, {"synapse"}, "direct_feedback_alignment")
        g, inits = _dfa_graph(net.graph, feedback_std, arrow_type)
        return net.with_graph(g, init=[*net.init, *inits])

    return Protocol(name="direct_feedback_alignment", network=network, init=init, params=params,
                    settings={"init_lr": init_lr, "feedback_std": feedback_std, "feedback_scale": feedback_scale,
                              "arrow_type": arrow_type})
