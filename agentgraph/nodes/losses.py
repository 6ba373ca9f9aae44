"""Loss agents, elementwise: L2 ``(t - x)^2 / 2`` and cross-entropy ``-t log p``.

A loss agent receives the prediction on forward port ``"pred"`` and the target on ``"target"``
and stores the elementwise loss. It has no backward ports: it starts the backward sweep from
what it stored (no message seeds it). Gradient protocol: output ``"out"`` is ``dloss/dpred`` and
output ``"gp"`` is ``dloss/dpred * pred`` (what a softmax normaliser needs; ``-t`` for
cross-entropy).
"""

from __future__ import annotations

import jax.numpy as jnp

from agentgraph.arrows.ports import Port
from agentgraph.nodes.base import Field, Kind

__all__ = ["CrossEntropyLoss", "L2Loss", "LOSSES"]


class _Loss(Kind):
    fields = {
        "pred": Field(per_example=True),
        "target": Field(per_example=True),
        "loss": Field(per_example=True),
    }
    forward_ports = {"pred": Port(1, "sum"), "target": Port(1, "sum")}
    backward_outputs = {"out": 1, "gp": 1}
    loss_field = "loss"

    def value(self, pred, target):  # elementwise loss
        raise NotImplementedError

    def dvalue(self, pred, target):  # d loss / d pred
        raise NotImplementedError

    def forward(self, params, state, inputs):
        p, t = inputs["pred"][0], inputs["target"][0]
        return {**state, "pred": p, "target": t, "loss": self.value(p, t)}, {}

    def backward(self, params, state, messages):
        g = self.dvalue(state["pred"], state["target"])
        return state, {"out": g[None], "gp": (g * state["pred"])[None]}, {}


class L2Loss(_Loss):
    """``loss = (t - x)^2 / 2``; gradient ``x - t``.

    Example:
        >>> import jax.numpy as jnp
        >>> z = {"pred": 0.0, "target": 0.0, "loss": 0.0}
        >>> s, _ = L2Loss().forward(None, z, {"pred": jnp.array([3.0]), "target": jnp.array([1.0])})
        >>> float(s["loss"])
        2.0
    """

    name = "l2"

    def value(self, pred, target):
        return 0.5 * (target - pred) ** 2

    def dvalue(self, pred, target):
        return pred - target


class CrossEntropyLoss(_Loss):
    """``loss = -t log p`` (elementwise, not summed over classes); gradient ``-t / p``.

    ``p`` is floored at the smallest normal float (``tiny``) inside the log and the gradient, so a
    softmax output that underflows to 0 gives a large finite loss instead of ``inf``/NaN; for
    every ``p >= tiny`` this is exactly ``-t log p``.

    Example:
        >>> import jax.numpy as jnp
        >>> z = {"pred": 0.0, "target": 0.0, "loss": 0.0}
        >>> s, _ = CrossEntropyLoss().forward(None, z, {"pred": jnp.array([0.5]), "target": jnp.array([1.0])})
        >>> round(float(s["loss"]), 6)
        0.693147
    """

    name = "cross_entropy"

    def value(self, pred, target):
        return -target * jnp.log(jnp.maximum(pred, jnp.finfo(jnp.result_type(pred)).tiny))

    def dvalue(self, pred, target):
        return -target / jnp.maximum(pred, jnp.finfo(jnp.result_type(pred)).tiny)


#: Loss kinds by name.
LOSSES = {"l2": L2Loss, "cross_entropy": CrossEntropyLoss}
