"""Ports: the named inputs of a kind, with a message size and an aggregation.

An arrow delivers its message into one *port* of its destination. All messages that arrive at
one port in one sweep are combined by that port's aggregation into a single vector of the port's
size. A port that receives no message gets zeros, whatever its aggregation.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax.numpy as jnp
import numpy as np

from agentgraph.errors import AgentGraphError

__all__ = ["Aggregation", "AGGREGATIONS", "Port", "aggregate"]

#: ``sum`` (forward sums, the gradient), ``mean`` (MPLP's backward messages, paper eq. 5),
#: ``max``, ``logsumexp`` (softmax normalisers). Empty inboxes give zeros for every aggregation.
Aggregation = Literal["sum", "mean", "max", "logsumexp"]
AGGREGATIONS: tuple[str, ...] = ("sum", "mean", "max", "logsumexp")


@dataclasses.dataclass(frozen=True)
class Port:
    """One named input of a kind.

    Attributes:
        size: length ``d`` of every message this port accepts; messages have shape ``[d]``.
        aggregation: how several arriving messages combine: one of :data:`AGGREGATIONS`.

    Example:
        >>> Port(size=4, aggregation="mean")
        Port(size=4, aggregation='mean')
    """

    size: int = 1
    aggregation: Aggregation = "sum"

    def __post_init__(self) -> None:
        if not isinstance(self.size, (int, np.integer)) or isinstance(self.size, bool) or self.size < 1:
            raise AgentGraphError(f"Port size must be a positive int, got {self.size!r}.")
        if self.aggregation not in AGGREGATIONS:
            raise AgentGraphError(
                f"Unknown aggregation {self.aggregation!r}; choose one of {AGGREGATIONS}."
            )


def aggregate(messages, aggregation: str, size: int, xp=jnp):
    """Combine the messages arriving at one port.

    Args:
        messages: array ``[n, ..., d]`` — ``n`` arriving messages (``n`` may be 0).
        aggregation: one of :data:`AGGREGATIONS`.
        size: ``d``, used for the zero result when ``n == 0``.
        xp: array module (``jax.numpy`` or ``numpy``).

    Returns:
        array ``[..., d]``.

    Example:
        >>> import numpy as np
        >>> aggregate(np.array([[1.0], [3.0]]), "mean", 1, xp=np)
        array([2.])
    """
    messages = xp.asarray(messages)
    if messages.shape[0] == 0:
        return xp.zeros(messages.shape[1:-1] + (size,), dtype=messages.dtype)
    if aggregation == "sum":
        return messages.sum(axis=0)
    if aggregation == "mean":
        return messages.mean(axis=0)
    if aggregation == "max":
        return messages.max(axis=0)
    if aggregation == "logsumexp":
        m = messages.max(axis=0)
        return m + xp.log(xp.exp(messages - m).sum(axis=0))
    raise AgentGraphError(f"Unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}.")
