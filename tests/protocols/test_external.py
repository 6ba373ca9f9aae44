"""A protocol written outside the library (examples/feedback_alignment.py) through the config and
the command line, end to end: `agentgraph train` then `agentgraph eval`."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from agentgraph import AgentGraphError
from agentgraph.cli import main
from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.protocol_io import load_protocol

pytest.importorskip("sklearn")

RULE = "examples.feedback_alignment:feedback_alignment"


def test_the_rule_sends_errors_through_its_feedback_weights(monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[2])  # the repo root: examples/ importable
    cfg = parse_config({"net": {"sizes": [4, 3, 2]}, "data": {"task": "digits", "image_size": 2},
                        "protocol": {"rule": RULE, "init_lr": 0.5}})
    ctx = make_context(cfg)
    assert sorted(ctx.template()["synapse"]) == ["b", "w"]  # b is drawn fresh like w
    w = ctx.fresh(jax.random.PRNGKey(0))
    assert float(np.abs(w["synapse"]["b"] - w["synapse"]["w"]).max()) > 0
    learned = ctx.protocol.init(jax.random.PRNGKey(0), ctx.net.graph)
    params = ctx.params(learned, {})
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    batch = {"x": x, "y": np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 1]]}
    s1, _ = ctx.program.step(params, ctx.start(w, 5), batch)
    plain_w = {"synapse": {"w": w["synapse"]["w"]}, "bias": w["bias"]}  # backprop's network: no feedback weights
    p1, _ = ctx.plain.step(params, ctx.start(plain_w, 5, plain=True), batch)
    # the last layer's weights see the same error as backprop; the first layer's see it through b
    last = np.asarray(ctx.program.rows.row[[ctx.net.graph.agents().index(("w", 1, i, j))
                                            for i in range(3) for j in range(2)]])
    np.testing.assert_allclose(s1["synapse"]["w"][last], p1["synapse"]["w"][last], rtol=1e-5)
    assert float(np.abs(s1["synapse"]["w"] - p1["synapse"]["w"]).max()) > 1e-6
    with pytest.raises(AgentGraphError, match=r"protocol\.init_lr"):
        parse_config({"protocol": {"rule": RULE, "init_lr": "fast"}})


def test_train_then_eval_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[2])
    cfg = tmp_path / "fa.yaml"
    cfg.write_text(
        "net: {sizes: [64, 8, 10], activation: tanh, init_std: 0.1}\n"
        "data: {task: digits, image_size: 8, cv_batch: 40}\n"
        f"protocol: {{rule: '{RULE}', init_lr: 0.1}}\n"
        "meta: {objective: heldout, inner_steps: 4, batch: 8, meta_steps: 3, meta_lr: 0.05, prior_pool: 4}\n"
        f"run: {{out_dir: '{tmp_path / 'run'}', checkpoint_every: 3}}\n"
    )
    assert main(["train", str(cfg), "--no-progress"]) == 0
    ck = tmp_path / "run" / "ckpt_00000002.npz"
    learned, _ = load_protocol(str(ck), make_context(parse_config(json.loads(json.dumps(
        __import__("agentgraph").meta.protocol_io.read_checkpoint(str(ck))[1]["config"])))))
    lrs = np.array([float(v) for v in jax.tree.leaves(learned)])
    assert np.abs(lrs - np.log(0.1)).max() > 1e-3  # the rates moved: 3 meta-steps at meta-lr 0.05
    out = tmp_path / "eval.json"
    assert main(["eval", str(ck), "--runs", "4", "--sgd-lr", "0.1", "--adam-lr", "0.01", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "feedback_alignment" in text and "accuracy after each inner step" in text
    res = json.loads(out.read_text())
    assert res["rule"] == "feedback_alignment" and len(res["protocol"]["mean"]) == 5
    assert res["protocol"]["mean"][-1] > res["protocol"]["mean"][0]  # it learns
