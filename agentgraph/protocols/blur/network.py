"""The BLUR network of a library network: the same arrows among BLUR's agents, the head
replaced by label agents (see :mod:`agentgraph.protocols.blur`).

**Ties** (a ``cnn``'s kernels): a tie of library synapses on ``w`` becomes a tie of the same
agents' ``k``-channel weight ``w`` (and of ``wb`` with ``feedback="separate"``), a tie of bias
agents on ``b`` one of the neurons' ``b``; all with reduction ``mean``. BLUR's update
``Δw = (f̃ − 1) w + η̃ (ν̃ᵀ a_i) ⊙ (μ̃ a_j)`` contains a decay of the weight itself; under ``sum``
a weight used at ``P`` positions would decay ``P`` times as fast and take ``P`` Hebbian steps,
so the genome's rates would mean something else on every layer. ``mean`` keeps a shared weight
moving like one synapse, by its uses' average Hebbian term. **Average pooling** units become
:class:`BlurPool` agents (the mean of their window's states forward, their backward message
passed unchanged to each unit of the window, as a relay does); max pooling is refused."""

from __future__ import annotations

import numpy as np

from agentgraph.arrows.ports import Port
from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.network import FieldInit, Network, Readout
from agentgraph.protocols.units import output_units
from agentgraph.protocols.blur.agents import UPDATE, BlurInput, BlurLabel, BlurNeuron, BlurRelay, BlurSynapse

__all__ = ["EXACT_SCHEDULE", "GROUP", "BlurPool", "blur_network"]

#: The one parameter-sharing group of every BLUR agent.
GROUP = "blur"

#: Exact BLUR's step: forward, backward, then the synapses' update from both neurons' final states.
EXACT_SCHEDULE = Schedule((Phase("forward", loss=True), Phase("backward"), Phase(UPDATE),
                           Phase("reflexive", self_loops=True)))

_HEAD = ("target", "softmax", "softmax_norm", "l2", "cross_entropy")


class BlurPool(BlurRelay):
    """An average-pooling unit: forwards the mean of its window's ``k``-channel states (port
    ``"x"``, mean; in the update phase too) and passes its backward message unchanged to each of
    them (a relay over a window).

    Example:
        >>> import jax.numpy as jnp
        >>> BlurPool(2).ports("forward")["x"].aggregation
        'mean'
    """

    name = "blur_pool"

    def __init__(self, k: int, exact: bool = False) -> None:
        super().__init__(k, exact)
        self.forward_ports = {"x": Port(self.k, "mean")}
        if self.exact:
            self.arrow_ports = {UPDATE: {"x": Port(self.k, "mean")}}


def blur_network(net: Network, k: int = 2, sigma: str = "tanh", init_std: float = 0.1, exact: bool = True, *,
                 output_sigma: str | None = None, bias_state: str = "e0", label_states: str = "keep",
                 label_coding: str = "as_given", feedback: str = "tied", synapse_init: str = "normal",
                 init_range: float = 1.0, objective: str = "cross_entropy") -> Network:
    """The BLUR network of a library network (module docstring): same arrows among inputs,
    synapses, biases (now neurons) and activations (now relays), head removed, label agents added.
    With ``exact``, the graph runs :data:`EXACT_SCHEDULE` and gains the update arrows: each
    forward arrow into a synapse or a relay is copied as an update arrow (port ``"pre"`` / ``"x"``),
    and each synapse → neuron arrow reversed (port ``"post"``).

    The keyword options are the conventions of :class:`~agentgraph.protocols.blur.settings.BlurSettings`
    (``output_sigma``: the output neurons' σ, ``None`` for ``sigma``); ``synapse_init`` and
    ``init_range`` set the fresh-weight initialisers, ``objective`` (with ``label_coding``) the
    read-out: ``cross_entropy`` reads output state 0 as logits; ``l2`` as values, decoded
    ``(a₀ + 1)/2`` (field ``p``) when the labels are ``pm1``-coded.

    Example:
        >>> from agentgraph.builders import random_dag_network
        >>> b = blur_network(random_dag_network(3, 4, 2, seed=1), k=2)
        >>> len(b.readout.agents), b.init[0]
        (2, FieldInit(kind='blur_synapse', field='w', std=0.1, mean=0.0, dist='normal'))
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
    if {"max_pool", "max_gate"} & set(A.kind_names):
        raise AgentGraphError("BLUR has no max pooling (a maximum of k-channel states is not defined); use average "
                              "pooling (Pool(mode='avg')) or a strided convolution.")
    fwd = A.type == 0
    outputs = output_units(net, "BLUR")
    is_out = np.zeros(len(A.names), bool)
    is_out[outputs] = True
    decode = "pm1" if objective == "l2" and label_coding == "pm1" else None
    g = AgentGraph(kinds=[BlurInput(k, exact), BlurSynapse(k, exact, feedback),
                          BlurNeuron(k, sigma, exact=exact, bias_state=bias_state),
                          BlurNeuron(k, output_sigma or sigma, label=True, exact=exact, bias_state=bias_state,
                                     label_states=label_states, decode=decode),
                          BlurRelay(k, exact), BlurPool(k, exact), BlurLabel(label_coding)],
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
        elif kind == "avg_pool":
            g.add_agents(names, "blur_pool", groups=GROUP)
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
    _carry_ties(lib, g, kind_of, is_out, feedback)
    labels = [("blur_label", j) for j in range(len(outputs))]
    g.add_agents(labels, "blur_label", groups=GROUP, slots=range(len(outputs)))
    g.add_arrows(labels, [A.names[i] for i in outputs], "backward", port="label")
    out_names = tuple(A.names[i] for i in outputs)
    if objective == "l2":
        readout = Readout(out_names, "p") if decode else Readout(out_names, "a", index=0, kind="values")
    else:
        readout = Readout(out_names, "a", index=0, kind="logits")
    init = _initialisers(feedback, synapse_init, init_std, init_range)
    return Network(g.validate(), tuple(i for i in init if i.kind in g.kinds and g.agents(i.kind)), readout)




def _carry_ties(lib: AgentGraph, g: AgentGraph, kind_of: np.ndarray, is_out: np.ndarray, feedback: str) -> None:
    """The library graph's ties on BLUR's agents (module docstring): synapse ``w`` → ``w`` (and
    ``wb``), bias ``b`` → the neurons' ``b``, reduction ``mean``; any other tie is an error."""
    t, names = lib.ties(), lib.arrays().names
    for i, (name, field) in enumerate(zip(t.names, t.fields)):
        members = t.members(i)
        kind = kind_of[members[0]]
        if kind == "synapse" and field == "w":
            fields = ("w", "wb") if feedback == "separate" else ("w",)
        elif kind == "bias" and field == "b":
            if len(set(is_out[members].tolist())) > 1:
                raise AgentGraphError(f"BLUR cannot tie output and hidden units: tie {name!r} holds "
                                      f"{names[members[0]]!r} and {names[members[-1]]!r}.")
            fields = ("b",)
        else:
            raise AgentGraphError(f"BLUR carries ties of synapse weights and unit biases only; tie {name!r} shares "
                                  f"field {field!r} of {kind!r} agents (e.g. {names[members[0]]!r}).")
        for f in fields:
            g.tie([names[a] for a in members], f, reduction="mean", name=name if f != "wb" else f"{name}/wb")


def _initialisers(feedback: str, synapse_init: str, init_std: float, init_range: float) -> tuple[FieldInit, ...]:
    """Fresh weights: ``normal`` — synapses (and feedback synapses) ``~ N(0, init_std)``, biases 0;
    ``uniform`` — synapses, feedback synapses and biases ``~ U(−init_range, init_range)`` (the
    authors' initialiser over their whole synapse matrix, bias row and feedback block included)."""
    weights = ("w", "wb") if feedback == "separate" else ("w",)
    if synapse_init == "uniform":
        r = float(init_range)
        return (*(FieldInit("blur_synapse", f, std=r, dist="uniform") for f in weights),
                FieldInit("blur_output", "b", std=r, dist="uniform"), FieldInit("blur_neuron", "b", std=r, dist="uniform"))
    return (*(FieldInit("blur_synapse", f, std=float(init_std)) for f in weights),
            FieldInit("blur_output", "b"), FieldInit("blur_neuron", "b"))


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
