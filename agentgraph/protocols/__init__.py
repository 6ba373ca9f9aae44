"""Protocols: learning rules, what runs on the arrows of a network.

* :mod:`~agentgraph.protocols.base` — the :class:`~agentgraph.protocols.base.Protocol` contract,
  :class:`~agentgraph.protocols.base.Network`, the registry (:func:`~agentgraph.protocols.base.resolve`).
* :mod:`~agentgraph.protocols.gradient` — backprop written as message passing (``rule: sgd``).
* :mod:`~agentgraph.protocols.mplp` — the learned message-passing learning protocol (``rule: mplp``).
* :mod:`~agentgraph.protocols.blur` — BLUR's bidirectional Hebbian rule (``rule: blur``).
* :mod:`~agentgraph.protocols.recording` — any kind plus a record of its messages and updates.
"""

from agentgraph.protocols import base, gradient, mplp
from agentgraph.protocols.base import Network, Protocol, resolve

__all__ = ["Network", "Protocol", "base", "gradient", "mplp", "resolve"]
