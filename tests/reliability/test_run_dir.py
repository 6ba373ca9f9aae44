"""Faults around a run directory: two writers, a killed lock holder, resuming a finished, moved,
extended or changed run, a torn metrics line, an out-dir that is a file, a read-only or full
disk, a checkpoint that cannot be written mid-run."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from agentgraph import AgentGraphError
from agentgraph import checkpoint as ckpt
from agentgraph import rundir
from agentgraph.cli import main
from agentgraph.meta.train import train
from faults import REPO, kill9, metric_rows, probe, run_files, tiny, tiny_cfg, wait_for, write_yaml

quiet = dict(progress=False, log=lambda s: None)


def test_second_writer_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    d = tmp_path / "run"
    cfg = tiny_cfg(d)
    with rundir.locked(str(d)):  # this process writes d: a second train() on it must not start
        probe("concurrency", "second writer in one process", lambda: train(cfg, **quiet),
              match=rf"in use by process {os.getpid()} ")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from agentgraph.rundir import locked
        with locked({str(d)!r}):
            print("held", flush=True)
            time.sleep(600)
    """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    probe("concurrency", "second writer in another process", lambda: train(cfg, **quiet),
          match=rf"in use by process {holder.pid} on .*wait for that run to end")
    kill9(holder)  # kill -9: the kernel drops the lock with the process
    probe("concurrency", "lock of a kill -9'd process", lambda: train(cfg, **quiet), expect="ran",
          verify=lambda r: r["steps"] == 6 and ckpt.latest(d).endswith("ckpt_00000005.npz"))
    assert [r["step"] for r in metric_rows(d)] == list(range(6))


def test_resume_finished_extended_moved_and_changed_runs(tmp_path, capsys):
    a = tmp_path / "a"
    cfg_path = write_yaml(tmp_path / "c.yaml", tiny(a, **{"meta.meta_steps": 4}))
    assert main(["train", cfg_path, "--no-progress"]) == 0
    capsys.readouterr()
    # a finished run: says so, exit 0, nothing written
    before = run_files(a)
    probe("resume", "--resume of a finished run", lambda: main(["train", cfg_path, "--resume", "--no-progress"]),
          expect="ran", verify=lambda rc: rc == 0 and run_files(a) == before)
    assert "already finished" in capsys.readouterr().out
    # moved and extended: allowed, and the moved run continues exactly
    b = tmp_path / "moved"
    shutil.move(a, b)
    probe("resume", "moved and extended run", lambda: main(["train", cfg_path, "--out-dir", str(b), "--resume",
                                                            "--meta-steps", "6", "--no-progress"]),
          expect="ran", verify=lambda rc: rc == 0 and ckpt.latest(b).endswith("ckpt_00000005.npz"))
    out = capsys.readouterr().out
    assert "run.out_dir changed" in out and "meta.meta_steps changed: 4 -> 6" in out
    ref = tmp_path / "ref"
    train(tiny_cfg(ref), **quiet)  # uninterrupted, 6 steps
    assert metric_rows(b) == metric_rows(ref)
    flat_b, _ = ckpt.load(ckpt.latest(b))
    flat_r, _ = ckpt.load(ckpt.latest(ref))
    assert all(np.array_equal(flat_b[k], flat_r[k]) for k in flat_r)
    # a change that matters: refused, every differing field named with both values
    changed = tiny_cfg(b, **{"meta.meta_lr": 2e-3, "run.seed": 1, "meta.meta_steps": 8})
    probe("resume", "changed config", lambda: train(changed, resume=True, **quiet),
          match=r"meta\.meta_lr: checkpoint 0\.001, now 0\.002\n  run\.seed: checkpoint 0, now 1\n")


def test_torn_metrics_line_and_max_steps(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path / "r", **{"run.checkpoint_every": 1})
    train(cfg, max_steps=3, **quiet)
    path = os.path.join(cfg.run.out_dir, "metrics.jsonl")
    with open(path, "a") as f:
        f.write('{"step": 3, "meta_lo')  # a kill while appending step 3
    probe("resume", "torn last metrics line", lambda: train(cfg, resume=True, **quiet), expect="ran",
          verify=lambda r: [x["step"] for x in metric_rows(cfg.run.out_dir)] == list(range(6)))
    with open(path) as f:
        lines = f.read().splitlines()
    lines[2] = "garbage"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    probe("resume", "garbage metrics line", lambda: train(cfg.model_copy(update={"meta": cfg.meta.model_copy(
        update={"meta_steps": 7})}), resume=True, **quiet), match=r"metrics\.jsonl', line 3, is unreadable")
    probe("arguments", "max_steps 0", lambda: train(cfg, max_steps=0, **quiet), match=r"max_steps \(--max-steps\)")
    with pytest.raises(SystemExit) as e:  # argparse: usage line and exit 2, no traceback
        main(["train", "x.yaml", "--max-steps", "0"])
    assert e.value.code == 2 and "is not positive" in capsys.readouterr().err


def test_out_dir_that_is_a_file_read_only_full_or_failing_mid_run(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("not a directory")
    probe("io", "out-dir is a file", lambda: train(tiny_cfg(f), **quiet), match=r"is a file, not a directory")
    probe("io", "out-dir below a file", lambda: train(tiny_cfg(f / "run"), **quiet),
          match=r"(is a file|not a directory).*run\.out_dir")

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:  # tests may run as root, which ignores permission bits
        m.setattr(rundir.tempfile, "mkstemp", read_only)
        probe("io", "read-only out-dir", lambda: train(tiny_cfg(tmp_path / "ro"), **quiet),
              match=r"'.*ro': the file system is read-only.*\(run\.out_dir\)")
    with monkeypatch.context() as m:
        m.setattr(rundir.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
        probe("io", "full disk (up front)", lambda: train(tiny_cfg(tmp_path / "full"), **quiet),
              match=r"0\.0 MiB free but this run's checkpoints need")
    # the disk fills up during the run: the save fails cleanly, the last good checkpoint stays
    cfg = tiny_cfg(tmp_path / "mid", **{"run.checkpoint_every": 1})
    real, calls = ckpt.write_npz, []

    def fills_up(fh, arrays, **k):
        calls.append(1)
        if len(calls) == 3:
            fh.write(b"PK\x03\x04partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fh, arrays, **k)

    with monkeypatch.context() as m:
        m.setattr(ckpt, "write_npz", fills_up)
        probe("io", "disk full while saving", lambda: train(cfg, **quiet),
              match=r"ckpt_00000002\.npz': the disk is full.*Nothing was replaced.*last good checkpoint is "
                    r".*ckpt_00000001\.npz")
    assert ckpt.latest(cfg.run.out_dir).endswith("ckpt_00000001.npz")
    assert [n for n in os.listdir(cfg.run.out_dir) if ".tmp-" in n] == []
    probe("io", "resume after the disk was freed", lambda: train(cfg, resume=True, **quiet), expect="ran",
          verify=lambda r: r["steps"] == 4 and ckpt.latest(cfg.run.out_dir).endswith("ckpt_00000005.npz"))


@pytest.mark.slow
def test_two_train_processes_on_one_directory(tmp_path):
    """Two `agentgraph train` started together on one --out-dir: one runs, the other is refused
    naming it; the run that ran is complete and nothing of it is overwritten."""
    from faults import start

    d = tmp_path / "run"
    path = write_yaml(tmp_path / "c.yaml", tiny(d, **{"meta.meta_steps": 30, "run.checkpoint_every": 1}))
    a, b = start("train", path, "--no-progress"), start("train", path, "--no-progress")
    outs = {p.pid: (p.wait(timeout=300), p.communicate()) for p in (a, b)}
    codes = sorted(rc for rc, _ in outs.values())
    refused = [(pid, err) for pid, (rc, (out, err)) in outs.items() if rc == 2]

    def one_ran():
        assert codes == [0, 2], outs
        winner = a.pid if refused[0][0] == b.pid else b.pid
        assert f"in use by process {winner} " in refused[0][1]
        return [r["step"] for r in metric_rows(d)]

    probe("concurrency", "two train processes at once", one_ran, expect="ran", verify=lambda s: s == list(range(30)))
