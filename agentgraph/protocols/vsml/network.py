"""The VSML network of a library network (``mlp``, ``random_dag``, ``cnn``): its synapses become
LSTM synapses, its units (bias agents) forward averagers with a backward side, its inputs and
read-out units VSML's inputs and outputs with error agents (see :mod:`agentgraph.protocols.vsml.agents`).

**Ties** (a ``cnn``'s kernels): the uses of one tied synapse weight become ``vsml_tied_synapse``
agents whose LSTM state ``h``, ``c`` and initial cell ``c0`` are tied with reduction ``mean`` —
the authors' convolutional VSML layer keeps one LSTM state per kernel entry, runs it at every
position and averages the positions' new states. Bias ties vanish (VSML units have no
parameters). **Average pooling** units become averaging units (``vsml_unit``) with a backward
side that passes their backward message to each unit of their window; max pooling is refused."""

from __future__ import annotations

import numpy as np

from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.network import FieldInit, Network, Readout
from agentgraph.protocols.units import output_units
from agentgraph.protocols.vsml.agents import (
    SCHEDULE,
    TICK,
    TWO_PHASE_SCHEDULE,
    VSMLBack,
    VSMLError,
    VSMLInput,
    VSMLSynapse,
    VSMLUnit,
)

__all__ = ["GROUP", "TIED_STATE", "vsml_network"]

#: The one parameter-sharing group: every synapse of every layer runs the same LSTM.
GROUP = "vsml"

#: The fields of a tied synapse that its tie shares (reduction ``mean``).
TIED_STATE = ("c0", "h", "c")


def vsml_network(net: Network, msg: int = 8, hidden: int = 16, micro_ticks: int = 2, init_std: float = 0.5,
                 output_index: int = 1, two_phase: bool = False, bound: float = 100.0, feed_label: bool = True,
                 c0_init: str = "fixed", error_scale: str = "per_example", two_phase_inputs: str = "split",
                 layer_norm: bool = False) -> Network:
    """The VSML network of library network ``net`` (its wiring kept: layered or not, skip
    connections, parallel synapses).

    Every library synapse ``s`` from unit ``p`` (an input, or the bias agent behind an activation)
    to unit ``q`` (a bias agent) gets the arrows ``p → s`` (forward message), ``s → q`` (averaged),
    ``s → back(p)`` (its backward message, averaged, if ``p`` is hidden) and the delayed
    ``back(q) → s`` or ``error(q) → s``. Output units feed their error agents' ``z`` and, all of
    them, every error agent's ``lse``. With ``two_phase`` the forward arrows have type
    ``fwd_tick``, the backward ones type ``bwd_tick`` and are immediate
    (:data:`~agentgraph.protocols.vsml.agents.TWO_PHASE_SCHEDULE`). Output units bound their
    prediction to ``± bound``. ``feed_label=False``: the error agents send 0 instead of the label;
    ``c0_init="fan_in"``: each synapse's ``c0`` is drawn ``N(0, 1)`` and scaled by ``1/√n``, ``n``
    its post-unit's number of in-synapses (the authors' ``1/√in_size``), instead of ``N(0, init_std)``;
    ``error_scale="batch_mean"``: the errors are multiplied by the parameter ``error_scale``
    (:func:`~agentgraph.protocols.vsml.vsml` puts ``1/B`` there); ``two_phase_inputs="carried"``
    (with ``two_phase``): each phase's synapses also hear the other phase's last message (the
    authors' ``backward_pass``), instead of ``[fwd, 0]`` and ``[0, bwd]``; ``layer_norm``: the
    synapses layer-normalise their messages (parameters from ``init_params(..., layer_norm=True)``).

    A tie of library synapses on ``w`` (tie ``t``) becomes the ties ``t/c0``, ``t/h``, ``t/c``
    (reduction ``mean``) of the same agents as ``vsml_tied_synapse`` s (module docstring); an
    ``avg_pool`` agent becomes a ``vsml_unit`` fed by its window's units, with a ``vsml_back``
    that sends its backward message to the window's back agents.

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> v = vsml_network(mlp_network([4, 3, 2]))
        >>> len(v.graph.agents("vsml_synapse")), len(v.graph.agents("vsml_back")), v.readout.field
        (18, 3, 'z')
        >>> from agentgraph.builders import Conv, Pool, as_network, cnn
        >>> c = vsml_network(as_network(cnn((1, 4, 4), [Conv(2, 3, padding=1), Pool(2)], n_out=2)))
        >>> len(c.graph.agents("vsml_tied_synapse")), len(c.graph.ties())  # 2·9 kernel entries, 3 fields each
        (200, 54)
    """
    lib = net.graph
    if net.readout is None:
        raise AgentGraphError("VSML needs the network's read-out to know its output units; give the Network a Readout.")
    A = lib.arrays()
    kind_of = np.array(A.kind_names, dtype=object)[A.kind]
    if not {"input", "synapse", "bias"} <= set(A.kind_names):
        raise AgentGraphError(f"VSML runs on library networks (kinds input, synapse, bias and activations); this graph "
                              f"has kinds {sorted(A.kind_names)}.")
    if {"max_pool", "max_gate"} & set(A.kind_names):
        raise AgentGraphError("VSML has no max pooling (its units average messages); use average pooling "
                              "(Pool(mode='avg')) or a strided convolution.")
    fwd = A.type_mask("forward")
    src_of = {}  # unit agent behind each activation: the bias feeding it
    for s, d in zip(A.src[fwd], A.dst[fwd]):
        if kind_of[s] == "bias" and kind_of[d] not in ("synapse", "bias", "avg_pool"):
            src_of[int(d)] = int(s)
    pools = np.flatnonzero(kind_of == "avg_pool")
    pool_in = [(src_of.get(int(s), int(s)), int(d)) for s, d in zip(A.src[fwd], A.dst[fwd]) if kind_of[d] == "avg_pool"]
    pre, post = {}, {}
    for s, d in zip(A.src[fwd], A.dst[fwd]):
        if kind_of[d] == "synapse":
            pre[int(d)] = src_of.get(int(s), int(s))
        if kind_of[s] == "synapse" and kind_of[d] == "bias":
            post[int(s)] = int(d)
    outputs = output_units(net, "VSML")
    is_out = np.zeros(len(A.names), bool)
    is_out[outputs] = True
    syn = np.flatnonzero(kind_of == "synapse")
    missing = [A.names[i] for i in syn if i not in pre or i not in post]
    if missing:
        raise AgentGraphError(f"Synapse {missing[0]!r} has no unit on one of its ends; VSML needs every synapse "
                              "between an input or unit and a unit.")
    names = A.names
    F, Bk = ("fwd_tick", "bwd_tick") if two_phase else (TICK, TICK)
    if c0_init not in ("fixed", "fan_in"):
        raise AgentGraphError(f"c0_init must be 'fixed' or 'fan_in', got {c0_init!r}.")
    fan_in = c0_init == "fan_in"
    ties = _synapse_ties(lib, kind_of)
    syn_kw = dict(fwd_type=F, bwd_type=Bk, c0_scale=fan_in, carried=two_phase and two_phase_inputs == "carried",
                  layer_norm=layer_norm)
    g = AgentGraph(kinds=[VSMLInput(msg, F), VSMLSynapse(msg, hidden, micro_ticks, **syn_kw),
                          *([VSMLSynapse(msg, hidden, micro_ticks, shared_state=True, **syn_kw)] if ties else []),
                          VSMLUnit(msg, fwd_type=F), VSMLUnit(msg, output=True, index=output_index, bound=bound,
                                                              fwd_type=F),
                          VSMLBack(msg, Bk), VSMLError(msg, F, Bk, feed_label=feed_label,
                                                                   scaled=error_scale == "batch_mean")],
                   schedule=TWO_PHASE_SCHEDULE if two_phase else SCHEDULE)
    inputs = np.flatnonzero(kind_of == "input")
    g.add_agents([names[i] for i in inputs], "vsml_input", groups=GROUP, slots=A.slot[inputs])
    units = np.flatnonzero(kind_of == "bias")
    hidden_units = [i for i in units if not is_out[i]] + [int(i) for i in pools]
    g.add_agents([names[i] for i in hidden_units], "vsml_unit", groups=GROUP)
    g.add_agents([names[i] for i in outputs], "vsml_output", groups=GROUP)
    g.add_agents([("back", names[i]) for i in hidden_units], "vsml_back", groups=GROUP)
    errors = [("error", j) for j in range(len(outputs))]
    g.add_agents(errors, "vsml_error", groups=GROUP, slots=range(len(outputs)))
    syn_states = {}
    post_of = np.array([post[i] for i in syn], dtype=np.int64)
    if fan_in:
        syn_states["c0_scale"] = 1.0 / np.sqrt(np.bincount(post_of, minlength=len(names))[post_of])
    if two_phase and two_phase_inputs == "carried":
        syn_states["keep_bwd"] = np.where(is_out[post_of], 0.0, 1.0)
    tied = np.isin(syn, [a for _, members in ties for a in members])
    for kname, sel in (("vsml_synapse", ~tied), ("vsml_tied_synapse", tied)):
        if sel.any():
            g.add_agents([names[i] for i in syn[sel]], kname, groups=GROUP,
                         states={f: v[sel] for f, v in syn_states.items()} or None)
    for t, members in ties:
        for f in TIED_STATE:
            g.tie([names[i] for i in members], f, reduction="mean", name=f"{t}/{f}")
    err_of = {u: errors[j] for j, u in enumerate(outputs)}
    s_names = [names[i] for i in syn]
    g.add_arrows([names[pre[i]] for i in syn], s_names, F, port="fwd")
    g.add_arrows(s_names, [names[post[i]] for i in syn], F, port="in", src_port="fwd")
    if pool_in:  # a pool averages its window's units; its back side feeds theirs
        g.add_arrows([names[s] for s, _ in pool_in], [names[d] for _, d in pool_in], F, port="in")
        g.add_arrows([("back", names[d]) for _, d in pool_in], [("back", names[s]) for s, _ in pool_in], Bk,
                     port="in")
    hid = [i for i in syn if kind_of[pre[i]] in ("bias", "avg_pool")]
    g.add_arrows([names[i] for i in hid], [("back", names[pre[i]]) for i in hid], Bk, port="in", src_port="bwd")
    back_src = [err_of[post[i]] if is_out[post[i]] else ("back", names[post[i]]) for i in syn]
    g.add_arrows(back_src, s_names, Bk, port="bwd", delay=not two_phase)
    out_names = [names[i] for i in outputs]
    g.add_arrows(out_names, errors, F, port="z", src_port="z")
    g.add_arrows([o for o in out_names for _ in errors], [e for _ in out_names for e in errors], F, port="lse",
                 src_port="z")
    readout = Readout(tuple(out_names), "z", kind="logits")
    init = tuple(FieldInit(k, "c0", std=1.0 if fan_in else float(init_std)) for k in ("vsml_synapse", "vsml_tied_synapse")
                 if g.agents(k))
    return Network(g.validate(), init, readout)


def _synapse_ties(lib: AgentGraph, kind_of: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(tie name, member agents)`` of the library graph's synapse-weight ties; bias ties are
    dropped (VSML units have no parameters), any other tie is an error naming it."""
    t = lib.ties()
    out = []
    for i, (name, field) in enumerate(zip(t.names, t.fields)):
        members = t.members(i)
        kind = kind_of[members[0]]
        if kind == "synapse" and field == "w":
            out.append((name, members))
        elif not (kind == "bias" and field == "b"):
            raise AgentGraphError(f"VSML carries ties of synapse weights only; tie {name!r} shares field {field!r} of "
                                  f"{kind!r} agents (e.g. {lib.arrays().names[members[0]]!r}).")
    return out
