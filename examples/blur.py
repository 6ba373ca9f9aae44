"""BLUR (Sandler et al., ICML 2021) written *outside* the library, with the public API only.

A generality check: user-defined kinds for a bidirectional Hebbian network whose neurons carry
``k`` states and whose synapses carry ``k`` channels, driven by one shared *genome*
``{nu, mu, nu_t, mu_t ∈ R^{k×k}; f, eta, f_t, eta_t}`` (4k²+4 numbers).

Equations (one agent, one example; ``ν a`` is the matrix-vector product ``nu @ a``)::

    forward   synapse ij:  stores a_i, sends   w_ij ⊙ (ν a_i)                into neuron j's "x"
              neuron j:    a_j ← σ(f·a_j + η·x_j),   x_j = Σ_i w_ij ⊙ (ν a_i)
    backward  output j:    a_j[label_channel] ← label_j (sent by a label agent into port "label")
              synapse ij:  receives a_j on "m", sends w_ij ⊙ (μ a_j)     into neuron i's "m"
                           update Δw_ij = (f̃ − 1)·w_ij + η̃ (ν̃ᵀ a_i) ⊙ (μ̃ a_j)
              neuron i:    a_i ← σ(f·a_i + η·m_i),   m_i = Σ_j w_ij ⊙ (μ a_j)

Design choices (see also ``docs/concepts.md``):

* **Label channel.** REFERENCE's "state 2" of the output neurons is index ``1`` here (0-based):
  the authors' code (``concat_groundtruth_in``) keeps channel 0 (the forward activation) and puts
  the ground truth in channel 1. We *overwrite* only that channel (their code also zeroes channels
  ≥ 2; for k = 2 the two agree).
* **Labels are agents.** A :class:`BlurLabel` agent reads ``batch["y"][:, slot]`` in the forward
  sweep, stores it, and sends it in the backward sweep into port ``"label"`` of its output
  neuron — no special casing in the engine; a neuron kind with a ``label`` port is all it takes.
* **Output neurons** are a second :class:`BlurNeuron` instance (kind ``"blur_output"``) with the
  ``label`` port. By default they do *not* apply the σ update in the backward sweep (they have no
  downstream synapses, so ``m = 0``), as in the authors' code, which never updates the last layer
  on the backward pass; ``output_backward_update=True`` applies ``σ(f·a + η·0)`` after injection.
* **Zero-out.** The authors zero every neuron at the start of each step (``zero_out_neurons``);
  ``zero_out=True`` (default) uses ``a_j = 0`` in the forward equation, so ``f`` acts only in the
  backward sweep. ``zero_out=False`` keeps the per-example state across steps.
* **Hebbian pre-term.** The synapse uses the ``a_i`` it stored in the forward sweep. The authors'
  code uses the pre-neuron's state *after* its backward update; in this engine an agent receives
  nothing after its own backward call, so that variant would need another sweep. (For the
  backprop genome, whose backward leaves channel 0 untouched, the two coincide.)
* **Batch scale.** The engine *averages* updates over the inner batch (MPLP eq. 4); BLUR sums
  them. ``w ← f̃ w + η̃ Σ_b …`` (BLUR) equals ours with ``η̃_ours = B · η̃_BLUR``.
* **Sharing.** Every agent is in one group ``"blur"``; ``params = {"blur": genome}``.
* **Inputs** enter as ``(x, 0, …, 0)`` through :class:`BlurInput` (no backward: the input layer
  is not updated).

Run ``python examples/blur.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:
    from agentgraph import AgentGraph, Field, Kind, Port, interpreter
except ModuleNotFoundError:  # run from a source checkout without installing: use the repo root
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from agentgraph import AgentGraph, Field, Kind, Port, interpreter

__all__ = [
    "ACTIVATIONS",
    "BlurInput",
    "BlurLabel",
    "BlurNeuron",
    "BlurSynapse",
    "GROUP",
    "blur_kinds",
    "blur_network",
    "init_genome",
    "main",
    "read_network",
]

#: The single parameter-sharing group of every BLUR agent.
GROUP = "blur"

#: σ choices (per kind instance).
ACTIVATIONS = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "identity": lambda z: z,
}


def _activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.") from None


class BlurNeuron(Kind):
    """A neuron with ``k`` states ``a`` (per example).

    Forward port ``"x"`` (size k, sum) receives ``Σ_i w_ij ⊙ (ν a_i)``; backward port ``"m"``
    (size k, sum) receives ``Σ_j w_ij ⊙ (μ a_j)``. With ``label_channel`` set, the kind also has a
    backward port ``"label"`` (size 1) whose value overwrites ``a[label_channel]`` before the
    backward update (``backward_update=False`` skips that update: the output layer of BLUR).

    Example:
        >>> import numpy as np
        >>> g = init_genome(2, 0)
        >>> n = BlurNeuron(2)
        >>> s, out = n.forward(g, {"a": np.zeros(2)}, {"x": np.ones(2)})
        >>> out["out"].shape
        (2,)
    """

    def __init__(
        self,
        k: int,
        *,
        name: str = "blur_neuron",
        activation: str = "tanh",
        label_channel: int | None = None,
        backward_update: bool = True,
        zero_out: bool = True,
    ) -> None:
        self.k = int(k)
        self.name = name
        self.activation = activation
        self._sigma = _activation(activation)
        self.label_channel = label_channel
        self.backward_update = bool(backward_update)
        self.zero_out = bool(zero_out)
        if label_channel is not None and not 0 <= label_channel < self.k:
            raise ValueError(f"label_channel {label_channel} out of range for k={self.k}.")
        self.fields = {"a": Field((self.k,), per_example=True)}
        self.forward_ports = {"x": Port(self.k, "sum")}
        self.backward_ports = {"m": Port(self.k, "sum")}
        if label_channel is not None:
            self.backward_ports["label"] = Port(1, "sum")
        self.forward_outputs = {"out": self.k}
        self.backward_outputs = {"out": self.k}

    def forward(self, params, state, inputs):
        a_prev = jnp.zeros(self.k) if self.zero_out else jnp.asarray(state["a"])
        a = self._sigma(params["f"] * a_prev + params["eta"] * inputs["x"])
        return {**state, "a": a}, {"out": a}

    def backward(self, params, state, messages):
        a = jnp.asarray(state["a"])
        if self.label_channel is not None:
            a = a.at[self.label_channel].set(messages["label"][0])
        if self.backward_update:
            a = self._sigma(params["f"] * a + params["eta"] * messages["m"])
        return {**state, "a": a}, {"out": a}, {}


class BlurSynapse(Kind):
    """A ``k``-channel synapse: ``w`` (per agent, ``[k]``) and the stored pre-activation ``a_in``
    (per example, ``[k]``).

    Forward port ``"x"`` takes ``a_i`` and sends ``w ⊙ (ν a_i)``; backward port ``"m"`` takes
    ``a_j``, sends ``w ⊙ (μ a_j)`` and returns ``Δw = (f̃ − 1) w + η̃ (ν̃ᵀ a_i) ⊙ (μ̃ a_j)``.

    Example:
        >>> import numpy as np
        >>> g = init_genome(3, 0)
        >>> s, out = BlurSynapse(3).forward(g, {"w": np.ones(3), "a_in": np.zeros(3)}, {"x": np.ones(3)})
        >>> np.allclose(out["out"], g["nu"] @ np.ones(3))
        True
    """

    def __init__(self, k: int, *, name: str = "blur_synapse") -> None:
        self.k = int(k)
        self.name = name
        self.fields = {"w": Field((self.k,)), "a_in": Field((self.k,), per_example=True)}
        self.forward_ports = {"x": Port(self.k, "sum")}
        self.backward_ports = {"m": Port(self.k, "sum")}
        self.forward_outputs = {"out": self.k}
        self.backward_outputs = {"out": self.k}

    def forward(self, params, state, inputs):
        a_i = inputs["x"]
        return {**state, "a_in": a_i}, {"out": state["w"] * (params["nu"] @ a_i)}

    def backward(self, params, state, messages):
        a_j, w = messages["m"], state["w"]
        hebb = (params["nu_t"].T @ state["a_in"]) * (params["mu_t"] @ a_j)
        dw = (params["f_t"] - 1.0) * w + params["eta_t"] * hebb
        return state, {"out": w * (params["mu"] @ a_j)}, {"w": dw}


class BlurInput(Kind):
    """Reads ``batch["x"][:, slot]`` and sends the ``k``-state vector ``(x, 0, …, 0)``.

    Example:
        >>> import numpy as np
        >>> BlurInput(3).forward(None, {"a": np.zeros(3)}, {"data": np.array([0.5])})[1]["out"].tolist()
        [0.5, 0.0, 0.0]
    """

    external = "x"

    def __init__(self, k: int, *, name: str = "blur_input") -> None:
        self.k = int(k)
        self.name = name
        self.fields = {"a": Field((self.k,), per_example=True)}
        self.forward_ports = {"data": Port(1)}
        self.forward_outputs = {"out": self.k}

    def forward(self, params, state, inputs):
        a = jnp.zeros(self.k).at[0].set(inputs["data"][0])
        return {**state, "a": a}, {"out": a}


class BlurLabel(Kind):
    """Reads ``batch["y"][:, slot]`` in the forward sweep (stores it in ``y``) and sends it in
    the backward sweep, size 1, into an output neuron's ``"label"`` port.

    Example:
        >>> import numpy as np
        >>> lab = BlurLabel()
        >>> s, _ = lab.forward(None, {"y": 0.0}, {"data": np.array([-1.0])})
        >>> lab.backward(None, s, {})[1]["out"].tolist()
        [-1.0]
    """

    external = "y"

    def __init__(self, *, name: str = "blur_label") -> None:
        self.name = name
        self.fields = {"y": Field(per_example=True)}
        self.forward_ports = {"data": Port(1)}
        self.backward_outputs = {"out": 1}

    def forward(self, params, state, inputs):
        return {**state, "y": inputs["data"][0]}, {}

    def backward(self, params, state, messages):
        return state, {"out": jnp.reshape(state["y"], (1,))}, {}


def init_genome(k: int, key: Any) -> dict[str, np.ndarray]:
    """A random BLUR genome: ``{"nu", "mu", "nu_t", "mu_t": [k, k]; "f", "eta", "f_t", "eta_t": []}``.

    ``key`` is a ``jax.random`` key or an int seed. Values are returned as float64 NumPy arrays
    (so the interpreter's float64 step is not truncated to float32 parameters).

    Example:
        >>> g = init_genome(3, 0)
        >>> sorted(g), g["nu"].shape, g["f"].shape
        (['eta', 'eta_t', 'f', 'f_t', 'mu', 'mu_t', 'nu', 'nu_t'], (3, 3), ())
    """
    k = int(k)
    if isinstance(key, (int, np.integer)):
        key = jax.random.PRNGKey(int(key))
    km = jax.random.split(key, 5)
    mats = {
        n: np.asarray(jax.random.normal(kk, (k, k)), dtype=np.float64) / np.sqrt(k)
        for n, kk in zip(("nu", "mu", "nu_t", "mu_t"), km[:4])
    }
    u = np.asarray(jax.random.uniform(km[4], (4,)), dtype=np.float64)
    return {
        **mats,
        "f": np.float64(0.5 + 0.5 * u[0]),  # keep of the neuron state
        "eta": np.float64(0.5 + 0.5 * u[1]),  # neuron update rate
        "f_t": np.float64(1.0 - 0.05 * u[2]),  # synapse keep (slow decay)
        "eta_t": np.float64(0.05 + 0.05 * u[3]),  # Hebbian rate
    }


def blur_kinds(
    k: int, *, activation: str = "tanh", zero_out: bool = True, output_backward_update: bool = False
) -> list[Kind]:
    """The five kinds a BLUR network uses: input, hidden neuron, output neuron, synapse, label."""
    return [
        BlurInput(k),
        BlurNeuron(k, activation=activation, zero_out=zero_out),
        BlurNeuron(
            k, name="blur_output", activation=activation, label_channel=1,
            backward_update=output_backward_update, zero_out=zero_out,
        ),
        BlurSynapse(k),
        BlurLabel(),
    ]


def blur_network(
    sizes: Sequence[int],
    k: int,
    seed: int = 0,
    *,
    activation: str = "tanh",
    zero_out: bool = True,
    output_backward_update: bool = False,
    init_std: float = 0.5,
) -> AgentGraph:
    """A layered BLUR network: one agent per neuron, per synapse and per label.

    Agents: neurons ``("n", l, i)`` (layer 0 = :class:`BlurInput` with slot ``i``; the last layer
    is kind ``"blur_output"``), synapses ``("w", l, i, j)`` between layers ``l`` and ``l+1`` with
    ``w ~ N(0, init_std)`` per channel, labels ``("y", j)`` with slot ``j``. All in group
    :data:`GROUP`.

    Arrows: forward ``n(l,i) → w(l,i,j) → n(l+1,j)``; backward ``n(l+1,j) → w(l,i,j) → n(l,i)``
    (the last hop only for ``l ≥ 1``: inputs have no backward); backward ``y(j) → n(L,j)`` on
    port ``"label"``.

    Batch: ``{"x": [B, sizes[0]], "y": [B, sizes[-1]]}`` with labels ±1.

    Example:
        >>> g = blur_network((3, 4, 2), k=3, seed=0)
        >>> len(g.agents("blur_synapse")), len(g.agents("blur_output")), g.groups()
        (20, 2, ['blur'])
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"blur_network needs at least two positive layer sizes, got {sizes}.")
    rng = np.random.default_rng(seed)
    g = AgentGraph(
        kinds=blur_kinds(
            k, activation=activation, zero_out=zero_out, output_backward_update=output_backward_update
        )
    )
    L = len(sizes) - 1
    layers = [[("n", l, i) for i in range(n)] for l, n in enumerate(sizes)]
    g.add_agents(layers[0], "blur_input", groups=GROUP, slots=range(sizes[0]))
    for l in range(1, L + 1):
        g.add_agents(layers[l], "blur_output" if l == L else "blur_neuron", groups=GROUP)
    for l in range(L):
        pairs = [(i, j) for i in range(sizes[l]) for j in range(sizes[l + 1])]
        ws = [("w", l, i, j) for i, j in pairs]
        g.add_agents(ws, "blur_synapse", groups=GROUP, states={"w": rng.normal(0.0, init_std, (len(ws), k))})
        pre = [layers[l][i] for i, _ in pairs]
        post = [layers[l + 1][j] for _, j in pairs]
        g.add_arrows(pre, ws, "forward", port="x")
        g.add_arrows(ws, post, "forward", port="x")
        g.add_arrows(post, ws, "backward", port="m")
        if l > 0:
            g.add_arrows(ws, pre, "backward", port="m")
    labels = [("y", j) for j in range(sizes[-1])]
    g.add_agents(labels, "blur_label", groups=GROUP, slots=range(sizes[-1]))
    g.add_arrows(labels, layers[-1], "backward", port="label")
    return g.validate()


def read_network(state: dict, sizes: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Dense views of a :func:`blur_network` state: neuron states ``A_l [B, n_l, k]`` and synapse
    weights ``W_l [n_l, n_{l+1}, k]``."""
    A = [np.stack([state[("n", l, i)]["a"] for i in range(n)], axis=1) for l, n in enumerate(sizes)]
    W = [
        np.array([[state[("w", l, i, j)]["w"] for j in range(sizes[l + 1])] for i in range(sizes[l])])
        for l in range(len(sizes) - 1)
    ]
    return A, W


def main(steps: int = 3, sizes: Sequence[int] = (2, 4, 2), k: int = 3, batch_size: int = 4) -> None:
    """Run a few interpreted BLUR steps on a tiny XOR-like task and print the states."""
    rng = np.random.default_rng(0)
    g = blur_network(sizes, k, seed=0)
    genome = init_genome(k, jax.random.PRNGKey(0))
    params = {GROUP: genome}
    state = interpreter.init_state(g, batch_size)
    print(g)
    np.set_printoptions(precision=3, suppress=True)
    for t in range(steps):
        x = rng.uniform(-1.0, 1.0, (batch_size, sizes[0]))
        cls = (x[:, 0] * x[:, 1] > 0).astype(int)
        y = -np.ones((batch_size, sizes[-1]))
        y[np.arange(batch_size), cls % sizes[-1]] = 1.0
        state = interpreter.step(g, state, params, {"x": x, "y": y}).state
        A, W = read_network(state, sizes)
        print(f"step {t}: labels {y.tolist()}")
        print(f"  output neuron states [B, n_out, k] (channel 1 holds the label):\n{A[-1]}")
        print(f"  hidden neuron states, example 0:\n{A[1][0]}")
        print(f"  |W_l| per layer: {[round(float(np.abs(w).mean()), 4) for w in W]}")


if __name__ == "__main__":
    main()
