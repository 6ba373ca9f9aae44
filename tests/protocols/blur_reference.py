"""An independent NumPy reference of one BLUR step under the authors' conventions.

Written from the BLUR paper (Sandler et al., ICML 2021) and from reading the authors' public code
(google-research ``blur/``: ``network_step``, ``dense_neuron_update``, ``get_hebbian_update``,
``concat_groundtruth_in``), not from agentgraph's kinds: one pass over a list of neurons and a list
of synapses, no graph engine. Layered networks are the authors' case; the same equations are
written here for any DAG of neurons (a neuron reads all its in-synapses in the forward sweep, all
its out-synapses in the backward sweep), so the reference also covers ``random_dag`` networks.

Conventions, each an entry of ``opts`` (:data:`AUTHORS` has the authors' choices; :data:`OURS`
agentgraph's defaults):

* ``bias_state``: ``ones`` — every unit has a bias synapse from a constant neuron whose ``k``
  states are all 1 (the authors' ``concat_row``); ``e0`` — that neuron is ``(1, 0, …, 0)``.
* ``label_coding`` / ``label_states``: the target written into output state 1 is ``2y − 1``
  (``pm1``) or ``y``; states 2…k−1 are zeroed (``zero``) or kept.
* ``feedback``: ``separate`` — the backward sweep reads a feedback weight ``wb`` of its own,
  updated with pre and post swapped; ``tied`` — it reads ``w``.
* ``sigma`` / ``output_sigma``: hidden neurons (both sweeps) / output neurons (forward).
* ``batch_update``: Hebbian terms ``sum``-med or ``mean``-ed over the batch.
* ``exact``: synapses update from both neurons' final states (the authors' code); otherwise from
  the pre-neuron's forward state.

The step, for a batch ``x [B, n_in]``, ``y [B, n_out]`` (``ν a`` is ``nu @ a``)::

    inputs      a_i = (x_i, 0, …, 0)
    forward     a_j = σ_j(η (Σ_{s: i→j} c_s w_s ⊙ (ν a_i) + b_j ⊙ (ν 1̂)))       topological order
    labels      a_o[1] = label_o (a_o[2:] = 0)
    backward    a_i = σ(f a_i + η Σ_{s: i→j} fb_s ⊙ (μ c_s a_j))                hidden, reverse order
    synapses    w_s  ← f̃ w_s  + η̃ R_b[(ν̃ᵀ a_i) ⊙ (μ̃ c_s a_j)]
                wb_s ← f̃ wb_s + η̃ R_b[(ν̃ᵀ c_s a_j) ⊙ (μ̃ a_i)]                 (separate feedback)
    biases      b_j  ← f̃ b_j  + η̃ R_b[(ν̃ᵀ 1̂) ⊙ (μ̃ a_j)]

``fb`` is ``wb`` or ``w``; ``1̂`` the bias neuron's state; ``c_s`` how many parallel arrows carry
synapse ``s`` into its post-neuron (``random_dag`` doubles some: the synapse then counts twice,
in both sweeps, as in the gradient protocol); ``R_b`` the sum or mean over the batch.

The authors' genome maps onto ``{nu, mu, nu_t, mu_t, f, eta, f_t, eta_t}`` as
``nu = neuron.transform[:k, k:]ᵀ``, ``mu = neuron.transform[k:, :k]ᵀ``, ``f = neuron.keep``,
``eta = neuron.update``, ``nu_t = synapse.transform.pre``, ``mu_t = synapse.transform.post``,
``f_t = synapse.keep``, ``eta_t = synapse.update``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

import numpy as np

AUTHORS = {"bias_state": "ones", "label_states": "zero", "label_coding": "pm1", "feedback": "separate",
           "sigma": "relu_tanh", "output_sigma": "tanh", "batch_update": "sum", "exact": True}
OURS = {"bias_state": "e0", "label_states": "keep", "label_coding": "as_given", "feedback": "tied",
        "sigma": "tanh", "output_sigma": None, "batch_update": "mean", "exact": True}

SIGMA = {"tanh": np.tanh, "relu_tanh": lambda z: np.maximum(np.tanh(z), 0.0), "identity": lambda z: z,
         "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)), "relu": lambda z: np.maximum(z, 0.0)}


@dataclasses.dataclass
class Topology:
    """Neurons ``0 … n_in−1`` are the inputs (in slot order), then the units in topological
    order; synapse ``s`` runs ``pre[s] → post[s]`` with multiplicity ``mult[s]``; ``outputs`` are
    the output units in label order. ``names`` / ``syn_names`` are the library agents (a unit is
    its ``bias`` agent, a synapse its ``synapse`` agent)."""

    n_in: int
    names: list[Hashable]
    syn_names: list[Hashable]
    pre: np.ndarray
    post: np.ndarray
    mult: np.ndarray
    outputs: list[int]

    @property
    def n(self) -> int:
        return len(self.names)


def topology(net) -> Topology:
    """The neurons and synapses of a library network (``mlp_network`` / ``random_dag_network``),
    read from its forward arrows: input → synapse, activation → synapse, synapse → bias (the
    unit), bias → activation, and the read-out agents' feeding units."""
    A = net.graph.arrays()
    kinds = np.array(A.kind_names, dtype=object)[A.kind]
    fwd = np.flatnonzero(A.type == 0)
    inputs = sorted(np.flatnonzero(kinds == "input"), key=lambda i: int(A.slot[i]))
    units = list(np.flatnonzero(kinds == "bias"))
    unit_of = {int(i): int(i) for i in units} | {int(i): int(i) for i in inputs}
    for e in fwd:  # an activation agent stands for the unit (bias) feeding it
        s, d = int(A.src[e]), int(A.dst[e])
        if kinds[s] == "bias" and kinds[d] not in ("synapse", "bias", "input", "target", "l2", "cross_entropy",
                                                     "softmax", "softmax_norm"):
            unit_of[d] = s
    syns = list(np.flatnonzero(kinds == "synapse"))
    pre, post, mult = {}, {}, {}
    for e in fwd:
        s, d = int(A.src[e]), int(A.dst[e])
        if kinds[d] == "synapse":
            pre[d] = unit_of[s]
        elif kinds[s] == "synapse" and kinds[d] == "bias":
            post[s] = d
            mult[s] = mult.get(s, 0) + 1
    # units in topological order (Kahn) over unit → unit edges
    indeg = {u: 0 for u in units}
    succ: dict[int, list[int]] = {u: [] for u in units}
    for s in syns:
        if pre[s] in indeg:
            indeg[post[s]] += 1
            succ[pre[s]].append(post[s])
    order, ready = [], sorted(u for u in units if indeg[u] == 0)
    while ready:
        u = ready.pop(0)
        order.append(u)
        for v in succ[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    assert len(order) == len(units), "the network's units are not acyclic"
    neurons = [int(i) for i in inputs] + order
    pos = {a: p for p, a in enumerate(neurons)}
    outputs = []
    index = {a: i for i, a in enumerate(A.names)}
    for r in net.readout.agents:  # the unit feeding each read-out agent (through the head)
        feeding = [int(A.src[e]) for e in fwd if int(A.dst[e]) == index[r] and kinds[int(A.src[e])] == "bias"]
        assert len(feeding) == 1, r
        outputs.append(pos[feeding[0]])
    return Topology(len(inputs), [A.names[i] for i in neurons], [A.names[s] for s in syns],
                    np.array([pos[pre[s]] for s in syns]), np.array([pos[post[s]] for s in syns]),
                    np.array([mult[s] for s in syns], float), outputs)


def step(topo: Topology, W, WB, Bias, g, x, y, opts=AUTHORS):
    """One step. ``W``, ``WB`` ``[S, k]`` (``WB`` ignored with tied feedback), ``Bias [N, k]``
    (input rows unused), genome ``g``, batch ``x [B, n_in]``, ``y [B, n_out]``. Returns the final
    neuron states ``A [B, N, k]`` and the new ``W``, ``WB``, ``Bias``."""
    o = {**OURS, **opts}
    k, B = W.shape[1], x.shape[0]
    one = np.ones(k) if o["bias_state"] == "ones" else np.eye(k)[0]
    sig_h, sig_o = SIGMA[o["sigma"]], SIGMA[o["output_sigma"] or o["sigma"]]
    outs = set(topo.outputs)
    units = range(topo.n_in, topo.n)
    A = np.zeros((B, topo.n, k))
    A[:, :topo.n_in, 0] = x
    for j in units:  # forward, zero-out
        z = np.broadcast_to(Bias[j] * (g["nu"] @ one), (B, k)).copy()
        for s in np.flatnonzero(topo.post == j):
            z += topo.mult[s] * W[s] * (A[:, topo.pre[s]] @ g["nu"].T)
        A[:, j] = (sig_o if j in outs else sig_h)(g["eta"] * z)
    forward = A.copy()
    label = 2.0 * y - 1.0 if o["label_coding"] == "pm1" else y
    for c, j in enumerate(topo.outputs):
        A[:, j, 1] = label[:, c]
        if o["label_states"] == "zero":
            A[:, j, 2:] = 0.0
    fb = WB if o["feedback"] == "separate" else W
    for i in reversed(units):  # backward: hidden neurons, successors first
        if i in outs:
            continue
        m = np.zeros((B, k))
        for s in np.flatnonzero(topo.pre == i):
            m += fb[s] * ((topo.mult[s] * A[:, topo.post[s]]) @ g["mu"].T)
        A[:, i] = sig_h(g["f"] * A[:, i] + g["eta"] * m)
    red = (lambda v: v.sum(0)) if o["batch_update"] == "sum" else (lambda v: v.mean(0))

    def hebbian(w, a_pre, a_post):  # (f̃ − 1) w + η̃ R_b[(ν̃ᵀ a_pre) ⊙ (μ̃ a_post)], added to w
        return w + (g["f_t"] - 1.0) * w + g["eta_t"] * red((a_pre @ g["nu_t"]) * (a_post @ g["mu_t"].T))

    pre_states = A if o["exact"] else forward
    W2, WB2, Bias2 = W.copy(), WB.copy(), Bias.copy()
    for s in range(len(W)):
        a_i, a_j = pre_states[:, topo.pre[s]], topo.mult[s] * A[:, topo.post[s]]
        W2[s] = hebbian(W[s], a_i, a_j)
        if o["feedback"] == "separate":
            WB2[s] = hebbian(WB[s], a_j, a_i)
    for j in units:
        Bias2[j] = hebbian(Bias[j], np.broadcast_to(one, (B, k)), A[:, j])
    return A, W2, WB2, Bias2
