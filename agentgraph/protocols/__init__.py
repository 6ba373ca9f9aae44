"""Protocols: what runs on the arrows. ``gradient`` is backprop written as message passing;
``mplp`` is the learned message-passing learning protocol."""

from agentgraph.protocols import gradient, mplp

__all__ = ["gradient", "mplp"]
