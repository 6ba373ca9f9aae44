"""The synapse (weight) agent: ``y = w * x``; stores ``x``.

Gradient protocol: receives ``m = dL/dy`` on backward port ``"m"``, sends ``w * m`` back and
updates ``w`` by ``-lr * m * x`` (averaged over the inner batch by the engine).
"""

from __future__ import annotations

from agentgraph.arrows.ports import Port
from agentgraph.nodes._util import learning_rate
from agentgraph.nodes.base import Field, Kind
from agentgraph.nodes.linear import Linear, Outer

__all__ = ["Synapse"]


class Synapse(Kind):
    """One weight ``w_ij``: forward ``y_ij = w_ij * x_i``, storing ``x_i``.

    State: ``w`` (per agent), ``x`` (per example, *scratch*: read only by the update ``-lr m x``,
    so where the compiler fuses that update into a matrix product or a convolution it reads the
    forward messages instead and never writes ``x`` — its value between steps is unspecified).
    Forward port ``"x"`` (sum), backward port ``"m"`` (sum); one output ``"out"`` of size 1 in
    each direction.

    Example:
        >>> import jax.numpy as jnp
        >>> s, y = Synapse().forward(None, {"w": 2.0, "x": 0.0}, {"x": jnp.array([3.0])})
        >>> float(y[0]), float(s["x"])
        (6.0, 3.0)
    """

    name = "synapse"
    fields = {"w": Field(), "x": Field(per_example=True, scratch=True)}
    forward_ports = {"x": Port(1, "sum")}
    backward_ports = {"m": Port(1, "sum")}
    forward_outputs = {"out": 1}
    backward_outputs = {"out": 1}

    def linear(self, sweep):
        return {"out": Linear("x" if sweep == "forward" else "m", "w")} if sweep in ("forward", "backward") else {}

    def outer_updates(self):
        return {"w": Outer("m", "x", "x", scale=self._neg_lr)}

    def _neg_lr(self, params):
        return -learning_rate(params, self.name)

    def forward(self, params, state, inputs):
        x = inputs["x"]
        return {**state, "x": x[0]}, state["w"] * x

    def backward(self, params, state, messages):
        m = messages["m"]
        lr = learning_rate(params, self.name)
        return state, state["w"] * m, {"w": -lr * m[0] * state["x"]}
