"""Learned rules on convolutional agent graphs (tied kernels): every library protocol runs an inner
step on a small ``cnn`` with compiled == interpreter (float64) — BLUR and VSML on the graphs they
rebuild around the units, with the kernels' ties carried over; what a protocol cannot run (max
pooling in BLUR and VSML, pooling in MPLP) is refused clearly."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import Conv, Dense, Pool, as_network, cnn
from agentgraph.protocols.base import resolve
from agentgraph.testing import state_deviation

CONV_ONLY = cnn((1, 5, 5), [Conv(2, 3, 1, 1), Conv(2, 2, stride=2)], 3, "relu", "cross_entropy", init_std=0.3)
POOLED = cnn((1, 5, 5), [Conv(2, 3, 1, 1), Pool(2, mode="max"), Conv(2, 2)], 3, "relu", "cross_entropy", init_std=0.3)
#: average and max pooling in one graph (MPLP's pooling agents: avg_pool, max_pool, max_gate)
MIXED_POOLS = cnn((1, 5, 5), [Conv(2, 2), Pool(2), Pool(2, stride=1, mode="max")], 2, "relu", "cross_entropy",
                  init_std=0.3)
#: conv + average pool + dense: BLUR's and VSML's CNN (their units average; no max pooling)
AVG_POOLED = cnn((1, 5, 5), [Conv(2, 2), Pool(2), Dense(2)], 2, "relu", "cross_entropy", init_std=0.3)


def _one_step_error(rule: str, graph) -> float:
    p = resolve({"rule": rule})
    g = p.network(as_network(graph, 0.3)).graph
    assert len(g.ties()) == len(graph.ties())  # the protocol's graph keeps every tie
    learned = p.init(jax.random.PRNGKey(0), g)
    params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(learned, p.init_stats(g), g))
    rng = np.random.default_rng(0)
    st = interpreter.init_state(g, 2)
    n = len(p.network(as_network(graph, 0.3)).readout.agents)
    b = {"x": rng.normal(size=(2, 25)), "y": np.eye(n)[[0, n - 1]]}
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
                                         ("mplp", MIXED_POOLS),
                                         ("examples.feedback_alignment:feedback_alignment", CONV_ONLY)])
def test_protocol_on_a_cnn_compiled_equals_interpreter(rule, graph, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[2])  # examples/ importable
    assert _one_step_error(rule, graph) < 1e-10


def _rebuilt_step_error(settings: dict, graph, batch_size: int, fields: tuple[str, ...]) -> float:
    """One inner step of a protocol that rebuilds the network (BLUR, VSML) on ``graph``, every tie
    started at its own random value: compiled vs interpreter state deviation (float64). Checks
    that each kernel entry of ``graph`` became a tie of each of ``fields`` (reduction mean) and
    that the step moved a kernel entry's ``fields[0]``."""
    p = resolve(settings)
    g = p.network(as_network(graph, 0.3)).graph
    T, names = g.ties(), g.arrays().names
    kernel = [t for t, f in zip(graph.ties().names, graph.ties().fields) if f == "w"]
    assert len(kernel) == 8 and {f for f in T.fields} == set(fields)  # every kernel entry carried, on each field
    assert sum(f == fields[0] for f in T.fields) == len(kernel) and set(T.reductions) == {"mean"}
    learned = p.init(jax.random.PRNGKey(0), g)
    params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(learned, p.init_stats(g), g))
    rng = np.random.default_rng(0)
    st = interpreter.init_state(g, batch_size)
    for a in g.agents():  # untied weights and initial cells: random
        for f in set(fields) & set(st[a]):
            st[a][f] = rng.normal(size=np.shape(st[a][f]))
    for t, f in enumerate(T.fields):  # each tie: one random value for all its members
        v = rng.normal(size=np.shape(st[names[T.members(t)[0]]][f]))
        for a in T.members(t):
            st[names[a]][f] = v.copy()
    b = {"x": rng.normal(size=(batch_size, 25)), "y": np.eye(2)[[1, 0][:batch_size]]}
    r = interpreter.step(g, st, params, b)
    with jax.enable_x64(True):
        prog = compile(g, dtype=np.float64)
        sc, loss = prog.step(params, prog.from_agents(st), b)
        got = prog.to_agents(sc)
    assert abs(float(loss) - r.loss) < 1e-10
    tied = names[T.members(0)[0]]  # a kernel entry's first use
    assert np.abs(np.asarray(r.state[tied][fields[0]]) - st[tied][fields[0]]).max() > 1e-6  # the step moved its tie
    return state_deviation(g, got, r.state)


@pytest.mark.parametrize("settings, batch_size, fields", [
    # exact BLUR (three phases), the kernel weights tied on w (and the neurons' biases on b)
    ({"rule": "blur", "k": 2}, 2, ("w", "b")),
    # VSML as the authors' conv.yaml: forward and backward sweep per example, the other phase's last
    # message carried, message layer norm, the label fed; the LSTM state of every kernel entry tied
    ({"rule": "vsml", "msg": 4, "hidden": 4, "two_phase": True, "two_phase_inputs": "carried", "layer_norm": True},
     1, ("c", "h", "c0")),
])
def test_rebuilding_protocols_carry_ties_on_a_cnn(settings, batch_size, fields):
    assert _rebuilt_step_error(settings, AVG_POOLED, batch_size, fields) < 1e-10


@pytest.mark.parametrize("rule, graph, match", [
    ("blur", POOLED, "BLUR has no max pooling"),
    ("vsml", POOLED, "VSML has no max pooling"),
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
