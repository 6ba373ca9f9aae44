"""Multi-process runs (issue 35), two local CPU processes (slow: each start compiles): processes
started with different process counts or configs stop naming the difference; a peer killed
mid-run ends the other with a clear error within ``--peer-timeout``; a restarted job resumes,
in every process, from the last checkpoint process 0 wrote (process 1 reads no run directory)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from faults import REPO, record, tiny, write_yaml

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(path: str, per_process: list[list[str]], kill: tuple[int, float] | None = None,
            timeout: float = 240) -> list[tuple[int, str, float]]:
    """Start one ``agentgraph train`` per entry of ``per_process`` (its extra flags; ``PORT`` is
    replaced by a free port); ``kill=(i, s)`` kills process ``i`` after ``s`` seconds. Returns
    ``(exit status, output, seconds)`` per process."""
    port = str(_port())
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    base = [sys.executable, "-m", "agentgraph.cli", "train", path, "--no-progress", "--coordinator", f"127.0.0.1:{port}",
            "--distributed-timeout", "60", "--peer-timeout", "10"]
    t0 = time.monotonic()
    procs = [subprocess.Popen(base + flags, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for flags in per_process]
    if kill is not None:
        time.sleep(kill[1])
        procs[kill[0]].kill()
    out = []
    for p in procs:
        try:
            text = p.communicate(timeout=timeout)[0]
        except subprocess.TimeoutExpired:
            p.kill()
            text = p.communicate()[0] + "\n[hung]"
        out.append((p.returncode, text, time.monotonic() - t0))
    return out


def _ids(n: int, *extra: str) -> list[list[str]]:
    return [["--num-processes", str(n), "--process-id", str(i), *extra] for i in range(n)]


def _outcome(results, i: int, pattern: str) -> str:
    import re

    rc, text, _ = results[i]
    if rc in (2, 4) and re.search(pattern, text) and "Traceback" not in text:
        return "error"
    return "crash" if rc not in (0, 2, 4) or "Traceback" in text else "silent"


def test_processes_with_other_counts_or_configs_stop_naming_the_difference(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", tiny(tmp_path / "r", **{"meta.outer_batch": 2}))
    res = _launch(path, [["--num-processes", "2", "--process-id", "0"], ["--num-processes", "3", "--process-id", "1"]])
    outcomes = [_outcome(res, i, r"started with --num-processes \d, process \d with \d") for i in (0, 1)]
    record("multi-host", "process counts differ", "error" if outcomes == ["error", "error"] else "crash", res[1][1][-300:])
    assert outcomes == ["error", "error"], res
    res = _launch(path, [_ids(2)[0], _ids(2, "--set", "meta.meta_lr=0.5")[1]])
    outcomes = [_outcome(res, i, r"different settings:\n  meta\.meta_lr: process \d") for i in (0, 1)]
    record("multi-host", "configs differ", "error" if outcomes == ["error", "error"] else "crash", res[0][1][-300:])
    assert outcomes == ["error", "error"], res


def test_a_killed_peer_ends_the_other_with_a_clear_error_in_bounded_time(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", tiny(tmp_path / "r", **{"meta.outer_batch": 2, "meta.meta_steps": 10**6,
                                                                    "run.checkpoint_every": 10**5}))
    # process 1 killed: the heartbeat names it; process 0 killed: the coordination service it hosts goes
    # with it, JAX's client in the other worker aborts, and that process's supervisor says so
    for killed, survivor in ((1, 0), (0, 1)):
        res = _launch(path, _ids(2, "--out-dir", str(tmp_path / f"r{killed}")), kill=(killed, 30.0), timeout=120)
        rc, text, seconds = res[survivor]
        named = (f"process {killed} of 2 stopped answering" if killed else
                 "process 1 of 2 stopped: JAX's coordination client aborted: the coordination service that process 0 hosts")
        outcome = _outcome(res, survivor, named)
        if outcome == "error" and seconds > 30 + 10 + 30:  # the kill, --peer-timeout, slack
            outcome = "silent"
        record("multi-host", f"process {killed} killed mid-run", outcome, text[-300:])
        assert outcome == "error" and rc == 4, (seconds, text[-2000:])


def test_a_restarted_job_resumes_from_process_0s_checkpoint_in_every_process(tmp_path):
    from agentgraph import checkpoint as ckpt

    cfg = tiny(tmp_path / "r", **{"meta.outer_batch": 2, "meta.meta_steps": 2, "run.checkpoint_every": 1})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    first = _launch(path, _ids(2))
    assert [r[0] for r in first] == [0, 0], first
    # the restart: process 1 sees no run directory of its own; both must continue from process 0's meta-step 1
    again = _launch(path, [_ids(2, "--resume", "--meta-steps", "4")[0],
                           _ids(2, "--resume", "--meta-steps", "4", "--out-dir", str(tmp_path / "elsewhere"))[1]])
    ok = [r[0] for r in again] == [0, 0] and not os.path.exists(tmp_path / "elsewhere")
    rows = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    single = tmp_path / "single"
    write_yaml(tmp_path / "s.yaml", {**cfg, "meta": {**cfg["meta"], "meta_steps": 4}, "run": {**cfg["run"],
                                                                                              "out_dir": str(single)}})
    s = subprocess.run([sys.executable, "-m", "agentgraph.cli", "train", str(tmp_path / "s.yaml"), "--no-progress"],
                       cwd=REPO, capture_output=True, text=True, timeout=240, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    a, header = ckpt.load(ckpt.latest(tmp_path / "r"))
    b, _ = ckpt.load(ckpt.latest(single))
    same = s.returncode == 0 and header["step"] == 3 and all(
        np.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in b if "trainable" in k)
    outcome = "ran" if ok and len(rows) == 4 and same else "silent"
    record("multi-host", "restarted job resumes from process 0's checkpoint", outcome, again[1][1][-300:])
    assert outcome == "ran", (again, rows)
