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


def test_cnn_from_the_config_meta_trains_and_evaluates(tmp_path):
    """``net: {kind: cnn}``: a tied-kernel network through meta-training (MAML: the shared
    initial kernels are the meta-parameters) and evaluation; fresh weights are drawn once per tie."""
    from agentgraph.meta.checkpoints import evaluate_checkpoint
    from agentgraph.meta.context import make_context
    from agentgraph.meta.train import train
    from tests.helpers import digits_cfg

    net = {"kind": "cnn", "input_shape": [1, 8, 8], "layers": [{"type": "conv", "channels": 3, "stride": 2}], "n_out": 10}
    cfg = digits_cfg(tmp_path, net=net, protocol={"rule": "sgd", "lr": 0.3}, meta__meta_steps=2, meta__maml=True,
                     meta__objective="heldout", run__checkpoint_every=2)
    ctx = make_context(cfg)
    n_ties = len(ctx.net.graph.ties())
    w = ctx.fresh(jax.random.PRNGKey(0))
    assert w["synapse"]["w"].shape[0] == len(ctx.net.graph.agents("synapse")) - 3 * 9 * 9 + 27  # 27 kernel ties
    assert n_ties == 27 + 3
    train(cfg, progress=False, log=lambda s: None)
    rows = [__import__("json").loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["meta_loss"]) for r in rows)
    res = evaluate_checkpoint(str(sorted((tmp_path / "run").glob("ckpt_*.npz"))[-1]), runs=3, log=lambda s: None)
    assert res
    with pytest.raises(AgentGraphError, match="does not fit a 8×8 map"):
        digits_cfg(tmp_path, net={**net, "layers": [{"type": "conv", "channels": 3, "kernel": 9}]})
