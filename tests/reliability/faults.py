"""The fault-injection suite's shared pieces: a tiny run config, the outcome of a probe, the
tally the report script reads, and subprocess helpers for kills.

Every probe injects one fault and classifies what agentgraph did:

* ``ran``    — it ran and the result is right (the probe's own check passed);
* ``error``  — it raised :class:`~agentgraph.AgentGraphError` whose message names the culprit;
* ``crash``  — any other exception (a traceback from inside), or a hang;
* ``silent`` — it ran but the result is wrong, or it raised a message that names something else;
* ``lost``   — work that had been saved is gone or damaged.

Only ``ran`` and ``error`` pass. With ``AGENTGRAPH_FAULT_REPORT=<file>`` every probe appends
one JSON line there (``benchmarks/fault_injection.py`` runs the suite and counts them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import yaml

from agentgraph import AgentGraphError
from agentgraph.meta.config import apply_overrides, parse_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOOD = ("ran", "error")


def tiny(out_dir, **over) -> dict:
    """A meta-training config that compiles in seconds: MAML + SGD on the sinusoid, a (1, 4, 1)
    network, 2 inner steps; ``over`` sets dotted fields (``{"meta.meta_steps": 9}``)."""
    cfg = {"data": {"task": "sinusoid", "cv_batch": 20}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
           "protocol": {"rule": "sgd", "lr": 0.1},
           "meta": {"inner_steps": 2, "batch": 4, "meta_steps": 6, "prior_pool": 2, "maml": True,
                    "objective": "heldout", "meta_lr": 1e-3},
           "run": {"out_dir": str(out_dir), "checkpoint_every": 2, "seed": 0}}
    return apply_overrides(cfg, over)


def tiny_cfg(out_dir, **over):
    return parse_config(tiny(out_dir, **over))


def write_yaml(path, data: dict) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return str(path)


def record(fault_class: str, case: str, outcome: str, detail: str = "") -> None:
    report = os.environ.get("AGENTGRAPH_FAULT_REPORT")
    if report:
        with open(report, "a") as f:
            f.write(json.dumps({"class": fault_class, "case": case, "outcome": outcome, "detail": detail[:300]}) + "\n")


def probe(fault_class: str, case: str, fn: Callable[[], Any], *, expect: str = "error", match: str | None = None,
          verify: Callable[[Any], bool] | None = None) -> Any:
    """Run ``fn`` with one injected fault, classify the outcome, record it and assert it is good.

    ``expect="error"``: an :class:`AgentGraphError` whose message matches ``match`` (a regex);
    ``expect="ran"``: ``fn`` returns and ``verify(result)`` holds; ``expect="either"``: one of the
    two (hypothesis cases, where some generated inputs are valid).
    """
    result, detail = None, ""
    try:
        with _deadline(float(os.environ.get("AGENTGRAPH_FAULT_TIMEOUT", 240))):
            result = fn()
    except AgentGraphError as e:
        detail = str(e)
        outcome = "error" if expect in ("error", "either") and (match is None or re.search(match, detail)) else "silent"
    except Exception:  # noqa: BLE001 - what the suite exists to find
        detail = traceback.format_exc()
        outcome = "crash"
    else:
        if expect == "error":
            outcome, detail = "silent", f"returned {result!r:.200}"
        else:
            outcome = "ran" if verify is None or verify(result) else "silent"
            detail = detail or f"returned {result!r:.200}"
    record(fault_class, case, outcome, detail)
    assert outcome in GOOD, f"{fault_class} / {case}: {outcome}\n{detail}"
    return result


class Hung(Exception):
    """A probe that ran past its deadline (a hang, or a compile of minutes): a ``crash``."""


@contextlib.contextmanager
def _deadline(seconds: float):
    """Raise :class:`Hung` in the block after ``seconds`` (main thread, POSIX; else no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def hung(signum, frame):
        raise Hung(f"no result after {seconds:g} s (AGENTGRAPH_FAULT_TIMEOUT)")

    old = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def cli(*args: str, cwd: str = REPO, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``agentgraph <args>`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "agentgraph.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def start(*args: str, cwd: str = REPO) -> subprocess.Popen:
    """``agentgraph <args>`` started in the background (its output in pipes)."""
    return subprocess.Popen([sys.executable, "-m", "agentgraph.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill9(proc: subprocess.Popen) -> None:
    """``kill -9`` and reap."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def wait_for(cond: Callable[[], bool], timeout: float = 120, every: float = 0.02) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(every)
    return False


def run_files(d) -> dict[str, bytes]:
    """The checkpoints of a run directory, by name, as bytes."""
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d)) if f.endswith(".npz")}


def metric_rows(d) -> list[dict]:
    """``metrics.jsonl`` without the timing fields (wall clock and CPU)."""
    from agentgraph.rundir import TIMING_FIELDS, read_metrics

    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS}
            for r in read_metrics(os.path.join(d, "metrics.jsonl"))]
