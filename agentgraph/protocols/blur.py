"""BLUR (Sandler et al., ICML 2021): bidirectional learned update rules, as a library protocol.

Neurons hold ``k`` states, synapses ``k`` channels; one *genome* ``{nu, mu, nu_t, mu_t ∈ R^{k×k};
f, eta, f_t, eta_t}`` (4k²+4 numbers) is shared by every agent. One inner step (one agent, one
example; ``ν a`` is ``nu @ a``)::

    forward   neuron j:   a_j ← σ(η (Σ_i w_ij ⊙ (ν a_i) + b_j ⊙ (ν e_0)))     (zero-out: a_j starts at 0)
    backward  output j:   a_j[1] ← label_j                               (no update: nothing downstream)
              neuron i:   a_i ← σ(f a_i + η Σ_j w_ij ⊙ (μ a_j))
              synapse ij: Δw_ij = (f̃ − 1) w_ij + η̃ (ν̃ᵀ a_i) ⊙ (μ̃ a_j)      (a_j: j's state after its backward)

No loss runs in the inner loop: the labels are injected into channel 1 of the output neurons by
label agents; predictions are channel 0 of the output neurons (a :class:`Readout` of kind
``logits``).

**From a library network** (:func:`blur_network`; ``mlp`` or ``random_dag``, layered or not):
inputs become :class:`BlurInput` (``(x, 0, …)``), synapses :class:`BlurSynapse` (``w [k]``),
every *bias* agent a :class:`BlurNeuron` — it is where a unit sums its synapses — whose bias
``b [k]`` is a synapse from a constant pre-neuron ``e_0 = (1, 0, …)`` (same Hebbian update), the
activation agents :class:`BlurRelay` (they pass states on unchanged: σ is the neuron's), the
loss head is removed, and the units the read-out named become output neurons with label agents.
The arrows are the library's, so non-layered graphs with skip connections and parallel arrows
work as they are.

**Differences from the paper.** The engine averages updates over the inner batch where BLUR sums
them (``η̃_here = B · η̃_BLUR``); biases are a library-network addition; the synapse update uses
the pre-neuron state stored in the forward sweep (the paper's uses its post-backward state; in
this engine's schedule an agent receives nothing after its own backward call). Labels are the
batch's targets as given (one-hot for classification).

**The backprop genome** (:func:`backprop_genome`): with ``k = 2``, σ = identity, channel 1 carries
``a + error`` and the synapses keep two equal channels, one BLUR step's weight and bias updates
are SGD's on the same linear network with an L2 head — checked to 1e-9 in float64 against the
gradient protocol on an ``mlp`` and a ``random_dag`` (``tests/protocols/test_blur.py``). With a
nonlinear σ no 2-state genome is exact (σ is applied to every channel, so the error channel cannot
be multiplied by σ'(z)).

Example:
    >>> import jax
    >>> from agentgraph.builders import mlp_network
    >>> p = blur(k=3)
    >>> net = p.network(mlp_network([4, 3, 2]))
    >>> len(net.graph.agents("blur_synapse")), len(net.graph.agents("blur_label")), net.readout.kind
    (18, 2, 'logits')
    >>> sum(v.size for v in jax.tree.leaves(p.init(jax.random.PRNGKey(0), net.graph)))  # 4k² + 4
    40
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.ports import Port
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.nodes.base import Field, Kind
from agentgraph.nodes.linear import Linear, Outer
from agentgraph.protocols.base import FieldInit, Network, Protocol, Readout

__all__ = ["BlurInput", "BlurLabel", "BlurNeuron", "BlurRelay", "BlurSynapse", "GROUP", "backprop_genome", "blur",
           "blur_network", "init_genome"]

#: The one parameter-sharing group of every BLUR agent.
GROUP = "blur"

SIGMAS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "identity": lambda z: z}
_HEAD = ("target", "softmax", "softmax_norm", "l2", "cross_entropy")


def _e0(k: int) -> jax.Array:
    return jnp.zeros(k).at[0].set(1.0)


class BlurNeuron(Kind):
    """A unit with ``k`` states ``a`` (per example) and a ``k``-channel bias ``b`` (per agent).

    Forward port ``"x"`` (sum) takes ``Σ_i w_ij ⊙ (ν a_i)``; backward port ``"m"`` (sum) takes
    ``Σ_j w_ij ⊙ (μ a_j)``; output neurons (``label=True``) also take ``"label"`` (size 1) into
    ``a[1]`` and do not update in the backward sweep.

    Example:
        >>> import jax
        >>> g = init_genome(2, jax.random.PRNGKey(0))
        >>> s, out = BlurNeuron(2).forward(g, {"a": jnp.zeros(2), "b": jnp.zeros(2)}, {"x": jnp.ones(2)})
        >>> out["out"].shape
        (2,)
    """

    def __init__(self, k: int, sigma: str = "tanh", *, label: bool = False) -> None:
        self.k, self.sigma, self.label = int(k), sigma, bool(label)
        self.name = "blur_output" if label else "blur_neuron"
        self._sigma = SIGMAS[sigma]
        self.fields = {"a": Field((self.k,), per_example=True), "b": Field((self.k,))}
        self.forward_ports = {"x": Port(self.k, "sum")}
        self.backward_ports = {"m": Port(self.k, "sum"), **({"label": Port(1, "sum")} if label else {})}
        self.forward_outputs = {"out": self.k}
        self.backward_outputs = {"out": self.k}

    def forward(self, params, state, inputs):
        z = inputs["x"] + state["b"] * (params["nu"] @ _e0(self.k))
        a = self._sigma(params["eta"] * z)
        return {**state, "a": a}, {"out": a}

    def backward(self, params, state, messages):
        a = jnp.asarray(state["a"])
        if self.label:
            a = a.at[1].set(messages["label"][0])
        else:
            a = self._sigma(params["f"] * a + params["eta"] * messages["m"])
        db = (params["f_t"] - 1.0) * state["b"] + params["eta_t"] * (params["nu_t"].T @ _e0(self.k)) * (params["mu_t"] @ a)
        return {**state, "a": a}, {"out": a}, {"b": db}


def _nu(p, v):
    return p["nu"] @ v


def _mu(p, v):
    return p["mu"] @ v


def _mu_t(p, v):
    return p["mu_t"] @ v


def _nu_t_T(p, v):
    return p["nu_t"].T @ v


def _eta_t(p):
    return p["eta_t"]


def _f_t_minus_1(p):
    return p["f_t"] - 1.0


class BlurSynapse(Kind):
    """A ``k``-channel synapse ``w`` (per agent) storing its pre-neuron's state ``a_in``.

    Example:
        >>> import jax
        >>> g = init_genome(2, jax.random.PRNGKey(0))
        >>> s, out = BlurSynapse(2).forward(g, {"w": jnp.ones(2), "a_in": jnp.zeros(2)}, {"x": jnp.ones(2)})
        >>> bool(jnp.allclose(out["out"], g["nu"] @ jnp.ones(2)))
        True
    """

    name = "blur_synapse"

    def __init__(self, k: int) -> None:
        self.k = int(k)
        self.fields = {"w": Field((self.k,)), "a_in": Field((self.k,), per_example=True)}
        self.forward_ports = {"x": Port(self.k, "sum")}
        self.backward_ports = {"m": Port(self.k, "sum")}
        self.forward_outputs = {"out": self.k}
        self.backward_outputs = {"out": self.k}

    def linear(self, sweep):  # lets the compiler run dense synapse blocks as matrix products
        if sweep == "forward":
            return {"out": Linear("x", "w", pre=_nu)}
        return {"out": Linear("m", "w", pre=_mu)} if sweep == "backward" else {}

    def outer_updates(self):
        return {"w": Outer("m", "a_in", "x", scale=_eta_t, message_map=_mu_t, stored_map=_nu_t_T, decay=_f_t_minus_1)}

    def forward(self, params, state, inputs):
        return {**state, "a_in": inputs["x"]}, {"out": state["w"] * (params["nu"] @ inputs["x"])}

    def backward(self, params, state, messages):
        a_j, w = messages["m"], state["w"]
        dw = (params["f_t"] - 1.0) * w + params["eta_t"] * (params["nu_t"].T @ state["a_in"]) * (params["mu_t"] @ a_j)
        return state, {"out": w * (params["mu"] @ a_j)}, {"w": dw}


class BlurRelay(Kind):
    """Passes a unit's state on unchanged in both sweeps (a library activation agent's place).

    Example:
        >>> BlurRelay(2).forward(None, {}, {"x": jnp.ones(2)})[1]["out"].tolist()
        [1.0, 1.0]
    """

    name = "blur_relay"

    def __init__(self, k: int) -> None:
        self.k = int(k)
        self.forward_ports = {"x": Port(self.k, "sum")}
        self.backward_ports = {"m": Port(self.k, "sum")}
        self.forward_outputs = {"out": self.k}
        self.backward_outputs = {"out": self.k}

    def forward(self, params, state, inputs):
        return state, {"out": inputs["x"]}

    def backward(self, params, state, messages):
        return state, {"out": messages["m"]}, {}


class BlurInput(Kind):
    """Reads ``batch["x"][:, slot]`` and sends ``(x, 0, …, 0)``.

    Example:
        >>> BlurInput(3).forward(None, {}, {"data": jnp.array([0.5])})[1]["out"].tolist()
        [0.5, 0.0, 0.0]
    """

    name = "blur_input"
    external = "x"

    def __init__(self, k: int) -> None:
        self.k = int(k)
        self.forward_ports = {"data": Port(1)}
        self.forward_outputs = {"out": self.k}

    def forward(self, params, state, inputs):
        return state, {"out": jnp.zeros(self.k).at[0].set(inputs["data"][0])}


class BlurLabel(Kind):
    """Reads ``batch["y"][:, slot]`` in the forward sweep and sends it, size 1, into an output
    neuron's ``"label"`` port in the backward sweep.

    Example:
        >>> s, _ = BlurLabel().forward(None, {"y": 0.0}, {"data": jnp.array([-1.0])})
        >>> BlurLabel().backward(None, s, {})[1]["out"].tolist()
        [-1.0]
    """

    name = "blur_label"
    external = "y"
    fields = {"y": Field(per_example=True)}
    forward_ports = {"data": Port(1)}
    backward_outputs = {"out": 1}

    def forward(self, params, state, inputs):
        return {**state, "y": inputs["data"][0]}, {}

    def backward(self, params, state, messages):
        return state, {"out": jnp.reshape(state["y"], (1,))}, {}


def blur_network(net: Network, k: int = 2, sigma: str = "tanh", init_std: float = 0.1) -> Network:
    """The BLUR network of a library network (module docstring): same arrows among inputs,
    synapses, biases (now neurons) and activations (now relays), head removed, label agents added.

    Example:
        >>> from agentgraph.builders import random_dag_network
        >>> b = blur_network(random_dag_network(3, 4, 2, seed=1), k=2)
        >>> len(b.readout.agents), b.init[0]
        (2, FieldInit(kind='blur_synapse', field='w', std=0.1, mean=0.0))
    """
    lib = net.graph
    if net.readout is None:
        raise AgentGraphError("BLUR needs the network's read-out to know its output units; give the Network a Readout.")
    A = lib.arrays()
    kind_of = np.array(A.kind_names, dtype=object)[A.kind]
    need = {"input", "synapse", "bias"}
    if not need <= set(A.kind_names):
        raise AgentGraphError(f"BLUR runs on library networks (kinds {sorted(need)} and activations); this graph "
                              f"has kinds {sorted(A.kind_names)}.")
    index = {a: i for i, a in enumerate(A.names)}
    fwd = A.type == 0
    outputs = []
    for r in net.readout.agents:  # the bias agent feeding each read-out unit, in output order
        srcs = [int(s) for s in A.src[fwd & (A.dst == index[r])] if kind_of[s] == "bias"]
        if len(srcs) != 1:
            raise AgentGraphError(f"Read-out agent {r!r} is not fed by exactly one bias agent; BLUR cannot find its "
                                  "output unit.")
        outputs.append(srcs[0])
    is_out = np.zeros(len(A.names), bool)
    is_out[outputs] = True
    g = AgentGraph(kinds=[BlurInput(k), BlurSynapse(k), BlurNeuron(k, sigma), BlurNeuron(k, sigma, label=True),
                          BlurRelay(k), BlurLabel()])
    keep = np.zeros(len(A.names), bool)
    for kind in A.kind_names:
        rows = np.flatnonzero(kind_of == kind)
        if kind in _HEAD:
            continue
        keep[rows] = True
        names = [A.names[i] for i in rows]
        if kind == "input":
            g.add_agents(names, "blur_input", groups=GROUP, slots=A.slot[rows])
        elif kind == "synapse":
            g.add_agents(names, "blur_synapse", groups=GROUP)
        elif kind == "bias":
            for out, kname in ((False, "blur_neuron"), (True, "blur_output")):
                sel = [A.names[i] for i in rows if is_out[i] == out]
                if sel:
                    g.add_agents(sel, kname, groups=GROUP)
        else:  # an activation: the neuron applies σ, the agent relays
            g.add_agents(names, "blur_relay", groups=GROUP)
    edges = keep[A.src] & keep[A.dst] & (A.type < 2)
    for t, tname in ((0, "forward"), (1, "backward")):
        for port_i in np.unique(A.port[edges & (A.type == t)]):
            sel = np.flatnonzero(edges & (A.type == t) & (A.port == port_i))
            g.add_arrows([A.names[i] for i in A.src[sel]], [A.names[i] for i in A.dst[sel]], tname,
                         port=A.strings[port_i])
    labels = [("blur_label", j) for j in range(len(outputs))]
    g.add_agents(labels, "blur_label", groups=GROUP, slots=range(len(outputs)))
    g.add_arrows(labels, [A.names[i] for i in outputs], "backward", port="label")
    readout = Readout(tuple(A.names[i] for i in outputs), "a", index=0, kind="logits")
    init = (FieldInit("blur_synapse", "w", std=float(init_std)), FieldInit("blur_output", "b"), FieldInit("blur_neuron", "b"))
    return Network(g.validate(), tuple(i for i in init if i.kind in g.kinds and g.agents(i.kind)), readout)


def init_genome(k: int, key: jax.Array, scale: float = 0.5) -> dict[str, jax.Array]:
    """A random genome ``{nu, mu, nu_t, mu_t: [k, k] ~ N(0, scale²/k); f, eta, f_t, eta_t}`` with
    ``f = 0.5``, ``eta = 1``, ``f_t = 1``, ``eta_t = 0.05``.

    Example:
        >>> sorted(init_genome(2, jax.random.PRNGKey(0)))
        ['eta', 'eta_t', 'f', 'f_t', 'mu', 'mu_t', 'nu', 'nu_t']
    """
    ks = jax.random.split(key, 4)
    mats = {n: scale * jax.random.normal(kk, (k, k)) / np.sqrt(k) for n, kk in zip(("nu", "mu", "nu_t", "mu_t"), ks)}
    return {**mats, "f": jnp.asarray(0.5), "eta": jnp.asarray(1.0), "f_t": jnp.asarray(1.0), "eta_t": jnp.asarray(0.05)}


def backprop_genome(lr: float) -> dict[str, jax.Array]:
    """The 2-state genome under which one BLUR step (σ = identity) makes SGD's updates (rate
    ``lr``) on a linear network with an L2 head: channel 0 the activation, channel 1 the
    activation plus the negative error, synapses and biases with two equal channels.

    Example:
        >>> backprop_genome(0.1)["mu"].tolist()
        [[0.0, 0.0], [-1.0, 1.0]]
    """
    a = jnp.asarray  # the default float dtype: float64 under jax.enable_x64
    return {"nu": a([[1.0, 0.0], [1.0, 0.0]]), "mu": a([[0.0, 0.0], [-1.0, 1.0]]),
            "nu_t": a([[1.0, 1.0], [0.0, 0.0]]), "mu_t": a([[-1.0, 1.0], [-1.0, 1.0]]),
            "f": a(1.0), "eta": a(1.0), "f_t": a(1.0), "eta_t": a(lr)}


def blur(k: int = 2, sigma: Literal["tanh", "sigmoid", "relu", "identity"] = "tanh", init_std: float = 0.1,
         genome_scale: float = 0.5) -> Protocol:
    """BLUR as a :class:`~agentgraph.protocols.base.Protocol` (config ``protocol: {rule: blur}``).

    Args:
        k: states per neuron / channels per synapse.
        sigma: the neurons' nonlinearity.
        init_std: fresh synapse channels ``~ N(0, init_std)`` (biases start at 0).
        genome_scale: the random genome's matrix scale (:func:`init_genome`).
    """
    if k < 2:
        raise AgentGraphError(f"protocol.k must be at least 2 (channel 1 holds the label), got {k}.")
    return Protocol(
        name="blur",
        network=lambda net: blur_network(net, k, sigma, init_std),
        init=lambda key, graph: init_genome(k, key, genome_scale),
        params=lambda learned, stats, graph: {GROUP: learned},
        settings={"k": k, "sigma": sigma, "init_std": init_std, "genome_scale": genome_scale},
    )
