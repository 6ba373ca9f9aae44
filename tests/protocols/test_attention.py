"""Attention-seeking neurons: with attention ``w² / 2`` one inner step equals SGD by autodiff (the
paper's equivalence), on an ``mlp`` and on a ``random_dag``, float64 to 1e-9; with ``|w|`` (and
``|w|³ / 3``) it equals autodiff through a network whose weights pass the error back as
``φ'(w)`` — the difference from backprop the derivation predicts — and is not backprop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import mlp_network, random_dag_network
from agentgraph.nodes import Synapse
from agentgraph.protocols.attention import AttentionSynapse, attention, attention_feedback
from agentgraph.protocols.base import resolve
from agentgraph.testing.oracle import sgd_reference

LR = 0.3


class _FeedbackVJP(Synapse):
    """Oracle synapse: forward ``w x`` whose VJP w.r.t. ``x`` is ``φ'(w) g`` (w.r.t. ``w``: ``x g``)."""

    def __init__(self, power):
        @jax.custom_vjp
        def mul(w, x):
            return w * x

        mul.defvjp(lambda w, x: (w * x, (w, x)),
                   lambda res, g: ((res[1] * g).sum().reshape(np.shape(res[0])), attention_feedback(res[0], power) * g))
        self._mul = mul

    def forward(self, params, state, inputs):
        x = inputs["x"]
        return {**state, "x": x[0]}, self._mul(state["w"], x)


def _net(name):
    if name == "mlp":
        return mlp_network([3, 3, 3, 2], activation="tanh", init_std=0.7, seed=1)
    return random_dag_network(3, 6, 2, edge_prob=0.5, parallel_prob=0.2, activation="tanh", init_std=0.7, seed=2)


@pytest.mark.parametrize("name,power", [("mlp", 2.0), ("random_dag", 2.0), ("mlp", 1.0), ("random_dag", 1.0),
                                        ("mlp", 3.0)])
def test_attention_update_equals_its_autodiff_oracle(name, power):
    net = _net(name)
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(4, 3)), "y": np.eye(2)[rng.integers(0, 2, 4)]}
    p = attention(LR, power)
    g = p.network(net).graph
    state = interpreter.init_state(g, 4)
    for a in g.agents("synapse"):
        state[a]["w"] = np.asarray(rng.normal(0, 0.8))
    new = interpreter.step(g, state, p.params({}, {}, g), batch).state
    oracle_graph = net.graph.with_kinds({"synapse": _FeedbackVJP(power)})
    ref = sgd_reference(oracle_graph, state, LR, batch)
    backprop = sgd_reference(net.graph, state, LR, batch)
    dev, vs_bp = 0.0, 0.0
    for a, fields in ref.items():
        for f, v in fields.items():
            dev = max(dev, float(np.abs(new[a][f] - v).max()))
            vs_bp = max(vs_bp, float(np.abs(new[a][f] - backprop[a][f]).max()))
    assert dev < 1e-9
    if power == 2.0:
        assert vs_bp < 1e-9  # the paper's equivalence: attention w²/2 → backprop
    else:
        assert vs_bp > 1e-3  # away from it the rule is not backprop


def test_compiled_equals_interpreter_sign_feedback():
    net = _net("random_dag")
    p = attention(LR, 1.0)
    g = p.network(net).graph
    rng = np.random.default_rng(3)
    state = interpreter.init_state(g, 2)
    for a in g.agents("synapse"):
        state[a]["w"] = np.asarray(rng.normal(0, 0.8))
    params = p.params({}, {}, g)
    with jax.enable_x64(True):
        prog = compile(g, dtype=jnp.float64)
        cs = prog.from_agents(state)
        for _ in range(2):
            batch = {"x": rng.normal(size=(2, 3)), "y": np.eye(2)[rng.integers(0, 2, 2)]}
            state = interpreter.step(g, state, params, batch).state
            cs, _ = prog.step(params, cs, batch)
        got = prog.to_agents(cs)
    for a in g.agents("synapse"):
        np.testing.assert_allclose(got[a]["w"], state[a]["w"], atol=1e-10)


def test_settings_and_errors():
    p = resolve({"rule": "attention", "lr": 0.2, "power": 1})
    assert p.name == "attention" and p.settings == {"lr": 0.2, "power": 1.0}
    assert AttentionSynapse(1.0).linear("backward") == {} and "out" in AttentionSynapse(2.0).linear("backward")
    with pytest.raises(AgentGraphError, match=r"protocol\.power must be positive"):
        attention(power=0.0)
    with pytest.raises(AgentGraphError, match=r"protocol\.lr must be positive"):
        attention(lr=-1.0)
