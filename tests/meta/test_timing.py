"""``agentgraph bench``'s timing: the timed meta-steps reuse the one executable compiled first."""

from __future__ import annotations

from agentgraph.meta.config import parse_config
from agentgraph.meta.timing import time_meta_steps


def test_timed_steps_do_not_recompile():
    # an uncommitted first state used to make the second timed step compile again, so a short
    # `agentgraph bench --steps 2` reported the mean of a step and a compile as its median
    cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 3, 1], "loss": "l2"},
                        "protocol": {"rule": "sgd"}, "meta": {"inner_steps": 2, "batch": 4, "maml": True,
                                                                "objective": "heldout", "prior_pool": 2}})
    r = time_meta_steps(cfg, steps=3)
    assert len(r["step_times_s"]) == 3
    assert r["compiles"] == 1
