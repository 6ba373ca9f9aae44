"""Learned rules on convolutional agent graphs (tied kernels): every library protocol that keeps
ties runs an inner step on a small ``cnn`` with compiled == interpreter (float64); the ones that
rebuild the network without them refuse clearly instead of silently untying it."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import Conv, Pool, as_network, cnn
from agentgraph.protocols.base import resolve
from agentgraph.testing import state_deviation

CONV_ONLY = cnn((1, 5, 5), [Conv(2, 3, 1, 1), Conv(2, 2, stride=2)], 3, "relu", "cross_entropy", init_std=0.3)
POOLED = cnn((1, 5, 5), [Conv(2, 3, 1, 1), Pool(2, mode="max"), Conv(2, 2)], 3, "relu", "cross_entropy", init_std=0.3)


def _one_step_error(rule: str, graph) -> float:
    p = resolve({"rule": rule})
    g = p.network(as_network(graph, 0.3)).graph
    assert len(g.ties()) == len(graph.ties())  # the protocol's graph keeps every tie
    learned = p.init(jax.random.PRNGKey(0), g)
    params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(learned, p.init_stats(g), g))
    rng = np.random.default_rng(0)
    st = interpreter.init_state(g, 2)
    b = {"x": rng.normal(size=(2, 25)), "y": np.eye(3)[[0, 2]]}
    r = interpreter.step(g, st, params, b)
    with jax.enable_x64(True):
        prog = compile(g, dtype=np.float64)
        sc, loss = prog.step(params, prog.from_agents(st), b)
        got = prog.to_agents(sc)
    assert abs(float(loss) - r.loss) < 1e-10
    moved = max(abs(float(r.state[a]["w"]) - float(st[a]["w"])) for a in g.agents() if "w" in st[a] and np.ndim(st[a]["w"]) == 0)
    assert moved > 0  # the rule changed some weight
    return state_deviation(g, got, r.state)


@pytest.mark.parametrize("rule, graph", [("sgd", CONV_ONLY), ("sgd", POOLED), ("attention", POOLED), ("mplp", CONV_ONLY),
                                         ("examples.feedback_alignment:feedback_alignment", CONV_ONLY)])
def test_protocol_on_a_cnn_compiled_equals_interpreter(rule, graph, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[2])  # examples/ importable
    assert _one_step_error(rule, graph) < 1e-10


@pytest.mark.parametrize("rule, graph, match", [
    ("blur", CONV_ONLY, "BLUR does not run on networks with tied parameters"),
    ("vsml", CONV_ONLY, "VSML does not run on networks with tied parameters"),
    ("mplp", POOLED, r"MPLP has no agents for the kind\(s\) \['max_gate', 'max_pool'\] \(pooling\)"),
])
def test_protocols_that_cannot_run_a_cnn_refuse_clearly(rule, graph, match):
    with pytest.raises(AgentGraphError, match=match):
        resolve({"rule": rule}).network(as_network(graph, 0.3))
