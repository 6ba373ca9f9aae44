"""Attention-seeking neurons (Soltani Moakhar et al. 2023, arXiv:2310.09952): every neuron is a
self-interested agent that maximises the attention it receives from the next layer's neurons.

The reading implemented here (the paper's full text was not available offline; this follows its
abstract and the derivation its title describes, see ``docs/attention.md``): neuron ``k`` pays
neuron ``j`` the attention ``A_jk = φ(w_jk)`` through the weight it gives ``j``'s output, with

    ``φ_p(w) = |w|^p / p``      (``power = p``; ``p = 2``: half the squared weight).

Neuron ``k`` moves its incoming weights along its own signal ``g_k`` (``Δw_jk = lr · g_k · a_j``),
so the attention ``j`` receives changes by ``Σ_k φ'(w_jk) · lr · g_k · a_j`` — linear in ``j``'s
output ``a_j``. ``j``'s best response is to move ``a_j`` along ``Σ_k φ'(w_jk) g_k``: that is its
signal, passed through its activation's derivative to its own incoming weights. At the outputs the
signal is the loss's ``−∂L/∂z``. So every neuron learns from one message per out-synapse,
``φ'(w_jk) · g_k``, sent back along the graph's arrows:

* ``p = 2`` (``φ' = w``): the messages are backprop's, the updates SGD's — the paper's
  equivalence (tested to 1e-9 against autodiff on ``mlp`` and ``random_dag`` graphs);
* ``p = 1`` (``φ' = sign w``): sign-symmetric feedback — the error travels back through the
  weights' signs only;
* any other ``p > 0``: ``φ'(w) = sign(w) |w|^{p−1}`` (``p > 2`` favours large weights).

A literal ``A = w²`` (without the ½) gives ``2 w`` per layer: backprop with the signal of layer
``l`` scaled by ``2^{L−l}`` — a per-layer learning rate, not a different direction.

Example:
    >>> import numpy as np
    >>> from agentgraph import interpreter
    >>> from agentgraph.builders import mlp_network
    >>> p = attention(lr=0.1, power=1.0)
    >>> net = p.network(mlp_network([3, 4, 2], activation="tanh"))
    >>> s = interpreter.init_state(net.graph, 2)
    >>> r = interpreter.step(net.graph, s, p.params({}, {}, net.graph), {"x": np.ones((2, 3)), "y": np.eye(2)})
    >>> r.loss > 0
    True
"""

from __future__ import annotations

import jax.numpy as jnp

from agentgraph.errors import AgentGraphError
from agentgraph.nodes import Synapse
from agentgraph.nodes._util import learning_rate
from agentgraph.nodes.linear import Linear, Outer
from agentgraph.network import Network
from agentgraph.protocols.base import Protocol

__all__ = ["AttentionSynapse", "attention", "attention_feedback"]


def attention_feedback(w, power: float):
    """``φ'(w) = sign(w) |w|^{power − 1}``: how much the attention a weight pays grows per unit of
    weight — the factor by which a synapse sends its post-neuron's signal back (shape of ``w``).

    Example:
        >>> attention_feedback(jnp.array([-2.0, 0.5]), 1.0).tolist(), attention_feedback(jnp.array([-2.0]), 2.0).tolist()
        ([-1.0, 1.0], [-2.0])
    """
    if power == 2.0:
        return w
    if power == 1.0:
        return jnp.sign(w)
    return jnp.sign(w) * jnp.abs(w) ** (power - 1.0)


class AttentionSynapse(Synapse):
    """The library synapse as an attention-paying connection: forward ``w x``; backward sends
    ``φ'(w) m`` (:func:`attention_feedback`) and updates ``w`` by ``−lr m x``.

    Example:
        >>> k = AttentionSynapse(power=1.0)
        >>> s, out, upd = k.backward({"lr": 0.1}, {"w": -2.0, "x": 3.0}, {"m": jnp.array([0.5])})
        >>> float(out[0]), round(float(upd["w"]), 6)
        (-0.5, -0.15)
    """

    def __init__(self, power: float = 2.0) -> None:
        self.power = float(power)

    def linear(self, sweep):
        out = {"forward": Linear("x", "w")}
        if self.power == 2.0:  # φ'(w) = w: the backward message is linear in w as well
            out["backward"] = Linear("m", "w")
        return {"out": out[sweep]} if sweep in out else {}

    def outer_updates(self):
        return {"w": Outer("m", "x", "x", scale=self._neg_lr)}

    def backward(self, params, state, messages):
        m = messages["m"]
        lr = learning_rate(params, self.name)
        return state, attention_feedback(state["w"], self.power) * m, {"w": -lr * m[0] * state["x"]}


def attention(lr: float = 0.05, power: float = 2.0) -> Protocol:
    """Attention-seeking neurons as a :class:`~agentgraph.protocols.base.Protocol` (config
    ``protocol: {rule: attention, lr: 0.05, power: 2}``): a fixed rule with learning rate ``lr``
    for every neuron; ``power`` chooses the attention ``|w|^p / p`` (module docstring). No
    meta-parameters (``meta.maml`` can still learn initial weights for it).

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> p = attention(0.1, power=1.0)
        >>> net = p.network(mlp_network([2, 1], loss="l2"))
        >>> type(net.graph.kinds["synapse"]).__name__, p.params({}, {}, net.graph)["synapse:0"]
        ('AttentionSynapse', {'lr': 0.1})
    """
    if not lr > 0:
        raise AgentGraphError(f"protocol.lr must be positive, got {lr}.")
    if not power > 0:
        raise AgentGraphError(f"protocol.power must be positive (the attention |w|^p / p), got {power}.")

    def network(net: Network) -> Network:
        if "synapse" not in net.graph.kinds:
            raise AgentGraphError("The attention protocol runs on library networks (kind 'synapse'); this graph has "
                                  f"kinds {sorted(net.graph.kinds)}.")
        return net.with_graph(net.graph.with_kinds({"synapse": AttentionSynapse(power)}))

    return Protocol(name="attention", network=network, init=lambda key, graph: {},
                    params=lambda learned, stats, graph: {g: {"lr": lr} for g in graph.groups()},
                    gradient_free=False, settings={"lr": lr, "power": power})
