"""Where a library network's units are, for protocols that rebuild a network around its units
(BLUR's k-state neurons, VSML's LSTM units): the library builders sum each unit's synapses in a
``bias`` agent, so that agent *is* the unit.

Example:
    >>> from agentgraph.builders import mlp_network
    >>> net = mlp_network([3, 2])
    >>> [net.graph.arrays().names[i] for i in output_units(net, "demo")]
    [('b', 0, 0), ('b', 0, 1)]
"""

from __future__ import annotations

import numpy as np

from agentgraph.errors import AgentGraphError
from agentgraph.network import Network

__all__ = ["output_units", "refuse_ties"]


def output_units(net: Network, rule: str) -> list[int]:
    """The bias agent (index into ``net.graph.arrays()``) feeding each of the read-out's agents,
    in output order: where a library network's output units sum their synapses — what protocols
    that rebuild a network around its units (BLUR, VSML) call its outputs.

    Raises:
        AgentGraphError: a read-out agent not fed by exactly one bias agent (``rule`` names who asks).

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> net = mlp_network([3, 2])
        >>> [net.graph.arrays().names[i] for i in output_units(net, "demo")]
        [('b', 0, 0), ('b', 0, 1)]
    """
    A = net.graph.arrays()
    index = {a: i for i, a in enumerate(A.names)}
    is_bias = np.array(A.kind_names, dtype=object)[A.kind] == "bias"
    fwd = A.type_mask("forward")
    out = []
    for r in net.readout.agents:
        srcs = [int(s) for s in A.src[fwd & (A.dst == index[r])] if is_bias[s]]
        if len(srcs) != 1:
            raise AgentGraphError(f"Read-out agent {r!r} is not fed by exactly one bias agent; {rule} cannot find "
                                  "its output unit.")
        out.append(srcs[0])
    return out


def refuse_ties(net: Network, rule: str) -> None:
    """For protocols that rebuild a network around its units and do not (yet) carry tied
    parameters over (:mod:`agentgraph.graph.ties`): an error rather than a silently untied network.

    Raises:
        AgentGraphError: the network has ties (names ``rule``, the count and one tie).

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> refuse_ties(mlp_network([3, 2]), "demo")  # no ties: fine
    """
    ties = net.graph.ties()
    if len(ties):
        raise AgentGraphError(
            f"{rule} does not run on networks with tied parameters yet: this one has {len(ties)} ties (e.g. "
            f"{ties.names[0]!r} on field {ties.fields[0]!r}), which {rule}'s network would drop. Use a network "
            "without ties (mlp, random_dag) or a protocol that keeps them (sgd, mplp, attention).")
