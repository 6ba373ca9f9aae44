"""Summing agents: the bias ``z_j + b_j`` (MPLP's dense-layer output unit) and the plain sum.

In MPLP's wiring the bias agent *is* the sum node of a dense layer: the synapses' outputs
arrive on its forward port ``"x"`` (sum aggregation) and it stores the pre-bias sum ``z``.
In the backward sweep it runs before its synapses, which receive its outgoing message.
"""

from __future__ import annotations

from agentgraph.arrows.ports import Port
from agentgraph.nodes._util import learning_rate
from agentgraph.nodes.base import Field, Kind

__all__ = ["Bias", "Sum"]


class Sum(Kind):
    """``y = sum of inputs``; backward passes its message through unchanged (gradient).

    State: ``z`` (per example) — the sum.

    Example:
        >>> import jax.numpy as jnp
        >>> float(Sum().forward(None, {"z": 0.0}, {"x": jnp.array([1.5])})[1][0])
        1.5
    """

    name = "sum"
    fields = {"z": Field(per_example=True)}
    forward_ports = {"x": Port(1, "sum")}
    backward_ports = {"m": Port(1, "sum")}
    forward_outputs = {"out": 1}
    backward_outputs = {"out": 1}

    def forward(self, params, state, inputs):
        z = inputs["x"]
        return {**state, "z": z[0]}, z

    def backward(self, params, state, messages):
        return state, messages["m"], {}


class Bias(Sum):
    """``y = z + b`` where ``z`` is the sum of inputs; stores ``z``.

    Gradient protocol: sends ``m`` back unchanged (to every synapse feeding it) and updates
    ``b`` by ``-lr * m``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(Bias().forward(None, {"b": 1.0, "z": 0.0}, {"x": jnp.array([1.5])})[1][0])
        2.5
    """

    name = "bias"
    fields = {"b": Field(), "z": Field(per_example=True)}

    def forward(self, params, state, inputs):
        z = inputs["x"]
        return {**state, "z": z[0]}, z + state["b"]

    def backward(self, params, state, messages):
        m = messages["m"]
        lr = learning_rate(params, self.name)
        return state, m, {"b": -lr * m[0]}
