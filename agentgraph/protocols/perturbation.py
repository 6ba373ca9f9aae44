"""Node perturbation: noise in, a reward-modulated local update, no backward pass.

One inner step runs three phases (schedule ``forward [loss] -> perturb -> reward``):

1. **forward** — the clean pass; the loss agents store the clean loss ``L`` (the step's loss);
2. **perturb** — a second forward pass along copies of the forward arrows (type ``"perturb"``)
   in which every unit ``j`` (each ``bias`` agent: a unit's summed input) adds ``σ ξ_j`` to its
   output, ``ξ_j ~ N(0, 1)`` per example (the per-example field ``xi``); the loss agents store the
   perturbed loss ``L̃`` and nothing else of the clean pass is overwritten;
3. **reward** — every loss agent sends ``L̃ − L`` to every unit (type ``"reward"``); unit ``j``
   forms ``g_j = (L̃ − L) ξ_j / σ``, moves its bias by ``−lr · g_j`` and sends ``g_j`` to the
   synapses feeding it (the network's bias → synapse backward arrows, multiplicity kept), which
   move by ``−lr · g_j · x``.

Since ``L̃ − L = σ ∇_z L · ξ + O(σ²)`` and ``E[ξ ξᵀ] = I``, ``E[g_j] = ∂L/∂z_j + O(σ²)``: the
expected update is the gradient step (Williams 1992; Flower & Jabri 1993), with no error
transported backwards — only one scalar per example broadcast.

**Where the noise comes from.** Kinds are pure functions, so ``ξ`` is state: the protocol's
:class:`~agentgraph.protocols.base.Stepping` fills ``xi`` before every inner step with
``N(0, 1)`` draws from ``fold_in(PRNGKey(seed), t)``, ``t`` the step counter the units keep (a
per-agent field advanced by the reward phase). A test may set ``xi`` itself and call
``program.step`` or the interpreter directly.

Meta-parameters: ``{"log_lr": {group: log lr}, "log_sigma": log σ}``; each group receives
``{"lr", "sigma"}``.

Example:
    >>> import numpy as np
    >>> from agentgraph import interpreter
    >>> from agentgraph.builders import mlp_network
    >>> p = node_perturbation()
    >>> g = p.network(mlp_network([2, 3, 2], activation="tanh")).graph
    >>> g.schedule.types(), g.number_of_arrows("backward")
    (('forward', 'perturb', 'reward'), 0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.ports import Port
from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.network import Network
from agentgraph.nodes import Synapse
from agentgraph.nodes.base import Field, Kind
from agentgraph.nodes.bias import Bias
from agentgraph.nodes.linear import Linear
from agentgraph.protocols.base import Protocol, Stepping
from agentgraph.protocols.hebbian import forward_graph

__all__ = ["PERTURB", "REWARD", "PerturbedBias", "PerturbedLoss", "PerturbedRelay", "PerturbedSynapse",
           "node_perturbation"]

#: The arrow types of the perturbed pass and of the reward broadcast.
PERTURB, REWARD = "perturb", "reward"


def _outputs(out) -> dict:
    return out if isinstance(out, dict) else {"out": out}


class PerturbedRelay(Kind):
    """Any forward-only library kind (inputs, targets, activations, softmax, pools) taking part
    in the perturbed pass: the same forward function, its clean-pass state left as it was.

    Example:
        >>> from agentgraph.nodes import Activation
        >>> k = PerturbedRelay(Activation("tanh"))
        >>> st, out, _ = k.act(PERTURB, None, {"x": 0.5}, {"x": jnp.array([0.0])})
        >>> float(st["x"]), float(out["out"][0])
        (0.5, 0.0)
    """

    def __init__(self, kind: Kind) -> None:
        self.inner = kind
        self.name, self.external = kind.name, kind.external
        self.fields = dict(kind.fields)
        self.forward_ports, self.forward_outputs = dict(kind.forward_ports), dict(kind.forward_outputs)
        self.acts_on = (PERTURB,)
        self.arrow_ports = {PERTURB: dict(kind.forward_ports)}
        self.arrow_outputs = {PERTURB: dict(kind.forward_outputs)}

    def forward(self, params, state, inputs):
        return self.inner.forward(params, state, inputs)

    def act(self, arrow_type, params, state, inbox):
        return state, _outputs(self.inner.forward(params, state, inbox)[1]), {}


class PerturbedLoss(PerturbedRelay):
    """A loss agent: stores the perturbed pass's loss in ``loss_p`` and sends ``loss_p − loss``
    to every unit in the reward phase.

    Example:
        >>> from agentgraph.nodes.losses import L2Loss
        >>> k = PerturbedLoss(L2Loss())
        >>> st, _, _ = k.act(PERTURB, None, {"pred": 0.0, "target": 0.0, "loss": 0.5, "loss_p": 0.0},
        ...                  {"pred": jnp.array([2.0]), "target": jnp.array([0.0])})
        >>> float(k.act(REWARD, None, st, {})[1]["out"][0])
        1.5
    """

    def __init__(self, kind: Kind) -> None:
        super().__init__(kind)
        self.loss_field = kind.loss_field
        self.fields["loss_p"] = Field(per_example=True)
        self.acts_on = (PERTURB, REWARD)
        self.arrow_outputs = {PERTURB: dict(kind.forward_outputs), REWARD: {"out": 1}}

    def act(self, arrow_type, params, state, inbox):
        if arrow_type == REWARD:
            return state, {"out": jnp.reshape(state["loss_p"] - state[self.loss_field], (1,))}, {}
        new, out = self.inner.forward(params, state, inbox)
        return {**state, "loss_p": new[self.loss_field]}, _outputs(out), {}


class PerturbedBias(Bias):
    """A unit: clean ``z + b``; perturbed ``z + b + σ ξ``; in the reward phase ``g = r ξ / σ``
    (``r``: the summed loss differences), ``b −= lr g``, ``g`` sent to its synapses, step counter
    ``t += 1``.

    Example:
        >>> k = PerturbedBias()
        >>> s = {"b": 0.0, "z": 0.0, "xi": 2.0, "t": 0.0}
        >>> _, out, upd = k.act(REWARD, {"lr": 0.1, "sigma": 0.5}, s, {"r": jnp.array([0.25])})
        >>> float(out["out"][0]), round(float(upd["b"]), 6), float(upd["t"])
        (1.0, -0.1, 1.0)
    """

    fields = {"b": Field(), "z": Field(per_example=True), "xi": Field(per_example=True), "t": Field()}
    acts_on = (PERTURB, REWARD)
    arrow_ports = {PERTURB: {"x": Port(1, "sum")}, REWARD: {"r": Port(1, "sum")}}
    arrow_outputs = {PERTURB: {"out": 1}, REWARD: {"out": 1}}

    def act(self, arrow_type, params, state, inbox):
        if arrow_type == PERTURB:
            return state, {"out": inbox["x"] + state["b"] + params["sigma"] * state["xi"]}, {}
        g = inbox["r"] * state["xi"] / params["sigma"]
        return state, {"out": g}, {"b": -params["lr"] * g[0], "t": jnp.ones_like(state["t"])}


class PerturbedSynapse(Synapse):
    """A synapse: ``w x`` in both passes (its clean input ``x`` kept); in the reward phase
    ``w −= lr · g · x`` with ``g`` its unit's signal.

    Example:
        >>> k = PerturbedSynapse()
        >>> round(float(k.act(REWARD, {"lr": 0.1}, {"w": 1.0, "x": 2.0}, {"m": jnp.array([0.5])})[2]["w"]), 6)
        -0.1
    """

    fields = {"w": Field(), "x": Field(per_example=True)}
    acts_on = (PERTURB, REWARD)
    arrow_ports = {PERTURB: {"x": Port(1, "sum")}, REWARD: {"m": Port(1, "sum")}}
    arrow_outputs = {PERTURB: {"out": 1}}

    def linear(self, sweep):
        return {"out": Linear("x", "w")} if sweep == "forward" else {}

    def outer_updates(self):
        return {}

    def act(self, arrow_type, params, state, inbox):
        if arrow_type == PERTURB:
            return state, {"out": state["w"] * inbox["x"]}, {}
        return state, {}, {"w": -params["lr"] * inbox["m"][0] * state["x"]}


def _perturbed_graph(lib: AgentGraph) -> AgentGraph:
    """The node-perturbation graph of a library graph (module docstring)."""
    A = lib.arrays()
    kind_of = np.array(A.kind_names, dtype=object)[A.kind]
    kinds = []
    for name in A.kind_names:
        k = lib.kinds[name]
        if name == "synapse":
            kinds.append(PerturbedSynapse())
        elif name == "bias":
            kinds.append(PerturbedBias())
        elif k.loss_field is not None:
            kinds.append(PerturbedLoss(k))
        elif k.acts_on or not k.runs("forward"):
            raise AgentGraphError(f"node_perturbation: kind {name!r} is not a forward-only library kind.")
        else:
            kinds.append(PerturbedRelay(k))
    schedule = Schedule((Phase("forward", loss=True), Phase(PERTURB), Phase(REWARD)))
    g = forward_graph(lib, schedule, kinds)
    fwd = A.type_mask("forward", delayed=False)
    combos = {(int(A.port[e]), int(A.src_port[e])) for e in np.flatnonzero(fwd)}
    for port, src_port in sorted(combos):  # the perturbed pass: every forward arrow copied
        e = np.flatnonzero(fwd & (A.port == port) & (A.src_port == src_port))
        g.add_arrows(A.src[e], A.dst[e], PERTURB, port=A.strings[port], src_port=A.strings[src_port], by_index=True)
    losses = np.flatnonzero([lib.kinds[k].loss_field is not None for k in kind_of])
    units = np.flatnonzero(kind_of == "bias")
    g.add_arrows(np.repeat(losses, len(units)), np.tile(units, len(losses)), REWARD, port="r", by_index=True)
    back = np.flatnonzero(A.type_mask("backward") & (kind_of[A.src] == "bias") & (kind_of[A.dst] == "synapse"))
    g.add_arrows(A.src[back], A.dst[back], REWARD, port="m", by_index=True)
    return g.validate()


def node_perturbation(init_lr: float = 0.1, sigma: float = 1e-3, seed: int = 0) -> Protocol:
    """Node perturbation (module docstring): rate ``init_lr`` per group and noise ``sigma``
    before meta-training; ``seed`` the noise stream's key.

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> p = node_perturbation(sigma=0.01)
        >>> g = p.network(mlp_network([2, 2])).graph
        >>> round(float(p.params(p.init(None, g), {}, g)["synapse:0"]["sigma"]), 6)
        0.01
    """
    if not (init_lr > 0 and sigma > 0):
        raise AgentGraphError(f"protocol.init_lr and protocol.sigma must be positive, got {init_lr}, {sigma}.")

    def network(net: Network) -> Network:
        lib = net.graph
        if not ({"synapse", "bias"} <= set(lib.kinds) and lib.agents("bias")):
            raise AgentGraphError("node_perturbation runs on library networks (synapse and bias agents: the units "
                                  f"it perturbs); this graph has kinds {sorted(lib.kinds)}.")
        return net.with_graph(_perturbed_graph(lib))

    def init(key, graph: AgentGraph) -> dict:
        return {"log_lr": {g: jnp.asarray(np.log(init_lr), jnp.float32) for g in graph.groups()},
                "log_sigma": jnp.asarray(np.log(sigma), jnp.float32)}

    def params(learned, stats, graph: AgentGraph) -> dict:
        s = jnp.exp(learned["log_sigma"])
        return {g: {"lr": jnp.exp(learned["log_lr"][g]), "sigma": s} for g in graph.groups()}

    def step(inner, program, params, state, batch, stage, phase):
        units = state["bias"]
        key = jax.random.fold_in(jax.random.PRNGKey(seed), units["t"][0].astype(jnp.int32))
        xi = jax.random.normal(key, units["xi"].shape, units["xi"].dtype)
        return program.step(params, {**state, "bias": {**units, "xi": xi}}, batch)

    return Protocol(name="node_perturbation", network=network, init=init, params=params, stepping=Stepping(step),
                    settings={"init_lr": init_lr, "sigma": sigma, "seed": seed})
