"""Input and target agents: where a batch enters the graph.

Each agent reads column ``slot`` (a node attribute) of one batch array — ``batch["x"]`` for
inputs, ``batch["y"]`` for targets — through its forward port ``"data"`` and sends it on.
"""

from __future__ import annotations

from agentgraph.arrows.ports import Port
from agentgraph.nodes.base import Field, Kind

__all__ = ["Input", "Target"]


class Input(Kind):
    """Reads ``batch["x"][:, slot]`` and sends it forward unchanged.

    State: ``x`` (per example) — the last value read.

    Example:
        >>> import jax.numpy as jnp
        >>> Input().forward(None, {"x": 0.0}, {"data": jnp.array([0.5])})[1]
        Array([0.5], dtype=float32)
    """

    name = "input"
    fields = {"x": Field(per_example=True)}
    forward_ports = {"data": Port(1)}
    forward_outputs = {"out": 1}
    external = "x"

    def forward(self, params, state, inputs):
        d = inputs["data"]
        return {**state, "x": d[0]}, d


class Target(Input):
    """Reads ``batch["y"][:, slot]`` and sends it forward (into a loss agent's ``target`` port).

    Example:
        >>> Target().external
        'y'
    """

    name = "target"
    external = "y"
