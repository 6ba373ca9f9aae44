"""The library's kinds, by name."""

from __future__ import annotations

from agentgraph.nodes.activations import ACTIVATIONS, Activation
from agentgraph.nodes.base import Kind
from agentgraph.nodes.bias import Bias, Sum
from agentgraph.nodes.inputs import Input, Target
from agentgraph.nodes.losses import CrossEntropyLoss, L2Loss
from agentgraph.nodes.pooling import AvgPool, MaxGate, MaxPool
from agentgraph.nodes.softmax import Softmax, SoftmaxNorm
from agentgraph.nodes.synapse import Synapse

__all__ = ["default_kinds"]


def default_kinds() -> dict[str, Kind]:
    """A fresh ``{name: kind}`` table of every library kind (gradient-protocol backward).

    Example:
        >>> sorted(default_kinds())[:4]
        ['avg_pool', 'bias', 'cross_entropy', 'hard_sigmoid']
    """
    kinds: list[Kind] = [
        Input(), Target(), Synapse(), Bias(), Sum(), Softmax(), SoftmaxNorm(), L2Loss(),
        CrossEntropyLoss(), AvgPool(), MaxPool(), MaxGate(), *(Activation(a) for a in ACTIVATIONS),
    ]
    return {k.name: k for k in kinds}
