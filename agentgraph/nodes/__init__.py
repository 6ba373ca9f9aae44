"""Node kinds: the base class for user-defined agents and the library's kinds.

The library kinds implement the forward pass of an ordinary network, one scalar per agent, and
their backward functions are the *gradient protocol* (backprop as message passing).
"""

from agentgraph.nodes.activations import ACTIVATIONS, Activation
from agentgraph.nodes.base import Field, Kind, Outputs, State
from agentgraph.nodes.bias import Bias, Sum
from agentgraph.nodes.inputs import Input, Target
from agentgraph.nodes.linear import Linear, Outer
from agentgraph.nodes.losses import LOSSES, CrossEntropyLoss, L2Loss
from agentgraph.nodes.pooling import AvgPool, MaxGate, MaxPool
from agentgraph.nodes.registry import default_kinds
from agentgraph.nodes.softmax import Softmax, SoftmaxNorm
from agentgraph.nodes.synapse import Synapse

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "AvgPool",
    "Bias",
    "CrossEntropyLoss",
    "Field",
    "Input",
    "Kind",
    "L2Loss",
    "Linear",
    "MaxGate",
    "MaxPool",
    "Outer",
    "LOSSES",
    "Outputs",
    "Softmax",
    "SoftmaxNorm",
    "State",
    "Sum",
    "Synapse",
    "Target",
    "default_kinds",
]
