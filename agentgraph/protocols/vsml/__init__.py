"""VSML (Kirsch & Schmidhuber, NeurIPS 2021, "Meta learning backpropagation and improving it") as
a library protocol: every synapse of a network is a small LSTM, one parameter set shared by all
synapses of all layers; the network learns online, one example per tick, by messages alone.

One tick (one example, one inner step; :data:`~agentgraph.protocols.vsml.agents.SCHEDULE`)::

    input i        sends (x_i, 0, …, 0)                                     [M]
    synapse ij     [h, c] ← LSTM^k([fwd_ij, bwd_ij], [h, c])   (k = 2 micro ticks)
                   sends fwd = h W_f + b_f to unit j, bwd = h W_b + b_b to back(i)
    unit j         fwd_jk = mean_i fwd_ij for its out-synapses                   (immediate)
    output j       z_j = 100 tanh(mean_i fwd_ij[1] / 100): the prediction
    error j        loss y_j (lse − z_j); sends (softmax(z)_j − y_j, y_j, 0, …)  (delayed)
    back(i)        bwd_hi = mean_j bwd_ij for its in-synapses                    (delayed)

so backward messages reach a synapse one tick after they were made, as in VSML. The loss of a tick
is the cross-entropy of the prediction made *before* the label is heard (online loss). The LSTM
states persist across the ticks of an episode (they are per-example state); each synapse's cell
state starts at ``c0`` (per agent, ``~ N(0, init_std)``) on half its channels — what makes two
synapses differ. Batch ``B`` runs ``B`` independent learners (VSML's setting is ``B = 1``).

Differences from the authors' code: units average over their in-/out-synapses as there, but the
random initial cell state has one standard deviation for all synapses (theirs: 1/√fan-in); the
network comes from a library graph, so it may be non-layered (skip connections, several paths).

Example:
    >>> import jax
    >>> from agentgraph.builders import mlp_network
    >>> p = vsml()
    >>> net = p.network(mlp_network([4, 3, 2]))
    >>> sum(v.size for v in jax.tree.leaves(p.init(jax.random.PRNGKey(0), net.graph)))
    2384
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agentgraph.compiler import Program
from agentgraph.errors import AgentGraphError
from agentgraph.inner import Inner
from agentgraph.learners.lstm import init_lstm
from agentgraph.protocols.base import Protocol
from agentgraph.protocols.vsml.agents import (
    SCHEDULE,
    TICK,
    VSMLBack,
    VSMLError,
    VSMLInput,
    VSMLSynapse,
    VSMLUnit,
)
from agentgraph.protocols.vsml.network import GROUP, vsml_network

__all__ = ["GROUP", "SCHEDULE", "TICK", "VSMLBack", "VSMLError", "VSMLInput", "VSMLSynapse", "VSMLUnit", "vsml",
           "vsml_network"]


def held_out(inner: Inner, program: Program, params: dict, state: dict, data: dict) -> jax.Array:
    """VSML's held-out predictions: the learner of example 0 (its synapses' LSTM states and the
    messages in flight) copied to every held-out example, one forward tick, the outputs' ``z``
    (``[C, n_out]``). The copies' own labels are not heard before the prediction is read (a
    :data:`~agentgraph.protocols.base.HeldOut` hook)."""
    C = data["x"].shape[0]

    def copy(v):  # per-example arrays are [agents, B, ...]
        return jnp.broadcast_to(v[:, :1], (v.shape[0], C, *v.shape[2:]))

    out = {}
    for k, fields in state.items():
        if k == "@delayed":
            out[k] = {n: copy(v) for n, v in fields.items()}
        else:
            kind = program.kinds[k]
            out[k] = {f: copy(v) if kind.fields[f].per_example else v for f, v in fields.items()}
    out, _ = program.forward(params, out, data)
    return inner.predict(out, program)


def vsml(msg: int = 8, hidden: int = 16, micro_ticks: int = 2, init_std: float = 0.5, output_index: int = 1,
         two_phase: bool = False) -> Protocol:
    """VSML as a :class:`~agentgraph.protocols.base.Protocol` (config ``protocol: {rule: vsml}``).

    Args:
        msg: message size ``M`` (at least 2: the error and the label).
        hidden: LSTM state size of every synapse.
        micro_ticks: LSTM ticks per synapse per example.
        init_std: std of the random half of each synapse's initial cell state.
        output_index: which component of an output unit's averaged message is its prediction.
        two_phase: a forward then a backward sweep per example, the backward messages of this
            example arriving at once (instead of one tick per example, backward messages one tick
            late); the schedule under which :func:`~agentgraph.protocols.vsml.backprop.backprop_lstm`
            runs SGD.
    """
    if msg < 2:
        raise AgentGraphError(f"protocol.msg must be at least 2 (error and label), got {msg}.")
    if not 0 <= output_index < msg:
        raise AgentGraphError(f"protocol.output_index must be in [0, msg), got {output_index} with msg={msg}.")
    return Protocol(
        name="vsml",
        network=lambda net: vsml_network(net, msg, hidden, micro_ticks, init_std, output_index, two_phase),
        init=lambda key, graph: init_lstm(key, 2 * msg, hidden, msg),
        params=lambda learned, stats, graph: {GROUP: learned},
        held_out=held_out,
        settings={"msg": msg, "hidden": hidden, "micro_ticks": micro_ticks, "init_std": init_std,
                  "output_index": output_index, "two_phase": two_phase},
    )
