"""The BLUR network of a library network: the same arrows among BLUR's agents, the head
replaced by label agents (see :mod:`agentgraph.protocols.blur`)."""

from __future__ import annotations

import numpy as np

from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.network import FieldInit, Network, Readout
from agentgraph.protocols.units import output_units
from agentgraph.protocols.blur.agents import UPDATE, BlurInput, BlurLabel, BlurNeuron, BlurRelay, BlurSynapse

__all__ = ["EXACT_SCHEDULE", "GROUP", "blur_network"]

#: The one parameter-sharing group of every BLUR agent.
GROUP = "blur"

#: Exact BLUR's step: forward, backward, then the synapses' update from both neurons' final states.
EXACT_SCHEDULE = Schedule((Phase("forward", loss=True), Phase("backward"), Phase(UPDATE),
                           Phase("reflexive", self_loops=True)))

_HEAD = ("target", "softmax", "softmax_norm", "l2", "cross_entropy")


def blur_network(net: Network, k: int = 2, sigma: str = "tanh", init_std: float = 0.1, exact: bool = True) -> Network:
    """The BLUR network of a library network (module docstring): same arrows among inputs,
    synapses, biases (now neurons) and activations (now relays), head removed, label agents added.
    With ``exact``, the graph runs :data:`EXACT_SCHEDULE` and gains the update arrows: each
    forward arrow into a synapse or a relay is copied as an update arrow (port ``"pre"`` / ``"x"``),
    and each synapse → neuron arrow reversed (port ``"post"``).

    Example:
        >>> from agentgraph.builders import random_dag_network
        >>> b = blur_network(random_dag_network(3, 4, 2, seed=1), k=2)
        >>> len(b.readout.agents), b.init[0]
        (2, FieldInit(kind='blur_synapse', field='w', std=0.1, mean=0.0))
    """
    lib = net.graph
    if net.readout is None:
        raise AgentGraphError("BLUR needs the network's read-out to know its output units; give the Network a Readout.")
    A = lib.arrays()
    kind_of = np.array(A.kind_names, dtype=object)[A.kind]
    need = {"input", "synapse", "bias"}
    if not need <= set(A.kind_names):
        raise AgentGraphError(f"BLUR runs on library networks (kinds {sorted(need)} and activations); this graph "
                              f"has kinds {sorted(A.kind_names)}.")
    fwd = A.type == 0
    outputs = output_units(net, "BLUR")
    is_out = np.zeros(len(A.names), bool)
    is_out[outputs] = True
    g = AgentGraph(kinds=[BlurInput(k, exact), BlurSynapse(k, exact), BlurNeuron(k, sigma, exact=exact),
                          BlurNeuron(k, sigma, label=True, exact=exact), BlurRelay(k, exact), BlurLabel()],
                   schedule=EXACT_SCHEDULE if exact else None)
    keep = np.zeros(len(A.names), bool)
    for kind in A.kind_names:
        rows = np.flatnonzero(kind_of == kind)
        if kind in _HEAD:
            continue
        keep[rows] = True
        names = [A.names[i] for i in rows]
        if kind == "input":
            g.add_agents(names, "blur_input", groups=GROUP, slots=A.slot[rows])
        elif kind == "synapse":
            g.add_agents(names, "blur_synapse", groups=GROUP)
        elif kind == "bias":
            for out, kname in ((False, "blur_neuron"), (True, "blur_output")):
                sel = [A.names[i] for i in rows if is_out[i] == out]
                if sel:
                    g.add_agents(sel, kname, groups=GROUP)
        else:  # an activation: the neuron applies σ, the agent relays
            g.add_agents(names, "blur_relay", groups=GROUP)
    edges = keep[A.src] & keep[A.dst] & (A.type < 2)
    for t, tname in ((0, "forward"), (1, "backward")):
        for port_i in np.unique(A.port[edges & (A.type == t)]):
            sel = np.flatnonzero(edges & (A.type == t) & (A.port == port_i))
            g.add_arrows([A.names[i] for i in A.src[sel]], [A.names[i] for i in A.dst[sel]], tname,
                         port=A.strings[port_i])
    if exact:
        _update_arrows(g, A, kind_of, edges & (A.type == 0))
    labels = [("blur_label", j) for j in range(len(outputs))]
    g.add_agents(labels, "blur_label", groups=GROUP, slots=range(len(outputs)))
    g.add_arrows(labels, [A.names[i] for i in outputs], "backward", port="label")
    readout = Readout(tuple(A.names[i] for i in outputs), "a", index=0, kind="logits")
    init = (FieldInit("blur_synapse", "w", std=float(init_std)), FieldInit("blur_output", "b"), FieldInit("blur_neuron", "b"))
    return Network(g.validate(), tuple(i for i in init if i.kind in g.kinds and g.agents(i.kind)), readout)




def _update_arrows(g: AgentGraph, A, kind_of: np.ndarray, fwd: np.ndarray) -> None:
    """Exact BLUR's update arrows from the library network's forward arrows ``fwd`` (mask)."""
    dst_kind = kind_of[A.dst]
    names = A.names
    for mask, port, reverse in ((fwd & (dst_kind == "synapse"), "pre", False),
                                (fwd & (dst_kind == "bias"), "post", True),
                                (fwd & ~np.isin(dst_kind, ("synapse", "bias", "input")), "x", False)):
        sel = np.flatnonzero(mask)
        if len(sel):
            src, dst = (A.dst[sel], A.src[sel]) if reverse else (A.src[sel], A.dst[sel])
            g.add_arrows([names[i] for i in src], [names[i] for i in dst], UPDATE, port=port)
