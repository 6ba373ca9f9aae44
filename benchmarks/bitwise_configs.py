"""Do two source trees meta-train the shipped configs to the same numbers, bit for bit?

Runs a few meta-steps of each config under each tree (single-threaded XLA, so reductions have one
order), then compares every array of the final checkpoints (the header record aside, which holds
paths). Used to show that a change which should not alter results (e.g. declared schedules, whose
default is the old step) does not.

Run:  python benchmarks/bitwise_configs.py --old <worktree of the old commit> [--new .] [--steps 3]
      [--set blur=protocol.exact=false] [--out benchmarks/results/bitwise_configs.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CONFIGS = {"digits": "examples/configs/digits.yaml", "blur": "examples/configs/blur_digits.yaml",
           "sinusoid": "examples/configs/sinusoid.yaml", "dag": "examples/configs/digits_dag.yaml"}


def _run(tree: str, cfg: str, steps: int, extra: list[str], out: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree),
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    cmd = [sys.executable, "-m", "agentgraph.cli", "train", cfg, "--set", f"meta.meta_steps={steps}", *extra,
           "--out-dir", out, "--no-progress"]
    r = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{tree}: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return sorted(glob.glob(os.path.join(out, "ckpt_*.npz")))[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", default=".")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], help="NAME=KEY=VALUE: an override for one config (new tree)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bitwise_configs.json"))
    a = ap.parse_args()
    overrides: dict[str, list[str]] = {}
    for item in a.set:
        name, _, kv = item.partition("=")
        overrides.setdefault(name, []).extend(["--set", kv])
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in CONFIGS.items():
            old = np.load(_run(a.old, cfg, a.steps, [], os.path.join(tmp, "old", name)))
            new = np.load(_run(a.new, cfg, a.steps, overrides.get(name, []), os.path.join(tmp, "new", name)))
            keys = [k for k in old.files if k != "__checkpoint__" and old[k].dtype.kind in "fiub"]
            worst = 0.0
            for k in keys:
                if k not in new.files or old[k].shape != new[k].shape:
                    worst = float("inf")
                elif old[k].size:
                    worst = max(worst, float(np.abs(old[k].astype(np.float64) - new[k].astype(np.float64)).max()))
            res[name] = {"arrays": len(keys), "max_abs_difference": worst, "meta_steps": a.steps,
                         "overrides": overrides.get(name, [])}
            print(name, json.dumps(res[name]), flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
