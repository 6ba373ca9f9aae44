"""Pooling agents for convolutional graphs: the average pool, and the max pool with its gates.

* :class:`AvgPool` — one agent per pooled unit: ``y = (Σ inputs) / n`` over its ``n`` inputs
  (per-agent field ``n``, set by the builder); backward sends ``m / n`` to every input.
* :class:`MaxPool` + :class:`MaxGate` — one pool agent per pooled unit and one gate agent per
  (input, pool) pair: the gate forwards its input unchanged into the pool's ``max`` port and
  stores it; the pool stores the maximum ``y`` and sends ``(m, y)`` back; each gate passes
  ``m`` to its input if its own value equals ``y`` (the maximum), else 0 — the gradient of the
  maximum, given in full to each input that attains it.
"""

from __future__ import annotations

import jax.numpy as jnp

from agentgraph.arrows.ports import Port
from agentgraph.nodes.base import Field, Kind

__all__ = ["AvgPool", "MaxGate", "MaxPool"]


class AvgPool(Kind):
    """``y = (Σ x) / n``: average pooling over the agent's ``n`` inputs.

    State: ``n`` (per agent, the window size; not learned). Forward port ``"x"`` (sum),
    backward port ``"m"`` (sum); outputs ``"out"`` of size 1.

    Example:
        >>> import jax.numpy as jnp
        >>> float(AvgPool().forward(None, {"n": 4.0}, {"x": jnp.array([2.0])})[1][0])
        0.5
    """

    name = "avg_pool"
    fields = {"n": Field(init=1.0)}
    forward_ports = {"x": Port(1, "sum")}
    backward_ports = {"m": Port(1, "sum")}
    forward_outputs = {"out": 1}
    backward_outputs = {"out": 1}

    def forward(self, params, state, inputs):
        return state, inputs["x"] / state["n"]

    def backward(self, params, state, messages):
        return state, messages["m"] / state["n"], {}


class MaxPool(Kind):
    """``y = max x`` over the agent's inputs (its :class:`MaxGate` s); stores ``y``.

    Forward port ``"x"`` (max), output ``"out"`` (1); backward port ``"m"`` (sum), output
    ``"out"`` of size 2: ``(m, y)`` for the gates.

    Example:
        >>> import jax.numpy as jnp
        >>> s, out, upd = MaxPool().backward(None, {"y": 3.0}, {"m": jnp.array([0.5])})
        >>> out.tolist()
        [0.5, 3.0]
    """

    name = "max_pool"
    fields = {"y": Field(per_example=True)}
    forward_ports = {"x": Port(1, "max")}
    backward_ports = {"m": Port(1, "sum")}
    forward_outputs = {"out": 1}
    backward_outputs = {"out": 2}

    def forward(self, params, state, inputs):
        x = inputs["x"]
        return {**state, "y": x[0]}, x

    def backward(self, params, state, messages):
        return state, jnp.stack([messages["m"][0], jnp.asarray(state["y"], messages["m"].dtype)]), {}


class MaxGate(Kind):
    """One input of a max pool: forwards ``x`` and stores it; backward receives ``(m, y)`` and
    sends ``m`` if ``x == y`` else 0.

    Example:
        >>> import jax.numpy as jnp
        >>> float(MaxGate().backward(None, {"x": 3.0}, {"m": jnp.array([0.5, 3.0])})[1][0])
        0.5
    """

    name = "max_gate"
    fields = {"x": Field(per_example=True)}
    forward_ports = {"x": Port(1, "sum")}
    backward_ports = {"m": Port(2, "sum")}
    forward_outputs = {"out": 1}
    backward_outputs = {"out": 1}

    def forward(self, params, state, inputs):
        x = inputs["x"]
        return {**state, "x": x[0]}, x

    def backward(self, params, state, messages):
        m = messages["m"]
        return state, jnp.where(state["x"] == m[1], m[:1], jnp.zeros_like(m[:1])), {}
