"""The gradient protocol: backprop written as message passing.

The library kinds' backward functions are each node's local chain rule with sum aggregation, and
every parameter agent updates by ``-lr * message * stored input`` — so one inner step of a
library graph is exactly one SGD step on the loss ``mean over the batch of the sum of the loss
agents' losses``. This module gives that protocol its parameters; the independent autodiff
oracle it is tested against is :mod:`agentgraph.testing.oracle`.
"""

from __future__ import annotations

from typing import Any

from agentgraph.graph import AgentGraph
from agentgraph.network import Network
from agentgraph.protocols.base import Protocol

__all__ = ["params", "sgd"]


def params(graph: AgentGraph, lr: float) -> dict[str, dict[str, float]]:
    """Gradient-protocol parameters: ``{group: {"lr": lr}}`` for every group of ``graph``.

    Example:
        >>> from agentgraph.builders import mlp
        >>> params(mlp([2, 1], loss="l2"), lr=0.1)["synapse:0"]
        {'lr': 0.1}
    """
    return {g: {"lr": lr} for g in graph.groups()}


def _same_network(net: Network) -> Network:
    return net


def _no_learned(key: Any, graph: AgentGraph) -> dict:
    return {}


def sgd(lr: float = 0.05) -> Protocol:
    """The gradient protocol as a :class:`~agentgraph.protocols.base.Protocol`: plain SGD with
    rate ``lr`` on the network's own kinds. It has no meta-parameters of its own; meta-training
    it with ``meta.maml`` learns only the initial weights (the MAML baseline).

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> p = sgd(0.1)
        >>> net = p.network(mlp_network([2, 1], loss="l2"))
        >>> p.params(p.init(None, net.graph), {}, net.graph)["synapse:0"]
        {'lr': 0.1}
    """
    if not lr > 0:
        from agentgraph.errors import AgentGraphError

        raise AgentGraphError(f"protocol.lr must be positive, got {lr}.")
    return Protocol(name="sgd", network=_same_network, init=_no_learned,
                    params=lambda learned, stats, graph: params(graph, lr), gradient_free=False,
                    settings={"lr": lr})
