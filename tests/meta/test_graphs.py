"""Meta-training on other graphs: learner sharing on non-layered graphs, protocol transfer to
other networks, a pool of random DAGs through one compiled meta-step, a user's own builder (split
from test_train.py so the test workers share the load)."""

from __future__ import annotations

import pytest

from agentgraph import AgentGraphError
from agentgraph import checkpoint as ckpt
from agentgraph.meta.protocol_io import load_protocol
from agentgraph.meta.context import make_context
from agentgraph.meta.train import train
from helpers import _metrics, digits_cfg


@pytest.mark.parametrize("sharing", ["group", "kind", "all"])
def test_sharing_modes_on_a_non_layered_graph(tmp_path, sharing):
    import jax

    from agentgraph.protocols import mplp

    cfg = digits_cfg(tmp_path, net__kind="random_dag", net__n_hidden=4, net__edge_prob=0.3, protocol__sharing=sharing)
    ctx = make_context(cfg)
    learners = set(ctx.protocol.init(jax.random.PRNGKey(0), ctx.net.graph))
    keys = mplp.share_keys(ctx.net.graph, sharing)
    assert learners == {lk for lk, _, _ in keys.values()}
    assert len(learners) == {"group": 5, "kind": 5, "all": 1}[sharing]  # random_dag: one group per kind


def test_meta_training_on_a_non_layered_graph_keeps_one_learner_per_group(tmp_path):
    cfg = digits_cfg(tmp_path, net__kind="random_dag", net__n_hidden=4, net__edge_prob=0.3,
                     protocol__sharing="group", meta__meta_steps=2, protocol__calibration_rounds=1)
    res = train(cfg, progress=False, log=lambda s: None)
    flat, _ = ckpt.load(res["checkpoint"])
    learners = {k.split("]")[1][2:-1] for k in flat if k.startswith(".trainable['protocol']")}
    assert len(learners) == 5 and res["bad_steps"] == 0


def test_group_sharing_is_per_layer_on_mlps():
    from agentgraph import mlp
    from agentgraph.protocols import mplp

    g = mlp([4, 3, 3, 2])
    assert len({lk for lk, _, _ in mplp.share_keys(g, "group").values()}) == 3 + 3 + 2 + 2
    assert len({lk for lk, _, _ in mplp.share_keys(g, "kind").values()}) == 5
    assert len({nk for _, nk, _ in mplp.share_keys(g, "kind").values()}) == 10  # normalisation per layer
    assert {lk for lk, _, _ in mplp.share_keys(g, "all").values()} == {"all"}


def test_a_users_own_builder_trains_and_its_protocol_transfers_to_other_nets_and_refuses_others(tmp_path):
    """net.kind names "package.module:function" (args and seed passed on); the protocol it
    trains moves to a step activation and a wider net, and refuses misfits by name."""
    builder = {"kind": "agentgraph.builders:mlp_network", "args": {"sizes": [64, 16, 10]}}
    cfg = digits_cfg(tmp_path, net=builder, meta__meta_steps=2, protocol__calibration_rounds=1)
    assert len(make_context(cfg).base.graph.agents("synapse")) == 64 * 16 + 16 * 10
    res = train(cfg, progress=False, log=lambda s: None)
    assert res["bad_steps"] == 0
    for target in (
        digits_cfg(tmp_path, net__sizes=[64, 16, 10], net__activation="step"),
        digits_cfg(tmp_path, net__sizes=[64, 40, 10]),
    ):
        meta, norm = load_protocol(res["checkpoint"], make_context(target))
        assert "synapse" in meta and "activation:0" in norm
    with pytest.raises(AgentGraphError, match=r"does not fit.*shape"):
        load_protocol(res["checkpoint"], make_context(digits_cfg(tmp_path, net__sizes=[64, 16, 10], protocol__k=3)))
    with pytest.raises(AgentGraphError, match=r"does not fit.*missing"):
        load_protocol(res["checkpoint"], make_context(digits_cfg(tmp_path, net__sizes=[64, 16, 16, 10])))
    with pytest.raises(AgentGraphError, match=r"net\.kind .*nope"):
        make_context(digits_cfg(tmp_path, net={"kind": "agentgraph.builders:nope"}))
    with pytest.raises(AgentGraphError, match=r"net\.args"):
        make_context(digits_cfg(tmp_path, net={"kind": "agentgraph.builders:mlp_network", "args": {"sizez": 3}}))


def test_graph_pool_cycles_random_dags_through_one_compiled_step_and_resumes(tmp_path, monkeypatch):
    import importlib

    tr = importlib.import_module("agentgraph.meta.train")
    traces = []
    real = tr.make_meta_step

    def counting(*args, **kw):  # count traces of the jitted meta-step, whatever graph it runs
        step = real(*args, **kw)
        inner = step.__wrapped__ if hasattr(step, "__wrapped__") else None
        assert inner is not None
        import jax

        def traced(ts, s, program):
            traces.append(1)
            return inner(ts, s, program)

        return jax.jit(traced)

    monkeypatch.setattr(tr, "make_meta_step", counting)
    cfg = digits_cfg(tmp_path, net__kind="random_dag", net__n_hidden=3, net__edge_prob=0.3, net__pool=3,
                     meta__meta_steps=4, protocol__calibration_rounds=1, run__checkpoint_every=2,
                     run__eval_every=4, run__eval_runs=3)
    res = train(cfg, progress=False, log=lambda s: None, max_steps=3)
    assert len(traces) == 1  # three different graphs, one trace of the meta-step
    flat, _ = ckpt.load(res["checkpoint"])
    assert not any("pool_extra" in k for k in flat)  # one pool (bucket-shaped) serves every graph
    res = train(cfg, progress=False, log=lambda s: None, resume=True)
    rows = _metrics(cfg.run.out_dir)
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and res["bad_steps"] == 0
    assert [("eval" in r) for r in rows] == [True, False, False, True]
    assert all(0.0 <= r["eval"] <= 1.0 for r in rows if "eval" in r)
    with pytest.raises(AgentGraphError, match=r"net\.pool is a setting of net\.kind 'random_dag' or .*not of 'mlp'"):
        digits_cfg(tmp_path, net__pool=2)
