"""Elementwise activation units: identity, sigmoid, tanh, relu, hard sigmoid (``clip(x, 0, 1)``),
Heaviside step.

Each unit stores its pre-activation ``x``. Gradient protocol: ``message_out = m * act'(x)``;
the Heaviside step's derivative is 0 (as ``jax.grad`` gives).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from agentgraph.arrows.ports import Port
from agentgraph.errors import AgentGraphError
from agentgraph.nodes.base import Field, Kind

__all__ = ["ACTIVATIONS", "Activation"]


def _step(x):
    return jnp.where(x > 0, 1.0, 0.0).astype(x.dtype)


#: name → (function, derivative); both elementwise on arrays.
ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "identity": (lambda x: x, lambda x: jnp.ones_like(x)),
    "sigmoid": (jax.nn.sigmoid, lambda x: jax.nn.sigmoid(x) * (1 - jax.nn.sigmoid(x))),
    "tanh": (jnp.tanh, lambda x: 1 - jnp.tanh(x) ** 2),
    "relu": (jax.nn.relu, lambda x: jnp.where(x > 0, 1.0, 0.0).astype(x.dtype)),
    "hard_sigmoid": (lambda x: jnp.clip(x, 0.0, 1.0), lambda x: ((x > 0) & (x < 1)).astype(x.dtype)),
    "step": (_step, lambda x: jnp.zeros_like(x)),
}


class Activation(Kind):
    """A unit ``y = act(x)`` storing its pre-activation ``x``; the kind's name is the function's.

    Args:
        fn: one of :data:`ACTIVATIONS` (``identity``, ``sigmoid``, ``tanh``, ``relu``,
            ``hard_sigmoid``, ``step``).

    Example:
        >>> import jax.numpy as jnp
        >>> k = Activation("relu")
        >>> k.name, float(k.forward(None, {"x": 0.0}, {"x": jnp.array([-2.0])})[1][0])
        ('relu', 0.0)
    """

    fields = {"x": Field(per_example=True)}
    forward_ports = {"x": Port(1, "sum")}
    backward_ports = {"m": Port(1, "sum")}
    forward_outputs = {"out": 1}
    backward_outputs = {"out": 1}

    def __init__(self, fn: str) -> None:
        if fn not in ACTIVATIONS:
            raise AgentGraphError(
                f"Unknown activation {fn!r}; choose one of {sorted(ACTIVATIONS)}."
            )
        self.name = fn
        self.fn, self.dfn = ACTIVATIONS[fn]

    def forward(self, params, state, inputs):
        x = inputs["x"]
        return {**state, "x": x[0]}, self.fn(x)

    def backward(self, params, state, messages):
        return state, messages["m"] * self.dfn(state["x"]), {}
