"""BLUR's agents: neurons (``k`` states), synapses (``k`` channels), relays, inputs and labels.

The equations are in :mod:`agentgraph.protocols.blur`. With ``exact=True`` every agent also acts in
the ``update`` phase that follows the backward sweep: inputs, neurons and relays send their final
states; each synapse receives its pre-neuron's (port ``"pre"``) and its post-neuron's (``"post"``)
and makes the Hebbian update from them.

The conventions of :mod:`agentgraph.protocols.blur.settings` are constructor arguments:
``bias_state`` and ``label_states`` / ``decode`` of :class:`BlurNeuron`, ``feedback`` of
:class:`BlurSynapse`, ``coding`` of :class:`BlurLabel`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.ports import Port
from agentgraph.nodes.base import Field, Kind
from agentgraph.nodes.linear import Linear, Outer

__all__ = ["BlurInput", "BlurLabel", "BlurNeuron", "BlurRelay", "BlurSynapse", "SIGMAS", "UPDATE", "bias_input",
           "init_genome"]


def _relu_tanh(z):
    return jax.nn.relu(jnp.tanh(z))


SIGMAS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "identity": lambda z: z,
          "relu_tanh": _relu_tanh}

#: The arrow type of exact BLUR's update phase.
UPDATE = "update"


def bias_input(k: int, bias_state: str = "e0") -> jax.Array:
    """The constant pre-neuron state a bias synapse reads: ``e0`` = ``(1, 0, …, 0)`` (this
    library's default) or ``ones`` = ``(1, …, 1)`` (the authors' bias neuron).

    Example:
        >>> bias_input(3).tolist(), bias_input(3, "ones").tolist()
        ([1.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    """
    if bias_state == "ones":
        return jnp.ones(k)
    return jnp.zeros(k).at[0].set(1.0)


class BlurNeuron(Kind):
    """A unit with ``k`` states ``a`` (per example) and a ``k``-channel bias ``b`` (per agent).

    Forward port ``"x"`` (sum) takes ``Σ_i w_ij ⊙ (ν a_i)``; backward port ``"m"`` (sum) takes
    ``Σ_j w_ij ⊙ (μ a_j)``; output neurons (``label=True``) also take ``"label"`` (size 1) into
    ``a[1]`` and do not update in the backward sweep.

    Conventions: the bias reads the constant :func:`bias_input` ``(k, bias_state)``;
    ``label_states="zero"`` zeroes ``a[2:]`` when the label is written; ``decode="pm1"`` keeps
    ``p = (a[0] + 1) / 2`` per example (the read-out of ±1-coded labels).

    Example:
        >>> import jax
        >>> g = init_genome(2, jax.random.PRNGKey(0))
        >>> s, out = BlurNeuron(2).forward(g, {"a": jnp.zeros(2), "b": jnp.zeros(2)}, {"x": jnp.ones(2)})
        >>> out["out"].shape
        (2,)
    """

    def __init__(self, k: int, sigma: str = "tanh", *, label: bool = False, exact: bool = False,
                 bias_state: str = "e0", label_states: str = "keep", decode: str | None = None) -> None:
        self.k, self.sigma, self.label, self.exact = int(k), sigma, bool(label), bool(exact)
        self.bias_state, self.label_states, self.decode = bias_state, label_states, decode
        if self.exact:  # sends its final state to its synapses in the update phase
            self.acts_on = (UPDATE,)
            self.arrow_outputs = {UPDATE: {"out": self.k}}
        self.name = "blur_output" if label else "blur_neuron"
        self._sigma = SIGMAS[sigma]
        self.fields = {"a": Field((self.k,), per_example=True), "b": Field((self.k,)),
                       **({"p": Field(per_example=True)} if decode == "pm1" else {})}
        self.forward_ports = {"x": Port(self.k, "sum")}
        self.backward_ports = {"m": Port(self.k, "sum"), **({"label": Port(1, "sum")} if label else {})}
        self.forward_outputs = {"out": self.k}
        self.backward_outputs = {"out": self.k}

    def forward(self, params, state, inputs):
        z = inputs["x"] + state["b"] * (params["nu"] @ bias_input(self.k, self.bias_state))
        a = self._sigma(params["eta"] * z)
        new = {**state, "a": a}
        if self.decode == "pm1":
            new["p"] = 0.5 * (a[0] + 1.0)
        return new, {"out": a}

    def backward(self, params, state, messages):
        a = jnp.asarray(state["a"])
        if self.label:
            a = a.at[1].set(messages["label"][0])
            if self.label_states == "zero":
                a = a.at[2:].set(0.0)
        else:
            a = self._sigma(params["f"] * a + params["eta"] * messages["m"])
        one = bias_input(self.k, self.bias_state)
        db = (params["f_t"] - 1.0) * state["b"] + params["eta_t"] * (params["nu_t"].T @ one) * (params["mu_t"] @ a)
        return {**state, "a": a}, {"out": a}, {"b": db}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": state["a"]}, {}


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
    """A ``k``-channel synapse ``w`` (per agent) storing its pre-neuron's state ``a_in``; with
    ``exact=True`` it updates in the update phase instead, from its pre- and post-neurons' final
    states (ports ``"pre"``, ``"post"``), and stores nothing.

    ``feedback="separate"`` (the authors' ``symmetric_in_out_synapses=False``): a second
    ``k``-channel weight ``wb`` carries the backward message, ``wb ⊙ (μ a_j)``, and follows the
    Hebbian rule with the two neurons' roles swapped, ``Δwb = (f̃ − 1) wb + η̃ (ν̃ᵀ a_j) ⊙ (μ̃ a_i)``.

    Example:
        >>> import jax
        >>> g = init_genome(2, jax.random.PRNGKey(0))
        >>> s, out = BlurSynapse(2).forward(g, {"w": jnp.ones(2), "a_in": jnp.zeros(2)}, {"x": jnp.ones(2)})
        >>> bool(jnp.allclose(out["out"], g["nu"] @ jnp.ones(2)))
        True
    """

    name = "blur_synapse"

    def __init__(self, k: int, exact: bool = False, feedback: str = "tied") -> None:
        self.k, self.exact, self.feedback = int(k), bool(exact), feedback
        self._back = "wb" if feedback == "separate" else "w"  # the weight of the backward message
        self.fields = {"w": Field((self.k,)), **({"wb": Field((self.k,))} if feedback == "separate" else {}),
                       **({} if exact else {"a_in": Field((self.k,), per_example=True, scratch=True)})}
        self.forward_ports = {"x": Port(self.k, "sum")}
        self.backward_ports = {"m": Port(self.k, "sum")}
        self.forward_outputs = {"out": self.k}
        self.backward_outputs = {"out": self.k}
        if self.exact:
            self.acts_on = (UPDATE,)
            self.arrow_ports = {UPDATE: {"pre": Port(self.k, "sum"), "post": Port(self.k, "sum")}}

    def linear(self, sweep):  # lets the compiler run dense synapse blocks as matrix products
        if sweep == "forward":
            return {"out": Linear("x", "w", pre=_nu)}
        return {"out": Linear("m", self._back, pre=_mu)} if sweep == "backward" else {}

    def outer_updates(self):
        sep = self.feedback == "separate"
        if self.exact:  # in the update phase, from the two neurons' final states
            w = {"w": Outer("post", "", "", scale=_eta_t, message_map=_mu_t, stored_map=_nu_t_T,
                            decay=_f_t_minus_1, phase=UPDATE, pair="pre")}
            if sep:  # roles swapped: μ̃ on the pre-neuron, ν̃ᵀ on the post-neuron
                w["wb"] = Outer("pre", "", "", scale=_eta_t, message_map=_mu_t, stored_map=_nu_t_T,
                                decay=_f_t_minus_1, phase=UPDATE, pair="post")
            return w
        w = {"w": Outer("m", "a_in", "x", scale=_eta_t, message_map=_mu_t, stored_map=_nu_t_T, decay=_f_t_minus_1)}
        if sep:
            w["wb"] = Outer("m", "a_in", "x", scale=_eta_t, message_map=_nu_t_T, stored_map=_mu_t, decay=_f_t_minus_1)
        return w

    def forward(self, params, state, inputs):
        out = {"out": state["w"] * (params["nu"] @ inputs["x"])}
        return (state, out) if self.exact else ({**state, "a_in": inputs["x"]}, out)

    def backward(self, params, state, messages):
        a_j = messages["m"]
        out = {"out": state[self._back] * (params["mu"] @ a_j)}
        if self.exact:
            return state, out, {}
        return state, out, self._updates(params, state, state["a_in"], a_j)

    def act(self, arrow_type, params, state, inbox):
        return state, {}, self._updates(params, state, inbox["pre"], inbox["post"])

    def _updates(self, params, state, a_i, a_j):
        upd = {"w": _hebbian(params, state["w"], a_i, a_j)}
        if self.feedback == "separate":
            upd["wb"] = _hebbian(params, state["wb"], a_j, a_i)
        return upd


def _hebbian(p, w, a_i, a_j):
    """BLUR's synapse update ``Δw = (f̃ − 1) w + η̃ (ν̃ᵀ a_i) ⊙ (μ̃ a_j)``."""
    return (p["f_t"] - 1.0) * w + p["eta_t"] * (p["nu_t"].T @ a_i) * (p["mu_t"] @ a_j)


class BlurRelay(Kind):
    """Passes a unit's state on unchanged in both sweeps (a library activation agent's place).

    Example:
        >>> BlurRelay(2).forward(None, {}, {"x": jnp.ones(2)})[1]["out"].tolist()
        [1.0, 1.0]
    """

    name = "blur_relay"

    def __init__(self, k: int, exact: bool = False) -> None:
        self.k, self.exact = int(k), bool(exact)
        self.forward_ports = {"x": Port(self.k, "sum")}
        self.backward_ports = {"m": Port(self.k, "sum")}
        self.forward_outputs = {"out": self.k}
        self.backward_outputs = {"out": self.k}
        if self.exact:
            self.acts_on = (UPDATE,)
            self.arrow_ports = {UPDATE: {"x": Port(self.k, "sum")}}
            self.arrow_outputs = {UPDATE: {"out": self.k}}

    def forward(self, params, state, inputs):
        return state, {"out": inputs["x"]}

    def backward(self, params, state, messages):
        return state, {"out": messages["m"]}, {}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": inbox["x"]}, {}


class BlurInput(Kind):
    """Reads ``batch["x"][:, slot]`` and sends ``(x, 0, …, 0)``.

    Example:
        >>> BlurInput(3).forward(None, {}, {"data": jnp.array([0.5])})[1]["out"].tolist()
        [0.5, 0.0, 0.0]
    """

    name = "blur_input"
    external = "x"

    def __init__(self, k: int, exact: bool = False) -> None:
        self.k, self.exact = int(k), bool(exact)
        self.forward_ports = {"data": Port(1)}
        self.forward_outputs = {"out": self.k}
        if self.exact:  # keeps its state to send it again in the update phase
            self.fields = {"a": Field((self.k,), per_example=True)}
            self.acts_on = (UPDATE,)
            self.arrow_outputs = {UPDATE: {"out": self.k}}

    def forward(self, params, state, inputs):
        a = jnp.zeros(self.k).at[0].set(inputs["data"][0])
        return ({**state, "a": a} if self.exact else state), {"out": a}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": state["a"]}, {}


class BlurLabel(Kind):
    """Reads ``batch["y"][:, slot]`` in the forward sweep and sends it, size 1, into an output
    neuron's ``"label"`` port in the backward sweep: ``y`` as given, or ``2y − 1`` with
    ``coding="pm1"`` (one-hot targets become the authors' ±1 one-vs-rest labels).

    Example:
        >>> s, _ = BlurLabel().forward(None, {"y": 0.0}, {"data": jnp.array([-1.0])})
        >>> BlurLabel().backward(None, s, {})[1]["out"].tolist()
        [-1.0]
        >>> BlurLabel("pm1").backward(None, {"y": 0.0}, {})[1]["out"].tolist()
        [-1.0]
    """

    name = "blur_label"
    external = "y"
    fields = {"y": Field(per_example=True)}
    forward_ports = {"data": Port(1)}
    backward_outputs = {"out": 1}

    def __init__(self, coding: str = "as_given") -> None:
        self.coding = coding

    def forward(self, params, state, inputs):
        return {**state, "y": inputs["data"][0]}, {}

    def backward(self, params, state, messages):
        y = jnp.reshape(state["y"], (1,))
        return state, {"out": 2.0 * y - 1.0 if self.coding == "pm1" else y}, {}




def init_genome(k: int, key: jax.Array, scale: float = 0.5, style: str = "agentgraph") -> dict[str, jax.Array]:
    """A random genome ``{nu, mu, nu_t, mu_t: [k, k]; f, eta, f_t, eta_t}``: ``style="agentgraph"``
    draws the matrices ``~ N(0, scale²/k)`` with ``f = 0.5``, ``eta = 1``, ``f_t = 1``,
    ``eta_t = 0.05``; ``style="authors"`` (their ``create_random_genome``) ``~ N(0, scale²)`` with
    ``f = eta = f_t = 1``, ``eta_t = −1e-3``.

    Example:
        >>> sorted(init_genome(2, jax.random.PRNGKey(0)))
        ['eta', 'eta_t', 'f', 'f_t', 'mu', 'mu_t', 'nu', 'nu_t']
        >>> round(float(init_genome(2, jax.random.PRNGKey(0), 1.0, "authors")["eta_t"]), 6)
        -0.001
    """
    ks = jax.random.split(key, 4)
    if style == "authors":
        mats = {n: scale * jax.random.normal(kk, (k, k)) for n, kk in zip(("nu", "mu", "nu_t", "mu_t"), ks)}
        return {**mats, "f": jnp.asarray(1.0), "eta": jnp.asarray(1.0), "f_t": jnp.asarray(1.0),
                "eta_t": jnp.asarray(-1e-3)}
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
