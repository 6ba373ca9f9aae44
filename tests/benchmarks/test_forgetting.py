"""The forgetting benchmark's library: task sequences, learners, the accuracy matrix. The attention
protocol with attention ``w²/2`` run through ``protocol_learner`` gives optax SGD's matrix (same
fresh weights, same batches) — the protocol path and the baseline path agree."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from agentgraph.benchmarks.forgetting import (
    forgetting,
    optax_learner,
    permuted_tasks,
    protocol_learner,
    run_sequence,
    split_tasks,
)
from agentgraph.data import load_dataset
from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context


def _cfg(protocol=None):
    d = {"net": {"sizes": [64, 10], "activation": "sigmoid"}, "data": {"task": "digits", "image_size": 8}}
    return parse_config({**d, "protocol": protocol} if protocol else d)


def test_sequences_and_the_protocol_path_agree_with_optax():
    ds = load_dataset("digits")
    tasks = split_tasks(ds, [(0, 1), (2, 3)], test=100)
    assert [t.classes for t in tasks] == [(0, 1), (2, 3)]
    perm = permuted_tasks(ds, 2, seed=1, test=50)
    assert not np.allclose(perm[0].x_train, perm[1].x_train)
    np.testing.assert_allclose(np.sort(perm[0].x_train, 1), np.sort(perm[1].x_train, 1))  # same pixels, moved
    sgd = optax_learner(make_context(_cfg()), optax.sgd(0.5), "sgd")
    R = run_sequence(sgd, tasks, 30, jax.random.PRNGKey(0), 10)
    assert R.shape == (2, 2) and R[0, 0] > 0.9 and R[1, 1] > 0.9  # each task learned when it is trained
    ctx = make_context(_cfg({"rule": "attention", "lr": 0.5, "power": 2.0}))
    R2 = run_sequence(protocol_learner(ctx, ctx.params({}, {}), "attention"), tasks, 30, jax.random.PRNGKey(0), 10)
    np.testing.assert_allclose(R2, R, atol=0.011)  # at most one test example in 100 flips (float32 order)
    assert forgetting(R) == pytest.approx(R[0, 0] - R[1, 0])  # two tasks: the first one's drop


def test_split_tasks_names_missing_classes():
    with pytest.raises(AgentGraphError, match=r"classes \(10, 11\)"):
        split_tasks(load_dataset("digits"), [(10, 11)])
