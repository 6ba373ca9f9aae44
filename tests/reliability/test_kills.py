"""kill -9 at random points of meta-training and of saving: the run resumes and, for a fixed
seed, ends byte-identical to an uninterrupted run; a checkpoint being written never damages the
last good one. The default run kills once per scenario; ``-m slow`` kills many times."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from agentgraph import checkpoint as ckpt
from agentgraph.meta.train import train
from faults import REPO, kill9, metric_rows, probe, run_files, start, tiny, wait_for, write_yaml

STEPS = 200


def _config(tmp_path):
    """A run slow enough to be killed mid-way (a few ms per meta-step, a checkpoint every step)."""
    d = tmp_path / "run"
    data = tiny(d, **{"meta.meta_steps": STEPS, "meta.inner_steps": 4, "meta.batch": 8, "net.sizes": [1, 8, 1],
                      "run.checkpoint_every": 1, "run.keep": 2})
    return d, write_yaml(tmp_path / "c.yaml", data)


def _kill_and_resume(tmp_path, kills: int, seed: int) -> None:
    from agentgraph.meta.config import load_config

    d, path = _config(tmp_path)
    cfg = load_config(path)
    train(cfg, progress=False, log=lambda s: None)  # the uninterrupted reference, same directory name
    ref_files, ref_rows = run_files(d), metric_rows(d)
    shutil.move(d, tmp_path / "reference")
    rng = random.Random(seed)
    interrupted = 0
    for i in range(kills):
        args = ["train", path, "--no-progress"] + (["--resume"] if os.path.isdir(d) else [])
        done = ckpt.list_checkpoints(d)
        done = done[-1][0] if done else -1
        proc = start(*args)
        # kill at a random moment: after this process saved its first checkpoint most of the time
        # (inside meta-steps and saves), sometimes during its start-up (import, compile)
        if rng.random() < 0.8:
            got = wait_for(lambda: proc.poll() is not None or any(s > done for s, _ in ckpt.list_checkpoints(d)),
                           timeout=120)
            assert got
        time.sleep(rng.uniform(0, 0.3))
        finished = proc.poll() is not None
        kill9(proc)
        if finished:
            break
        interrupted += 1
    probe("kill -9", f"resume after {kills} kill(s) during training",
          lambda: train(cfg, resume=os.path.isdir(d), progress=False, log=lambda s: None), expect="ran",
          verify=lambda r: run_files(d) == ref_files and metric_rows(d) == ref_rows)
    assert interrupted >= 1  # at least one kill landed before the run's end


def test_kill_during_training_then_resume_is_byte_identical(tmp_path):
    _kill_and_resume(tmp_path, kills=1, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_many_kills_during_training_then_resume_is_byte_identical(tmp_path, seed):
    _kill_and_resume(tmp_path, kills=5, seed=seed)


_SAVER = textwrap.dedent("""
    import sys, numpy as np
    from agentgraph import checkpoint as ckpt
    d, start = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(start)
    tree = {"w": rng.normal(size=(256, 1024)), "opt": [rng.normal(size=(512, 512)), np.arange(3)]}
    print("ready", flush=True)
    for s in range(start, start + 10_000):
        tree["opt"][1] = np.array([s, s, s])
        ckpt.save_step(d, s, tree, {"step_was": s}, keep=2)
""")


def _kill_saves(tmp_path, kills: int, seed: int) -> None:
    d = tmp_path / "run"
    rng = random.Random(seed)
    step = 0
    for i in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(d), str(step)], cwd=REPO, stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.5))  # saves of ~3 MB: the kill lands inside one most of the time
        kill9(proc)

        def intact():
            found = ckpt.list_checkpoints(d)
            for s, p in found:  # every visible checkpoint is complete and verified
                tree, meta = ckpt.load(p)
                assert meta["step"] == s and tree["['opt'][1]"].tolist() == [s, s, s]
            return found

        found = probe("kill -9", "kill during checkpoint writes", intact, expect="ran",
                      verify=lambda f: len(f) >= (1 if step else 0))
        step = (found[-1][0] + 1) if found else step
    assert step > 0


def test_kill_during_saving_never_damages_the_last_checkpoint(tmp_path):
    _kill_saves(tmp_path, kills=2, seed=0)


@pytest.mark.slow
def test_many_kills_during_saving(tmp_path):
    _kill_saves(tmp_path, kills=25, seed=1)
