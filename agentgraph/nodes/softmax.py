"""Softmax as agents: one unit per class plus one normaliser per softmax group.

Forward: every logit ``z_k`` of the group reaches the normaliser twice (parallel arrows) — on
port ``"max"`` (max aggregation) and on port ``"lse"`` (logsumexp aggregation); the normaliser
sends ``[max_k z_k, logsumexp_k z_k]`` to every unit; unit ``j`` also receives its own logit on
``"x"`` and outputs ``p_j = exp(z_j - lse)``. Units store what MPLP's softmax learner reads
(logit, max, lse, p) and what their gradient needs.

Gradient protocol: ``dL/dz_j = p_j (g_j - sum_i g_i p_i)``. The loss agents send ``g_i`` to their
unit (output ``"out"``) and ``g_i * p_i`` to the normaliser (output ``"gp"``); the normaliser sums
those and sends ``sum_i g_i p_i`` to every unit's port ``"dot"``.
"""

from __future__ import annotations

import jax.numpy as jnp

from agentgraph.arrows.ports import Port
from agentgraph.nodes.base import Field, Kind

__all__ = ["Softmax", "SoftmaxNorm"]


class SoftmaxNorm(Kind):
    """The normaliser of one softmax group: forward ``[max, logsumexp]`` of the logits.

    Backward: sums ``g_i * p_i`` arriving on ``"gp"`` and sends the sum on.

    Example:
        >>> import jax.numpy as jnp
        >>> SoftmaxNorm().forward(None, {}, {"max": jnp.array([2.0]), "lse": jnp.array([2.5])})[1]
        Array([2. , 2.5], dtype=float32)
    """

    name = "softmax_norm"
    fields = {}
    forward_ports = {"max": Port(1, "max"), "lse": Port(1, "logsumexp")}
    backward_ports = {"gp": Port(1, "sum")}
    forward_outputs = {"out": 2}
    backward_outputs = {"out": 1}

    def forward(self, params, state, inputs):
        return state, jnp.concatenate([inputs["max"], inputs["lse"]])

    def backward(self, params, state, messages):
        return state, messages["gp"], {}


class Softmax(Kind):
    """One softmax unit: ``p_j = exp(z_j - logsumexp(z))``.

    State (per example): ``x`` logit, ``mx`` group max, ``lse`` group logsumexp, ``p`` output.

    Example:
        >>> import jax.numpy as jnp
        >>> s, p = Softmax().forward(None, {k: 0.0 for k in ("x", "mx", "lse", "p")},
        ...                          {"x": jnp.array([0.0]), "norm": jnp.array([0.0, jnp.log(2.0)])})
        >>> round(float(p[0]), 6)
        0.5
    """

    name = "softmax"
    fields = {
        "x": Field(per_example=True),
        "mx": Field(per_example=True),
        "lse": Field(per_example=True),
        "p": Field(per_example=True),
    }
    forward_ports = {"x": Port(1, "sum"), "norm": Port(2, "sum")}
    backward_ports = {"m": Port(1, "sum"), "dot": Port(1, "sum")}
    forward_outputs = {"out": 1}
    backward_outputs = {"out": 1}

    def forward(self, params, state, inputs):
        x = inputs["x"][0]
        mx, lse = inputs["norm"][0], inputs["norm"][1]
        p = jnp.exp(x - lse)
        return {**state, "x": x, "mx": mx, "lse": lse, "p": p}, p[None]

    def backward(self, params, state, messages):
        g = messages["m"][0]
        dot = messages["dot"][0]
        return state, (state["p"] * (g - dot))[None], {}
