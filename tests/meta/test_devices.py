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
from helpers import child_env

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs in both processes: three meta-steps of each optimiser from the same start; prints the
# flattened meta-parameters and metrics as JSON.
SCRIPT = r"""
import json, sys
import jax, numpy as np
from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.optimizers import make_meta_step
from agentgraph.meta.tasks import task_family
from agentgraph.meta.train import init_training_shapes

def run(opt, steps=3):
    cfg = parse_config({"data": {"task": "sinusoid", "cv_batch": 20}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        "protocol": {"rule": "sgd", "lr": 0.1},
        "meta": {"inner_steps": 2, "batch": 4, "outer_batch": 4, "prior_pool": 4, "maml": True,
                 "objective": "heldout", "meta_lr": 1e-2, "optimizer": opt},
        "run": {"out_dir": "unused"}})
    ctx = make_context(cfg)
    ts = init_training_shapes(ctx)
    step = make_meta_step(ctx, task_family(cfg))
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
    flags = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n_devices}").strip()
    env = child_env(XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
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
    ts = init_training_shapes(make_context(cfg))
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_match_one_process_with_the_same_global_batch(tmp_path):
    """``agentgraph train --coordinator`` with 2 processes (one CPU device each, gloo collectives):
    the outer batch of 2 tasks split over them gives the meta-parameters one process computes on
    both tasks; only process 0 writes the run directory."""
    import yaml

    from agentgraph import checkpoint as ckpt

    cfg = {"data": {"task": "sinusoid", "cv_batch": 20}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
           "protocol": {"rule": "sgd", "lr": 0.1},
           "meta": {"inner_steps": 2, "batch": 4, "outer_batch": 2, "prior_pool": 2, "maml": True,
                    "objective": "heldout", "meta_lr": 1e-2, "meta_steps": 3},
           "run": {"out_dir": str(tmp_path / "unused"), "checkpoint_every": 3}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = child_env(JAX_PLATFORMS="cpu")
    base = [sys.executable, "-m", "agentgraph.cli", "train", str(path), "--no-progress"]
    port = _free_port()
    procs = [subprocess.Popen(base + ["--out-dir", str(tmp_path / "multi"), "--coordinator", f"127.0.0.1:{port}",
                                      "--num-processes", "2", "--process-id", str(i), "--distributed-timeout", "120"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 0)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    single = subprocess.run(base + ["--out-dir", str(tmp_path / "single")], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stdout + single.stderr
    a, _ = ckpt.load(ckpt.latest(tmp_path / "multi"))
    b, _ = ckpt.load(ckpt.latest(tmp_path / "single"))
    keys = [k for k in b if "trainable" in k]
    assert keys and sorted(a) == sorted(b)
    for k in keys:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7)
    # process 1 printed no summary of its own checkpoint and wrote nothing: one metrics file, 3 rows
    assert len((tmp_path / "multi" / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_coordinator_that_never_answers_is_a_clear_error_not_a_hang():
    from agentgraph.meta.devices import init_distributed

    with pytest.raises(AgentGraphError, match=r"coordinator 127.0.0.1:\d+ did not answer within 1 s.*--process-id 0"):
        init_distributed(f"127.0.0.1:{_free_port()}", 2, 1, timeout_s=1.0)
