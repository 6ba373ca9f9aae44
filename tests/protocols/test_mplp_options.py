"""MPLP's meta-training options (agentgraph.protocols.mplp: imitation warm start, gradient
input) and the unroll curriculum, and the recording kinds they rest on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, mlp, random_dag
from agentgraph import checkpoint as ckpt
from agentgraph.meta.context import make_context
from agentgraph.meta.train import train
from agentgraph.protocols import gradient
from agentgraph.network import with_weights
from agentgraph.protocols.recording import recording_kinds

from helpers import _metrics, digits_cfg


def with_params(state, w, b):
    return with_weights(state, {"synapse": {"w": w}, "bias": {"b": b}})

pytest.importorskip("sklearn")


@pytest.mark.parametrize("graph", [mlp([3, 4, 2], activation="tanh", loss="cross_entropy", seed=1),
                                   random_dag(3, 5, 2, edge_prob=0.5, loss="l2", seed=2)],
                         ids=["mlp", "random_dag"])
def test_recorded_gradient_protocol_updates_are_per_example_sgd_steps(graph):
    """The recorded per-example updates average to the SGD step that jax.grad gives, and the
    recorded inbox of every bias is dL/dz per example."""
    with jax.enable_x64(True):
        prog = compile(graph.with_kinds(recording_kinds(graph.kinds)), dtype=jnp.float64)
        plain = compile(graph, dtype=jnp.float64)
        B = 5
        rng = np.random.default_rng(0)
        n_in, n_out = len(graph.agents("input")), len(graph.agents("target"))
        y = np.eye(n_out)[rng.integers(0, n_out, B)] if graph.agents("softmax") else rng.normal(size=(B, n_out))
        batch = {"x": rng.normal(size=(B, n_in)), "y": y}
        lr = 0.3
        s0 = prog.init(B)
        s1, _ = prog.step(gradient.params(graph, lr), s0, batch)
        p1, _ = plain.step(gradient.params(graph, lr), plain.init(B), batch)
        np.testing.assert_allclose(s1["synapse"]["w"], p1["synapse"]["w"], atol=1e-12)  # recording changes nothing
        np.testing.assert_allclose(s0["synapse"]["w"] + s1["synapse"]["upd_w"].mean(1), p1["synapse"]["w"], atol=1e-12)
        np.testing.assert_allclose(s0["bias"]["b"] + s1["bias"]["upd_b"].mean(1), p1["bias"]["b"], atol=1e-12)

        def loss_of_z_shift(eps):  # dL_b/dz_j per example through a shift of every bias per example
            st = plain.init(B)
            b = st["bias"]["b"][:, None] + eps
            tot = 0.0
            for i in range(B):
                one = jax.tree.map(lambda v: v[i:i + 1], batch)
                st1 = with_params(plain.init(1), st["synapse"]["w"], b[:, i])
                tot = tot + plain.forward(None, st1, one)[1]
            return tot

        dz = jax.grad(loss_of_z_shift)(jnp.zeros((len(graph.agents("bias")), B)))
        np.testing.assert_allclose(s1["bias"]["in_m"][..., 0], dz, atol=1e-10)
        np.testing.assert_allclose(s1["bias"]["upd_b"], -lr * dz, atol=1e-10)


def test_imitation_warm_start_fits_the_gradient_protocols_messages_and_updates(tmp_path):
    from agentgraph.meta.tasks import task_family
    from agentgraph.meta.train import init_training
    from agentgraph.protocols.mplp.imitation import make_imitation, task_imitation_loss

    cfg = digits_cfg(tmp_path, protocol__imitation_steps=60, protocol__imitation_lr=0.5, protocol__imitation_unroll=2,
                     protocol__imitation_meta_lr=1e-2, meta__meta_steps=62, meta__outer_batch=1, meta__meta_lr=3e-3,
                     protocol__calibration_rounds=1)
    res = train(cfg, progress=False, log=lambda s: None)
    rows = _metrics(cfg.run.out_dir)
    assert [r.get("warm_start", False) for r in rows] == [True] * 60 + [False] * 2 and res["bad_steps"] == 0
    ctx = make_context(cfg)
    fam = task_family(cfg)
    imit = make_imitation(ctx, ctx.protocol.settings)
    w0 = jax.tree.map(lambda v: v[0], ctx.pool(jax.random.PRNGKey(1), 1))
    fresh = init_training(ctx, fam)
    tree, _ = ckpt.load(res["checkpoint"], fresh)

    one = jax.jit(lambda tr, nm, task: task_imitation_loss(tr, nm, ctx, task, w0, imit))

    def objective(learned, norm):
        vals = [one(learned, norm, fam.sample(jax.random.PRNGKey(i))) for i in range(3)]
        return np.mean([float(v[0]) for v in vals]), np.mean([float(v[1]["cv"]) for v in vals])

    before, msg_before = objective(fresh.trainable["protocol"], fresh.stats)
    after, msg_after = objective(jax.tree.map(jnp.asarray, tree.trainable["protocol"]), tree.stats)
    assert after < 0.7 * before, (before, after)
    assert msg_after < 0.8 * msg_before, (msg_before, msg_after)  # messages turned towards backprop's (60 steps)


def test_imitation_starts_with_updates_the_size_of_sgds(tmp_path):
    from agentgraph.meta.tasks import task_family
    from agentgraph.meta.train import init_training
    from agentgraph.protocols import mplp
    from agentgraph.protocols.mplp.imitation import make_imitation

    cfg = digits_cfg(tmp_path, protocol__imitation_steps=5, protocol__imitation_lr=2.0, protocol__calibration_rounds=1,
                     protocol__sharing="group")
    ctx = make_context(cfg)
    fam = task_family(cfg)
    ts = init_training(ctx, fam)
    imit = make_imitation(ctx, ctx.protocol.settings)
    params = ctx.params(ts.trainable["protocol"], ts.stats)
    task = fam.sample(jax.random.fold_in(jax.random.split(jax.random.PRNGKey(cfg.run.seed), 4)[2], 1))
    batch = jax.tree.map(lambda v: v[0], task["train"])
    w0 = jax.tree.map(lambda v: v[0], ts.pool)
    t, _ = imit.teacher.step({g: {"lr": 2.0} for g in ctx.base.graph.groups()}, with_weights(imit.teacher.init(8), w0), batch)
    s, _ = imit.student.step(params, with_weights(imit.student.init(8), w0), batch)
    for g, (kn, rows) in imit.update_groups.items():  # group sharing: one learner, one scale per group
        mine = (s[kn]["raw"][rows] - params[g]["out_mean"]) * params[g]["out_scale"]
        ratio = float(jnp.sqrt(jnp.mean(mine ** 2) / jnp.mean(t[kn]["upd_" + mplp.PARAM_FIELDS[kn]][rows] ** 2)))
        assert abs(ratio - 1) < 1e-3, (g, ratio)


def test_gradient_input_is_the_per_example_sgd_step_and_fades_out(tmp_path):
    from agentgraph.protocols.mplp.gradient_input import eval_scale, train_scale, with_gradient

    cfg = digits_cfg(tmp_path, protocol__grad_input="train", protocol__grad_input_anneal=10)
    ctx = make_context(cfg)
    B = 4
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(B, 64)).astype(np.float32), "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, B)]}
    w = 0.05 * jax.random.normal(jax.random.PRNGKey(0), (640,))
    b = jnp.zeros(10)
    s = with_gradient(ctx, with_params(ctx.program.init(B), w, b), batch, 0.5)

    def loss(w, b, i):
        one = jax.tree.map(lambda v: v[i:i + 1], batch)
        return ctx.plain.forward(None, with_params(ctx.plain.init(1), w, b), one)[1]

    for i in range(B):
        gw, gb = jax.grad(loss, argnums=(0, 1))(w, b, i)
        np.testing.assert_allclose(s["synapse"]["grad"][:, i], -0.5 * gw, atol=1e-6)
        np.testing.assert_allclose(s["bias"]["grad"][:, i], -0.5 * gb, atol=1e-6)
    assert [train_scale("train", 10, t) for t in (10, 20)] == [None, None]  # faded out: no gradient protocol run
    assert [float(train_scale("train", 10, t)) for t in (0, 5)] == [1.0, 0.5]
    assert eval_scale("train") is None
    assert train_scale("always", 10, 1000) == 1.0 and eval_scale("always") == 1.0
    assert ctx.protocol.stage(3) == "feed" and ctx.protocol.stage(10) is None and ctx.protocol.stage(None) is None
    assert ctx.protocol.gradient_free and not make_context(digits_cfg(tmp_path, protocol__grad_input="always")).protocol.gradient_free
    cfg = digits_cfg(tmp_path, protocol__grad_input="train", protocol__grad_input_anneal=2, meta__meta_steps=3,
                     protocol__calibration_rounds=1)
    res = train(cfg, progress=False, log=lambda s: None)
    assert res["bad_steps"] == 0 and len(_metrics(cfg.run.out_dir)) == 3


def test_unroll_curriculum_is_validated(tmp_path):
    """(The curriculum lengthening the inner loop, through a resume, is the next test.)"""
    cfg = digits_cfg(tmp_path, schedules__unroll=[[0, 2], [3, 4], [5, 5]])
    assert [cfg.schedules.unroll_at(t, cfg.meta.inner_steps) for t in range(7)] == [2, 2, 2, 4, 4, 5, 5]
    for bad, match in (([[1, 2]], "start at meta-step 0"), ([[0, 2], [0, 3]], "strictly increasing"),
                       ([[0, 9]], "must not exceed inner_steps")):
        with pytest.raises(AgentGraphError, match=match):
            digits_cfg(tmp_path, schedules__unroll=bad)


def test_resume_through_imitation_and_curriculum_equals_uninterrupted(tmp_path):
    kw = dict(meta__meta_steps=6, run__checkpoint_every=2, protocol__imitation_steps=2, protocol__imitation_unroll=2,
              protocol__imitation_meta_lr=1e-2, schedules__unroll=[[0, 3], [2, 5]], protocol__calibration_rounds=1)
    a, b = digits_cfg(tmp_path / "a", **kw), digits_cfg(tmp_path / "b", **kw)
    train(a, progress=False, log=lambda s: None)
    train(b, progress=False, max_steps=3, log=lambda s: None)  # stopped inside the curriculum's first stage
    train(b, resume=True, progress=False, log=lambda s: None)
    ra, rb = _metrics(a.run.out_dir), _metrics(b.run.out_dir)
    assert [r["meta_loss"] for r in ra] == [r["meta_loss"] for r in rb]
    assert [r.get("warm_start", False) for r in ra] == [True, True, False, False, False, False]
    assert [r.get("unroll") for r in ra] == [None, None, 3, 3, 5, 5]
    ta, _ = ckpt.load(ckpt.latest(a.run.out_dir))
    tb, _ = ckpt.load(ckpt.latest(b.run.out_dir))
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)


def test_imitation_cosine_has_a_finite_gradient_for_huge_and_zero_vectors():
    """Messages whose squared sum overflows float32 (a CNN's teacher, first imitation step) and
    all-zero updates once made the warm start's meta-gradient NaN."""
    from agentgraph.protocols.mplp.imitation import _cos_err

    big = jnp.full((64, 8), 3e19, jnp.float32)
    for a, b in ((big, big * 0.5), (big, jnp.zeros_like(big)), (jnp.ones(5), jnp.ones(5))):
        v, g = jax.value_and_grad(_cos_err)(a, b)
        assert np.isfinite(float(v)) and bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_allclose(float(_cos_err(big, big * 0.5)), 0.0, atol=1e-6)  # parallel: cos 1
