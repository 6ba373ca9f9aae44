"""Run the fault-injection suite (tests/reliability, the slow probes included) and count what
happened: cases tried, clear errors, correct runs, crashes, silent wrong results, data lost.

    python benchmarks/fault_injection.py [--fast] [--before COMMIT] [--out benchmarks/results/fault_injection.json]

``--before COMMIT`` also runs today's probes against the code of COMMIT (a git worktree of it with
this checkout's tests/reliability copied in) and reports both counts, by class: what the new
probes found before they were fixed. A probe that hangs is stopped after
``AGENTGRAPH_FAULT_TIMEOUT`` seconds (240) and counted as a crash.

Every probe of the suite records one line (tests/reliability/faults.py); a probe that crashed,
went silent or lost data also fails its test, so the counts and the test outcome agree.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_suite(root: str, marks: str) -> dict:
    """Run ``tests/reliability`` of ``root`` (its code) with the pytest marks ``marks``; the counts.

    Example:
        >>> run_suite(ROOT, "not slow")["cases"] > 0  # doctest: +SKIP
        True
    """
    fd, report = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "pytest", "tests/reliability", "-q", "-n", "0", "-m", marks,
                          "-p", "no:cacheprovider"], cwd=root,
                         # PYTHONPATH: every process (also a CLI re-executed as a script) imports root's agentgraph,
                         # not an editable install's
                         env={**os.environ, "AGENTGRAPH_FAULT_REPORT": report,
                              "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)})
    with open(report) as f:
        rows = [json.loads(ln) for ln in f]
    os.remove(report)
    by_outcome = collections.Counter(r["outcome"] for r in rows)
    by_class: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in rows:
        by_class[r["class"]][r["outcome"]] += 1
    res = {"suite": marks, "pytest_exit_code": rc, "seconds": round(time.perf_counter() - t0, 1),
           "cases": len(rows), "outcomes": {k: by_outcome.get(k, 0) for k in ("ran", "error", "crash", "silent", "lost")},
           "by_class": {c: dict(v) for c, v in sorted(by_class.items())},
           "bad": [r for r in rows if r["outcome"] not in ("ran", "error")]}
    return res


def before(commit: str, marks: str) -> dict:
    """:func:`run_suite` of today's probes against the code of ``commit`` (a temporary worktree)."""
    import shutil

    tree = tempfile.mkdtemp(prefix="fault_injection_before_")
    subprocess.check_call(["git", "worktree", "add", "--detach", "-f", tree, commit], cwd=ROOT,
                          stdout=subprocess.DEVNULL)
    try:
        shutil.rmtree(os.path.join(tree, "tests", "reliability"), ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, "tests", "reliability"), os.path.join(tree, "tests", "reliability"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        return {"commit": commit, **run_suite(tree, marks)}
    finally:
        subprocess.call(["git", "worktree", "remove", "--force", tree], cwd=ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="only the probes of the default test run")
    ap.add_argument("--before", default=None, metavar="COMMIT", help="also run today's probes on COMMIT's code")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "fault_injection.json"))
    args = ap.parse_args()
    marks = "not slow" if args.fast else "slow or not slow"
    res = run_suite(ROOT, marks)
    if args.before:
        res["before"] = before(args.before, marks)
    for name, r in (("before", res.get("before")), ("after", res)):
        if r is None:
            continue
        print(f"{name}:", json.dumps({k: v for k, v in r.items() if k not in ("bad", "before")}, indent=2))
        for b in r["bad"]:
            print(f"  BAD {b['class']} / {b['case']}: {b['outcome']}: {b['detail'][:200]}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    return res["pytest_exit_code"]


if __name__ == "__main__":
    sys.exit(main())
