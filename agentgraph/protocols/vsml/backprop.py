"""Backprop in forward mode: a hand-set VSML LSTM under which every synapse's cell state holds a
weight ``w`` and the network's messages alone run online SGD (VSML's claim that its LSTMs can
implement backpropagation without any gradient being computed).

The construction (two-phase schedule, ``micro_ticks = 1``, ``hidden ≥ 7``, ``msg ≥ 2``): one
parameter set for every synapse; each synapse's LSTM uses seven of its units

====  =====================  ==============================================================
unit  cell                   role
====  =====================  ==============================================================
0, 1  ``A`` (both)           ``A − B = s_w · w``: the weight, kept in two cells whose
2, 3  ``B`` (both)           difference makes the update a product; output gates ``σ(±γ m)``
                             give ``h0 − h1 − h2 + h3 ≈ (γ m / 2)(A − B)``, ``m`` the message
                             in (the activation ``x`` forward, the error ``e`` backward)
4     ``x`` memory           stores ``κ x`` in the forward phase, shown in the backward one
5     ``e`` memory           stores ``κ e`` in the backward phase, cleared in the forward one
6     phase                  flips sign every tick: the gates of 4 and 5 read it
====  =====================  ==============================================================

so that a synapse sends ``w x`` forward and ``w e`` backward, and at the next example's forward
tick (before it sends) adds ``σ(−α κ e) κ x − σ(α κ e) κ x ≈ −(α κ² / 2) x e`` to ``A − B``: the
update ``w ← w − lr x e``. Every nonlinearity is used near zero (scales ``1e-4 … 1e-3``), so the
match is up to terms of relative size ``≈ 1e-7``: float64 only.

What this computes: VSML units *average* their in-synapses' messages, so a unit's activation is
``Σ_i (w_ij / n_in) x_i`` — a linear network (no activation function: VSML units have none)
with weights ``W = w / n_in``; its backward messages, averaged over the ``n_out`` out-synapses,
are the backprop δ scaled per layer. On an ``mlp`` of sizes ``n_0, …, n_L`` the hand-set VSML
therefore runs online SGD (batch 1 per learner, softmax cross-entropy) on ``W`` with per-layer
learning rates ``lr_l = lr · n_l / (n_L · n_{l−1})`` (:func:`sgd_learning_rates`).

Example:
    >>> from agentgraph.builders import mlp_network
    >>> from agentgraph.protocols.vsml import vsml
    >>> net = vsml(hidden=8, micro_ticks=1, two_phase=True).network(mlp_network([3, 2]))
    >>> p = backprop_lstm(msg=8, hidden=8, lr=0.5)
    >>> p["w"].shape
    (24, 32)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from agentgraph.errors import AgentGraphError
from agentgraph.learners.lstm import FORGET_BIAS, INPUT_BIAS

__all__ = ["SCALES", "backprop_lstm", "sgd_learning_rates", "weight_c0", "weights_of"]

#: The construction's scales: x / e memories (κ), the update gate's gain (α), the output gates' gain (γ).
SCALES = {"kappa": 1e-4, "alpha": 10.0, "gamma": 1e-3}
_SAT = 40.0  # a saturated gate: σ(±40) = 1 or 0 to 4e-18
_H_PHASE = float(np.tanh(1.0))  # the phase unit's output, ± tanh(1)


def _weight_scale(lr: float) -> float:
    """``s_w``: ``A − B = s_w · w`` (so that one update adds ``s_w · lr · x e``)."""
    k, a = SCALES["kappa"], SCALES["alpha"]
    return a * k * k / (2.0 * lr)


def backprop_lstm(msg: int = 8, hidden: int = 16, lr: float = 0.1) -> dict:
    """The hand-set LSTM parameters (the :func:`~agentgraph.learners.lstm.init_lstm` pytree, as
    float64 NumPy arrays) under which VSML's synapses run SGD with per-synapse learning rate ``lr``
    (module docstring). Use with ``vsml(hidden=hidden, msg=msg, micro_ticks=1, two_phase=True)``.

    Returns:
        ``{"w": [2 msg + hidden, 4 hidden], "b": [4 hidden], "w_fwd", "w_bwd": [hidden, msg],
        "b_fwd", "b_bwd": [msg]}``.

    Example:
        >>> sorted(backprop_lstm(msg=4, hidden=8))
        ['b', 'b_bwd', 'b_fwd', 'w', 'w_bwd', 'w_fwd']
    """
    if hidden < 7 or msg < 2:
        raise AgentGraphError(f"backprop_lstm needs hidden >= 7 and msg >= 2 (got hidden={hidden}, msg={msg}).")
    if not lr > 0:
        raise AgentGraphError(f"backprop_lstm: lr must be positive, got {lr}.")
    M, H = int(msg), int(hidden)
    k, a, g = SCALES["kappa"], SCALES["alpha"], SCALES["gamma"]
    n_in = 2 * M + H
    W, b = np.zeros((n_in, 4 * H)), np.zeros(4 * H)
    x_in, e_in = 0, M  # the activation (forward slot 0) and the error (backward slot 0)
    hx, he, hp = 2 * M + 4, 2 * M + 5, 2 * M + 6  # rows of the recurrent inputs h4, h5, h6

    def gate(name, unit):
        return {"i": 0, "g": 1, "f": 2, "o": 3}[name] * H + unit

    def bias(name, unit, value):  # pre-activation value, the LSTM's constant gate offsets removed
        b[gate(name, unit)] = value - {"i": INPUT_BIAS, "f": FORGET_BIAS}.get(name, 0.0)

    def by_phase(name, unit, forward_on):  # on in one phase, off in the other (phase read from h6)
        sign = 1.0 if forward_on else -1.0
        bias(name, unit, sign * _SAT)
        W[hp, gate(name, unit)] = -sign * 2 * _SAT / _H_PHASE

    for unit, sign_i, sign_o in ((0, -1, 1), (1, -1, -1), (2, 1, 1), (3, 1, -1)):  # the weight cells
        W[he, gate("i", unit)] = sign_i * a          # i = σ(∓α h5): h5 = κ e of the last backward tick
        bias("i", unit, 0.0)
        W[hx, gate("g", unit)] = 1.0                 # g = h4 = κ x of the last forward tick
        bias("f", unit, _SAT)                        # never forget
        W[x_in, gate("o", unit)] = sign_o * g        # o = σ(±γ m): m the message in
        W[e_in, gate("o", unit)] = sign_o * g
    # unit 4: x memory (write in forward, keep in backward; shown only after the backward tick)
    by_phase("f", 4, forward_on=False)
    by_phase("i", 4, forward_on=True)
    W[x_in, gate("g", 4)] = k
    by_phase("o", 4, forward_on=False)
    # unit 5: e memory (write in backward, cleared in forward)
    bias("f", 5, -_SAT)
    by_phase("i", 5, forward_on=False)
    W[e_in, gate("g", 5)] = k
    bias("o", 5, _SAT)
    # unit 6: the phase, tanh(c) flipping sign every tick (+ after forward ticks, − after backward)
    bias("f", 6, -_SAT)
    bias("i", 6, _SAT)
    bias("g", 6, 3.0)
    W[hp, gate("g", 6)] = -10.0
    bias("o", 6, _SAT)
    # units 7…: idle (input gate shut, cell 0)
    for unit in range(7, H):
        bias("i", unit, -_SAT)
    # read-outs: (h0 − h1 − h2 + h3) · 2 / (γ s_w) = w m; forward into slots 0 and 1, backward into 0
    read = np.zeros((H, M))
    read[:4, 0] = np.array([1.0, -1.0, -1.0, 1.0]) * 2.0 / (g * _weight_scale(lr))
    w_fwd = read.copy()
    w_fwd[:, 1] = read[:, 0]
    return {"w": W, "b": b, "w_fwd": w_fwd, "b_fwd": np.zeros(M), "w_bwd": read, "b_bwd": np.zeros(M)}


def weight_c0(w: float | np.ndarray, lr: float, hidden: int = 16) -> np.ndarray:
    """The ``c0`` of a synapse (or ``[..., hidden]`` of many) whose weight starts at ``w``.

    Example:
        >>> c = weight_c0(2.0, lr=0.1, hidden=8)
        >>> c.shape, bool(c[0] == c[1] == -c[2] == -c[3])
        ((8,), True)
    """
    half = 0.5 * _weight_scale(lr) * np.asarray(w, np.float64)[..., None]
    return np.concatenate([half, half, -half, -half, np.zeros(half.shape[:-1] + (hidden - 4,))], axis=-1)


def weights_of(state: Mapping[Hashable, Mapping[str, np.ndarray]], synapses: Sequence[Hashable],
               lr: float) -> np.ndarray:
    """The weights ``[B, len(synapses)]`` the hand-set synapses hold in an interpreter-layout state
    (``{agent: {"c": [B, hidden], "started": [B]}}``; before the first tick, from ``c0``).

    Example:
        >>> s = {"w": {"c": np.zeros((1, 8)), "started": np.zeros(1), "c0": weight_c0(1.5, 0.1, 8)}}
        >>> weights_of(s, ["w"], lr=0.1).round(6).tolist()
        [[1.5]]
    """
    cols = []
    for a in synapses:
        st = state[a]
        c = np.where(np.asarray(st["started"])[:, None] > 0, st["c"], np.asarray(st["c0"])[None, :])
        cols.append((c[:, 0] - c[:, 2]) / _weight_scale(lr))
    return np.stack(cols, axis=1)


def sgd_learning_rates(sizes: Sequence[int], lr: float) -> list[float]:
    """The per-layer SGD learning rates on ``W = w / n_in`` the hand-set VSML runs on an ``mlp`` of
    ``sizes``: ``lr · n_l / (n_L · n_{l−1})`` for the layers ``l = 1 … L``.

    Example:
        >>> [round(r, 6) for r in sgd_learning_rates([3, 4, 2], lr=0.6)]
        [0.4, 0.15]
    """
    n = [int(s) for s in sizes]
    return [lr * n[l] / (n[-1] * n[l - 1]) for l in range(1, len(n))]
