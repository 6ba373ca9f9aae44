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

__all__ = ["output_units"]


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

