"""Continual meta-training pieces: permuted-task sequences (one permutation per task, shared by
its train batches and its held-out segment), the ``continual`` objective (the mean over tasks of
each task's held-out loss), and the config's checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError
from agentgraph.data.classification import sample_permuted_sequence
from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.objectives import continual
from agentgraph.network import prediction_loss


def test_permuted_sequence_segments_share_their_permutation():
    d, S, K, B, C = 6, 3, 6, 2, 9
    x = jnp.tile(jnp.arange(d, dtype=jnp.float32), (5, 1)) + 100 * jnp.arange(5.0)[:, None]  # row r: 100 r + pixel
    t = sample_permuted_sequence(jax.random.PRNGKey(0), x, jnp.arange(5) % 2, 2, S, K, B, C)
    pix = np.asarray(t["train"]["x"]) % 100  # [K, B, d]: the pixel order of every example
    cv = np.asarray(t["cv"]["x"]) % 100
    perms = [pix[s * (K // S)][0] for s in range(S)]
    for s in range(S):
        assert sorted(perms[s].tolist()) == list(range(d))
        assert (pix[s * (K // S):(s + 1) * (K // S)] == perms[s]).all()
        assert (cv[s * (C // S):(s + 1) * (C // S)] == perms[s]).all()
    assert len({tuple(p.tolist()) for p in perms}) == S  # a fresh order per task


def test_continual_objective_is_the_mean_over_tasks():
    cfg = parse_config({"net": {"sizes": [64, 10]}, "data": {"task": "digits", "image_size": 8, "cv_batch": 30,
                                                             "continual": {"tasks": 3}},
                        "protocol": {"rule": "sgd", "lr": 0.1}, "meta": {"inner_steps": 6, "objective": "continual"}})
    ctx = make_context(cfg)
    from agentgraph.meta.tasks import task_family

    task = task_family(cfg).sample(jax.random.PRNGKey(1))
    state = ctx.start(ctx.fresh(jax.random.PRNGKey(2)), 8)
    loss, aux = continual().final(ctx, ctx.program, ctx.params({}, {}), state, task, None)
    s, _ = ctx.program.forward(ctx.params({}, {}), ctx.program.resize(state, 30), task["cv"])
    per = prediction_loss(ctx.predict(s), task["cv"]["y"], ctx.readout_kind)
    np.testing.assert_allclose(float(loss), np.mean([per[10 * i:10 * (i + 1)].mean() for i in range(3)]), rtol=1e-6)
    assert 0.0 <= float(aux["cv"]) <= 1.0


def test_sequence_must_divide_the_inner_loop():
    with pytest.raises(AgentGraphError, match=r"data\.continual\.tasks 4 must divide meta\.inner_steps \(10\)"):
        parse_config({"net": {"sizes": [64, 10]}, "data": {"task": "digits", "image_size": 8, "continual": {"tasks": 4}},
                      "meta": {"inner_steps": 10}})
