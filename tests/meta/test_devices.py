"""One code path from one device to many: the same meta-steps on 1 CPU device (this process) and
on 4 forced host devices (a subprocess with ``--xla_force_host_platform_device_count=4``) give
the same meta-parameters, for the gradient meta-optimiser (outer batch split over devices) and
for ES (population split over devices); a batch that does not split evenly is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from agentgraph import AgentGraphError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs in both processes: three meta-steps of each optimiser from the same start; prints the
# flattened meta-parameters and metrics as JSON.
SCRIPT = r"""
import json, sys
import jax, numpy as np
from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.step import make_meta_step
from agentgraph.meta.tasks import task_family
from agentgraph.meta.train import init_training_shapes

def run(opt, steps=3):
    cfg = parse_config({"data": {"task": "sinusoid", "cv_batch": 20}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        "protocol": {"rule": "sgd", "lr": 0.1},
        "meta": {"inner_steps": 2, "batch": 4, "outer_batch": 4, "prior_pool": 4, "maml": True,
                 "objective": "heldout", "meta_lr": 1e-2, "optimizer": opt},
        "run": {"out_dir": "unused"}})
    ctx = make_context(cfg)
    ts = init_training_shapes(cfg, ctx)
    step = make_meta_step(cfg, ctx, task_family(cfg))
    losses = []
    for s in range(steps):
        ts, m, status = step(ts, s, ctx.program)
        assert int(status) == 0
        losses.append(float(m["meta_loss"]))
    flat = np.concatenate([np.ravel(v) for v in jax.tree.leaves(ts.trainable)])
    return {"params": flat.tolist(), "losses": losses}

out = {"devices": jax.device_count(),
       "gradient": run({"kind": "gradient"}),
       "open_es": run({"kind": "es", "strategy": "open_es", "popsize": 8, "sigma": 0.05})}
try:
    run({"kind": "es", "strategy": "cma_es", "popsize": 6}, steps=1)
    out["indivisible"] = None
except Exception as e:
    out["indivisible"] = f"{type(e).__name__}: {e}"
print("RESULT " + json.dumps(out))
"""


def _run(n_devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n_devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def four():
    return _run(4)


@pytest.fixture(scope="module")
def one():
    return _run(1)


@pytest.mark.parametrize("opt", ["gradient", "open_es"])
def test_one_device_and_four_give_the_same_meta_parameters(one, four, opt):
    assert one["devices"] == 1 and four["devices"] == 4
    a, b = np.array(one[opt]["params"]), np.array(four[opt]["params"])
    start = np.array(_run_start())
    assert np.abs(a - start).max() > 1e-4  # the steps moved the meta-parameters
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(four[opt]["losses"], one[opt]["losses"], rtol=1e-5)


def _run_start():
    """The meta-parameters both runs start from (the learned prior of init_training_shapes)."""
    from agentgraph.meta.config import parse_config
    from agentgraph.meta.context import make_context
    from agentgraph.meta.train import init_training_shapes

    cfg = parse_config({"data": {"task": "sinusoid", "cv_batch": 20}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
                        "protocol": {"rule": "sgd", "lr": 0.1},
                        "meta": {"inner_steps": 2, "batch": 4, "outer_batch": 4, "prior_pool": 4, "maml": True,
                                 "objective": "heldout"}})
    ts = init_training_shapes(cfg, make_context(cfg))
    return np.concatenate([np.ravel(v) for v in jax.tree.leaves(ts.trainable)]).tolist()


def test_a_population_that_does_not_split_over_the_devices_is_refused(one, four):
    assert one["indivisible"] is None  # 6 candidates on one device: fine
    msg = four["indivisible"]
    assert msg.startswith("AgentGraphError") and "meta.optimizer.popsize = 6" in msg and "4 devices" in msg


def test_outer_batch_that_does_not_split_is_refused():
    from agentgraph.meta.devices import check_divisible, device_mesh

    mesh = device_mesh(jax.devices()[:1])
    check_divisible(3, mesh, "tasks", "meta.outer_batch")  # one device takes anything

    class Two:  # a stand-in mesh of two devices
        size = 2

    with pytest.raises(AgentGraphError, match=r"meta.outer_batch = 3 tasks cannot be split evenly over 2 devices.*2 or 4"):
        check_divisible(3, Two(), "tasks", "meta.outer_batch")
