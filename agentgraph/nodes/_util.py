"""Small helpers shared by the library kinds (not public)."""

from __future__ import annotations

from typing import Any

from agentgraph.errors import AgentGraphError


def learning_rate(params: Any, kind: str):
    """The gradient protocol's learning rate from a group's params ``{"lr": scalar}``."""
    try:
        return params["lr"]
    except (TypeError, KeyError, IndexError):
        raise AgentGraphError(
            f"Kind {kind!r} runs the gradient protocol and needs params {{'lr': value}} for its "
            f"group, got {params!r}. Pass agentgraph.protocols.gradient.params(graph, lr=...)."
        ) from None
