"""Protocols: learning rules, what runs on the arrows of a network.

* :mod:`~agentgraph.protocols.base` — the :class:`~agentgraph.protocols.base.Protocol` contract
  and the registry (:func:`~agentgraph.protocols.base.resolve`); the networks a protocol runs on
  are :class:`~agentgraph.network.Network`.
* :mod:`~agentgraph.protocols.gradient` — backprop written as message passing (``rule: sgd``).
* :mod:`~agentgraph.protocols.mplp` — the learned message-passing learning protocol (``rule: mplp``).
* :mod:`~agentgraph.protocols.blur` — BLUR's bidirectional Hebbian rule (``rule: blur``).
* :mod:`~agentgraph.protocols.vsml` — VSML's LSTM synapses (``rule: vsml``).
* :mod:`~agentgraph.protocols.attention` — attention-seeking neurons (``rule: attention``).
* :mod:`~agentgraph.protocols.predictive_coding` — predictive coding (``rule: predictive_coding``).
* :mod:`~agentgraph.protocols.equilibrium` — equilibrium propagation (``rule: equilibrium``).
* :mod:`~agentgraph.protocols.feedback` — feedback alignment, direct feedback alignment, sign
  symmetry (``rule: feedback_alignment | direct_feedback_alignment | sign_symmetry``).
* :mod:`~agentgraph.protocols.hebbian` — Hebb, the ABCD form, Oja (``rule: hebbian``).
* :mod:`~agentgraph.protocols.perturbation` — node perturbation (``rule: node_perturbation``).
* :mod:`~agentgraph.protocols.recording` — any kind plus a record of its messages and updates.
* :mod:`~agentgraph.protocols.units` — where a library network's units are (BLUR, VSML).
"""

from agentgraph.network import Network
from agentgraph.protocols import base, gradient, mplp
from agentgraph.protocols.base import Calibration, Protocol, Stepping, WarmStart, resolve

__all__ = ["Calibration", "Network", "Protocol", "Stepping", "WarmStart", "base", "gradient", "mplp", "resolve"]
