"""Protocols: what runs on the arrows. ``gradient`` is backprop written as message passing."""

from agentgraph.protocols import gradient

__all__ = ["gradient"]
