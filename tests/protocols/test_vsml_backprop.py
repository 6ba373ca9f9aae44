"""Backprop in forward mode: under the hand-set LSTM of :mod:`agentgraph.protocols.vsml.backprop`
a VSML network's messages alone run online SGD — predictions and weights equal a NumPy SGD of the
same linear network, example by example, in float64 (interpreter and compiled program)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import mlp_network
from agentgraph.protocols.vsml import GROUP, vsml_network
from agentgraph.protocols.vsml.backprop import backprop_lstm, sgd_learning_rates, weight_c0, weights_of

SIZES, LR, H, M, B, T = (3, 4, 2), 0.5, 8, 8, 2, 8


def _sgd(weights, lrs, x, y):
    """One online SGD step of the linear softmax network ``x @ W_1 @ … @ W_L``; returns its logits."""
    acts = [x]
    for W in weights:
        acts.append(acts[-1] @ W)
    p = np.exp(acts[-1] - acts[-1].max())
    d = p / p.sum() - y
    for l in reversed(range(len(weights))):
        d, weights[l] = weights[l] @ d, weights[l] - lrs[l] * np.outer(acts[l], d)
    return acts[-1]


@pytest.mark.parametrize("engine", ["interpreter", "compiled"])
def test_hand_set_vsml_runs_online_sgd(engine):
    net = vsml_network(mlp_network(list(SIZES)), M, H, micro_ticks=1, two_phase=True, bound=1e6)
    g = net.graph
    syn = g.agents("vsml_synapse")
    rng = np.random.default_rng(0)
    w0 = [rng.normal(size=(SIZES[l], SIZES[l + 1])) for l in range(len(SIZES) - 1)]
    state = interpreter.init_state(g, B)
    for a in syn:
        _, l, i, j = a
        state[a]["c0"] = weight_c0(w0[l][i, j], LR, H)
    params = {GROUP: backprop_lstm(M, H, LR)}
    lrs = sgd_learning_rates(SIZES, LR)
    ref = [[w / SIZES[l] for l, w in enumerate(w0)] for _ in range(B)]  # W = w / n_in, one learner per b
    outs = list(net.readout.agents)
    with jax.enable_x64(True):
        if engine == "compiled":
            prog = compile(g, dtype=jnp.float64)
            cstate = prog.from_agents(state)
        for t in range(T):
            want = np.array([[ref[b][a[1]][a[2], a[3]] * SIZES[a[1]] for a in syn] for b in range(B)])
            x = rng.normal(size=(B, SIZES[0]))
            y = np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], B)]
            if engine == "compiled":
                cstate, _ = prog.step(params, cstate, {"x": x, "y": y})
                state = prog.to_agents(cstate)
            else:
                state = interpreter.step(g, state, params, {"x": x, "y": y}).state
            # the weights example t was predicted with (its own update waits for the next example)
            np.testing.assert_allclose(weights_of(state, syn, LR), want, rtol=1e-5, atol=1e-6,
                                       err_msg=f"weights at example {t}")
            z = np.stack([np.asarray(state[o]["z"]) for o in outs], axis=1)
            z_ref = np.stack([_sgd(ref[b], lrs, x[b], y[b]) for b in range(B)])
            np.testing.assert_allclose(z, z_ref, rtol=1e-5, atol=1e-6, err_msg=f"logits of example {t}")
    moved = np.abs(np.concatenate([r.ravel() for r in ref[0]]) - np.concatenate([w.ravel() / n for w, n in
                                                                              zip(w0, SIZES)]))
    assert moved.max() > 0.05  # the network did learn: the comparison is not of frozen weights


def test_backprop_lstm_errors():
    with pytest.raises(AgentGraphError, match="hidden >= 7"):
        backprop_lstm(msg=8, hidden=6)
    with pytest.raises(AgentGraphError, match="lr must be positive"):
        backprop_lstm(lr=0.0)
