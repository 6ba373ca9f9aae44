"""Run the fault-injection suite (tests/reliability, the slow probes included) and count what
happened: cases tried, clear errors, correct runs, crashes, silent wrong results, data lost.

    python benchmarks/fault_injection.py [--fast] [--out benchmarks/results/fault_injection.json]

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="only the probes of the default test run")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "fault_injection.json"))
    args = ap.parse_args()
    fd, report = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    marks = "not slow" if args.fast else "slow or not slow"
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "pytest", "tests/reliability", "-q", "-n", "0", "-m", marks,
                          "-p", "no:cacheprovider"], cwd=ROOT, env={**os.environ, "AGENTGRAPH_FAULT_REPORT": report})
    rows = [json.loads(ln) for ln in open(report)]
    os.remove(report)
    by_outcome = collections.Counter(r["outcome"] for r in rows)
    by_class: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in rows:
        by_class[r["class"]][r["outcome"]] += 1
    res = {"suite": marks, "pytest_exit_code": rc, "seconds": round(time.perf_counter() - t0, 1),
           "cases": len(rows), "outcomes": {k: by_outcome.get(k, 0) for k in ("ran", "error", "crash", "silent", "lost")},
           "by_class": {c: dict(v) for c, v in sorted(by_class.items())},
           "bad": [r for r in rows if r["outcome"] not in ("ran", "error")]}
    print(json.dumps({k: v for k, v in res.items() if k != "bad"}, indent=2))
    for r in res["bad"]:
        print(f"BAD {r['class']} / {r['case']}: {r['outcome']}: {r['detail'][:200]}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    return rc


if __name__ == "__main__":
    sys.exit(main())
