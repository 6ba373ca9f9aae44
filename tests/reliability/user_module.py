"""A user's own code for the fault-injection suite (``tests/reliability/test_user_code.py``):
protocol factories, network builders and task factories that fail in the ways user code does.
Named in configs as ``"user_module:<function>"`` (the tests put this directory on ``sys.path``)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from agentgraph.meta.tasks import TaskFamily, sinusoid_family
from agentgraph.protocols.gradient import sgd


def proto_raises(lr: float = 0.1):
    raise RuntimeError("boom in my factory")


def proto_wrong_type(lr: float = 0.1):
    return {"not": "a protocol"}


def proto_bad_shape(lr: float = 0.1):
    def params(learned, stats, graph):
        return {g: {"lr": jnp.zeros(7)} for g in graph.groups()}  # one rate per group expected, 7 given

    return dataclasses.replace(sgd(lr), name="bad_shape", init=lambda key, graph: {"w": jnp.zeros(3)}, params=params)


def proto_params_raises(lr: float = 0.1):
    def params(learned, stats, graph):
        raise KeyError("oops in params")

    return dataclasses.replace(sgd(lr), name="params_raises", init=lambda key, graph: {"w": jnp.zeros(3)},
                               params=params)


def net_raises(seed: int = 0):
    raise ValueError("my builder broke")


def net_wrong_type(seed: int = 0):
    return [1, 2, 3]


def net_three_inputs(seed: int = 0):
    from agentgraph.builders import mlp_network

    return mlp_network([3, 4, 1], loss="l2", seed=seed)


def net_huge_repeat(seed: int = 0):
    from agentgraph.arrows import Phase, Schedule
    from agentgraph.builders import grid
    from agentgraph.models.nca import NCACell

    g = grid(2, 2, NCACell(channels=4, hidden=8), repeat=100_000)
    assert g.schedule == Schedule((Phase("tick", repeat=100_000, loss=True),))
    return g


def task_raises(cfg):
    raise ZeroDivisionError("my task broke")


def task_wrong_type(cfg):
    return "a task"


def _family(sample) -> TaskFamily:
    return TaskFamily(sample=sample, eval_sample=sample, n_in=1, n_out=1, classification=False)


def task_untraceable(cfg):
    fam = sinusoid_family(cfg)

    def sample(key):
        int(np.asarray(key)[0])  # reads the traced key as a number
        return fam.sample(key)

    return _family(sample)


def task_sampler_raises(cfg):
    def sample(key):
        raise IndexError("sampler broke")

    return _family(sample)


def task_few_batches(cfg):
    fam = sinusoid_family(cfg)

    def sample(key):
        t = fam.sample(key)
        return {**t, "train": {k: v[:1] for k, v in t["train"].items()}}

    return _family(sample)


def task_two_inputs(cfg):
    fam = sinusoid_family(cfg)

    def sample(key):
        t = fam.sample(key)
        for part in ("train", "cv"):
            t[part]["x"] = jnp.concatenate([t[part]["x"]] * 2, -1)
        return t

    return TaskFamily(sample=sample, eval_sample=sample, n_in=2, n_out=1, classification=False)


def task_wrong_layout(cfg):
    return _family(lambda key: {"x": jnp.zeros((2, 3))})
