"""Unsupervised Hebbian learning: plain Hebb, the ABCD generalised form and Oja's rule.

Every synapse ``w_ij`` (pre-unit ``i``, post-unit ``j``) changes, per example, by

* ``form: abcd`` — ``Δw = η (A · x · y + B · x + C · y + D)`` (plain Hebb: ``A = 1, B = C = D = 0``);
* ``form: oja`` — ``Δw = η · y · (x − y · w)`` (Oja 1982: a linear unit's weight vector goes to
  the first principal component of its inputs, with norm 1);

``x`` the pre-unit's output (the synapse's input), ``y`` the post-unit's output: the activation
of the unit the synapse feeds, or, for a unit without one (an output unit), its biased sum
``z + b``. The engine averages over the inner batch. Biases do not learn. No error reaches any
agent: the graph keeps the network's forward arrows and drops its backward ones; a phase of type
``arrow_type`` (default ``"hebb"``) after the forward sweep carries each post-unit's output to
the synapses that feed it (schedule ``forward [loss] -> hebb``; the loss is read only for the
record).

With ``readout: clamped`` the output layer learns supervised but still Hebbian: the synapses into
an output unit (one a loss agent reads, through its softmax on a cross-entropy head) take ``y``
from that loss's target instead of the unit's output (the teacher-clamped Hebb of a readout:
``A = 1`` accumulates each class's mean input). The hidden layers stay unsupervised.

Meta-parameters per parameter group (per layer on an ``mlp``): ``log_lr`` and ``abcd = [A, B,
C, D]``; each group receives ``{"lr": η, "A", "B", "C", "D"}``. On a ``cnn`` the kernel ties are
kept (reduction ``sum``: a shared weight moves by the sum of its uses' Hebbian terms).

Example:
    >>> import numpy as np
    >>> from agentgraph import interpreter
    >>> from agentgraph.builders import mlp_network
    >>> p = hebbian(init_lr=0.1)
    >>> g = p.network(mlp_network([2, 1], activation="identity", loss="l2")).graph
    >>> s = interpreter.init_state(g, 1); s[("w", 0, 0, 0)]["w"] = np.asarray(1.0)
    >>> r = interpreter.step(g, s, p.params(p.init(None, g), {}, g), {"x": np.array([[2.0, 0.0]]), "y": np.zeros((1, 1))})
    >>> round(float(r.state[("w", 0, 0, 0)]["w"]), 5)   # 1 + 0.1 · x · y = 1 + 0.1 · 2 · 2
    1.4
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.ports import Port
from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.network import Network
from agentgraph.nodes import Synapse, Target
from agentgraph.nodes.activations import ACTIVATIONS, Activation
from agentgraph.nodes.base import Field, Kind
from agentgraph.nodes.bias import Bias
from agentgraph.nodes.linear import Linear
from agentgraph.protocols.base import Protocol

__all__ = ["HebbActivation", "HebbBias", "HebbSynapse", "HebbTarget", "clamped_posts", "forward_graph", "hebbian",
           "post_units"]


class HebbSynapse(Synapse):
    """A synapse that learns from its own input ``x`` and its post-unit's output ``y`` (port
    ``"y"`` of ``arrow_type``): ``form`` ``abcd`` or ``oja`` (module docstring). ``x`` is a plain
    per-example field here (the Hebbian phase reads it).

    Example:
        >>> k = HebbSynapse("oja")
        >>> _, _, upd = k.act("hebb", {"lr": 0.5}, {"w": 2.0, "x": 1.0}, {"y": jnp.array([1.0])})
        >>> float(upd["w"])   # 0.5 · 1 · (1 − 1 · 2)
        -0.5
    """

    def __init__(self, form: str = "abcd", arrow_type: str = "hebb") -> None:
        self.form, self.arrow_type = form, arrow_type
        self.fields = {"w": Field(), "x": Field(per_example=True)}
        self.acts_on = (arrow_type,)
        self.arrow_ports = {arrow_type: {"y": Port(1, "sum")}}

    def linear(self, sweep):
        return {"out": Linear("x", "w")} if sweep == "forward" else {}

    def outer_updates(self):
        return {}

    def act(self, arrow_type, params, state, inbox):
        x, y, w = state["x"], inbox["y"][0], state["w"]
        if self.form == "oja":
            dw = y * (x - y * w)
        else:
            dw = params["A"] * x * y + params["B"] * x + params["C"] * y + params["D"]
        return state, {}, {"w": params["lr"] * dw}


class HebbBias(Bias):
    """A unit's summing agent in the Hebbian phase: sends its output ``z + b`` (to the synapses
    feeding it, when no activation follows it); ``b`` does not learn.

    Example:
        >>> float(HebbBias().act("hebb", None, {"z": 1.0, "b": 0.5}, {})[1]["out"][0])
        1.5
    """

    def __init__(self, arrow_type: str = "hebb") -> None:
        self.acts_on = (arrow_type,)
        self.arrow_outputs = {arrow_type: {"out": 1}}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": jnp.reshape(state["z"] + state["b"], (1,))}, {}


class HebbActivation(Activation):
    """An activation unit in the Hebbian phase: sends its output ``act(x)``.

    Example:
        >>> float(HebbActivation("relu").act("hebb", None, {"x": -1.0}, {})[1]["out"][0])
        0.0
    """

    def __init__(self, fn: str, arrow_type: str = "hebb") -> None:
        super().__init__(fn)
        self.acts_on = (arrow_type,)
        self.arrow_outputs = {arrow_type: {"out": 1}}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": jnp.reshape(self.fn(state["x"]), (1,))}, {}


class HebbTarget(Target):
    """A target agent in the Hebbian phase (``readout: clamped``): sends the target it read in the
    forward sweep, the clamped ``y`` of its output unit's synapses.

    Example:
        >>> float(HebbTarget().act("hebb", None, {"x": 1.0}, {})[1]["out"][0])
        1.0
    """

    def __init__(self, arrow_type: str = "hebb") -> None:
        self.acts_on = (arrow_type,)
        self.arrow_outputs = {arrow_type: {"out": 1}}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": jnp.reshape(state["x"], (1,))}, {}


def forward_graph(lib: AgentGraph, schedule: Schedule, kinds: Iterable[Kind] = ()) -> AgentGraph:
    """A copy of ``lib`` that runs ``schedule`` with only the arrows of the types it runs (the
    network's backward arrows dropped when it runs no ``backward``), ``kinds`` substituted (same
    names), every agent's declared state, group and slot, every tie and the ``conv`` layout hints.

    Example:
        >>> from agentgraph.builders import mlp
        >>> g = forward_graph(mlp([2, 1], loss="l2"), Schedule((Phase("forward", loss=True),)))
        >>> g.number_of_arrows("forward"), g.number_of_arrows("backward")
        (6, 0)
    """
    A = lib.arrays()
    table = {**lib.kinds, **{k.name: k for k in kinds}}
    g = AgentGraph(kinds=table, schedule=schedule)
    start = 0
    while start < len(A.names):  # runs of one kind, in declaration order
        end = start + 1
        while end < len(A.names) and A.kind[end] == A.kind[start]:
            end += 1
        name = A.kind_names[A.kind[start]]
        rows, values = lib.initial_states(name)
        sel = np.searchsorted(rows, np.arange(start, end))
        states = {f: v[sel] for f, v in values.items() if f in table[name].fields}
        g.add_agents([A.names[i] for i in range(start, end)], name,
                     groups=[A.group_names[A.group[i]] for i in range(start, end)], states=states,
                     slots=A.slot[start:end] if table[name].external else None)
        start = end
    keep = np.isin(A.type, [A.type_names.index(t) for t in schedule.types() if t in A.type_names])
    combos = {(int(A.type[e]), int(A.port[e]), int(A.src_port[e]), bool(A.delay[e])) for e in np.flatnonzero(keep)}
    for t, port, src_port, delay in sorted(combos):
        e = np.flatnonzero(keep & (A.type == t) & (A.port == port) & (A.src_port == src_port) & (A.delay == delay))
        g.add_arrows(A.src[e], A.dst[e], A.type_names[t], port=A.strings[port] if port >= 0 else None,
                     src_port=A.strings[src_port], by_index=True, delay=delay)
    t = lib.ties()
    for i, (name, field, red) in enumerate(zip(t.names, t.fields, t.reductions)):
        g.tie(t.members(i), field, name=name, reduction=red, by_index=True)
    for hint in lib.hints("conv"):
        g.add_hint("conv", **hint)
    return g


def post_units(lib: AgentGraph) -> tuple[np.ndarray, np.ndarray]:
    """Each synapse and its post-unit's sending agent, as indices into ``lib.arrays()``: the
    activation its bias feeds, or the bias itself when it feeds none (an output unit). One pair
    per synapse (parallel forward arrows into the bias count once).

    Returns:
        ``(synapses int64 [S], posts int64 [S])``.

    Example:
        >>> from agentgraph.builders import mlp
        >>> g = mlp([1, 1, 1], activation="tanh", loss="l2")
        >>> [[g.arrays().names[i] for i in v] for v in post_units(g)]
        [[('w', 0, 0, 0), ('w', 1, 0, 0)], [('a', 0, 0), ('b', 1, 0)]]
    """
    A = lib.arrays()
    kind_of = np.array(A.kind_names, dtype=object)[A.kind]
    fwd = A.type_mask("forward")
    is_syn, is_bias, is_act = kind_of == "synapse", kind_of == "bias", np.isin(kind_of, list(ACTIVATIONS))
    post = np.arange(len(A.names))
    e = np.flatnonzero(fwd & is_bias[A.src] & is_act[A.dst])
    post[A.src[e]] = A.dst[e]
    e = np.flatnonzero(fwd & is_syn[A.src] & is_bias[A.dst])
    syn, unit = np.unique(np.stack([A.src[e], A.dst[e]]), axis=1)
    if len(np.unique(syn)) != len(syn):
        raise AgentGraphError("A synapse feeds two summing units; a Hebbian synapse has one post-unit.")
    return syn, post[unit]


def clamped_posts(lib: AgentGraph, posts: np.ndarray) -> np.ndarray:
    """``posts`` (post-unit sending agents, indices into ``lib.arrays()``, from
    :func:`post_units`) with every output unit's replaced by its loss agent's target agent: the
    unit the loss reads on ``pred``, or the unit feeding that agent on ``x`` (a softmax head).

    Returns:
        ``int64 [S]``, the same shape as ``posts``.

    Example:
        >>> from agentgraph.builders import mlp
        >>> g = mlp([1, 1, 1], activation="tanh", loss="l2")
        >>> syn, post = post_units(g)
        >>> [g.arrays().names[i] for i in clamped_posts(g, post)]
        [('a', 0, 0), ('y', 0)]
    """
    A = lib.arrays()
    fwd = A.type_mask("forward")
    port = np.array([*A.strings, None], dtype=object)[A.port]
    losses = [i for i, k in enumerate(np.array(A.kind_names, dtype=object)[A.kind]) if lib.kinds[k].loss_field]
    to_target = {}
    for L in losses:
        into = np.flatnonzero(fwd & (A.dst == L))
        tgt = [int(A.src[e]) for e in into if port[e] == "target"]
        pred = [int(A.src[e]) for e in into if port[e] == "pred"]
        if len(tgt) != 1 or len(pred) != 1:
            raise AgentGraphError(f"readout: clamped needs one target and one prediction per loss agent; "
                                  f"{A.names[L]} has {len(tgt)} and {len(pred)}.")
        feeds = [int(A.src[e]) for e in np.flatnonzero(fwd & (A.dst == pred[0])) if port[e] == "x"]
        for unit in (pred[0], *feeds):
            to_target[unit] = tgt[0]
    out = np.array([to_target.get(int(p), int(p)) for p in posts], np.int64)
    if not np.any(out != posts):
        raise AgentGraphError("readout: clamped found no synapse into an output unit (a loss agent's prediction).")
    return out


def hebbian(form: Literal["abcd", "oja"] = "abcd", init_lr: float = 0.01, A: float = 1.0, B: float = 0.0,
            C: float = 0.0, D: float = 0.0, arrow_type: str = "hebb",
            readout: Literal["none", "clamped"] = "none") -> Protocol:
    """Hebbian learning (module docstring): ``form="abcd"`` with starting coefficients ``A, B, C,
    D`` (the defaults: plain Hebb) or ``form="oja"``; ``init_lr`` every group's ``η`` before
    meta-training; ``readout="clamped"``: the output layer's ``y`` is the target (supervised Hebb).

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> p = hebbian("oja")
        >>> g = p.network(mlp_network([3, 2, 2])).graph
        >>> g.schedule.types(), g.number_of_arrows("hebb") == len(g.agents("synapse"))
        (('forward', 'hebb'), True)
    """
    if form not in ("abcd", "oja"):
        raise AgentGraphError(f"protocol.form must be 'abcd' or 'oja', got {form!r}.")
    if not init_lr > 0:
        raise AgentGraphError(f"protocol.init_lr must be positive, got {init_lr}.")
    if arrow_type in ("forward", "backward", "reflexive"):
        raise AgentGraphError(f"protocol.arrow_type must be a type of its own, not the library's {arrow_type!r}.")
    if readout not in ("none", "clamped"):
        raise AgentGraphError(f"protocol.readout must be 'none' or 'clamped', got {readout!r}.")

    def network(net: Network) -> Network:
        lib = net.graph
        if "synapse" not in lib.kinds or not lib.agents("synapse") or not lib.agents("bias"):
            raise AgentGraphError(f"hebbian runs on library networks (synapse and bias agents); this graph has kinds "
                                  f"{sorted(lib.kinds)}.")
        acts = [HebbActivation(k, arrow_type) for k in lib.arrays().kind_names if k in ACTIVATIONS]
        schedule = Schedule((Phase("forward", loss=True), Phase(arrow_type)))
        clamp = [HebbTarget(arrow_type)] if readout == "clamped" else []
        g = forward_graph(lib, schedule, [HebbSynapse(form, arrow_type), HebbBias(arrow_type), *acts, *clamp])
        syn, post = post_units(lib)
        if clamp:
            post = clamped_posts(lib, post)
        g.add_arrows(post, syn, arrow_type, port="y", by_index=True)
        return net.with_graph(g.validate())

    def init(key, graph: AgentGraph) -> dict:
        return {"log_lr": {g: jnp.asarray(np.log(init_lr), jnp.float32) for g in graph.groups()},
                "abcd": {g: jnp.asarray([A, B, C, D], jnp.float32) for g in graph.groups()}}

    def params(learned, stats, graph: AgentGraph) -> dict:
        out = {}
        for g in graph.groups():
            a, b, c, d = (learned["abcd"][g][i] for i in range(4))
            out[g] = {"lr": jnp.exp(learned["log_lr"][g]), "A": a, "B": b, "C": c, "D": d}
        return out

    return Protocol(name="hebbian", network=network, init=init, params=params,
                    settings={"form": form, "init_lr": init_lr, "A": A, "B": B, "C": C, "D": D,
                              "arrow_type": arrow_type, "readout": readout})
