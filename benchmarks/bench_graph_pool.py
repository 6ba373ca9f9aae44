"""Graph pools: compile time and meta-step time of meta-training on a pool of random DAGs, in this
tree and (``--tree``) in another checkout of agentgraph, one after the other in one run.

A pool of G seeded random DAGs (``net.pool``) is meta-trained for ``--steps`` meta-steps
(graph ``s mod G`` at step ``s``). Reported per tree, from ``metrics.jsonl``'s per-step seconds:
``first_cycle_s`` — the first G steps (every graph's first visit: compile + run), ``median_step_s``
— the median step after them, and the number of meta-step compilations JAX logged.

    python benchmarks/bench_graph_pool.py --graphs 8 --steps 32 --tree /tmp/agentgraph-before

Results go to ``benchmarks/results/graph_pool-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The worker runs inside the tree under test; it adapts the config to that tree's schema (before
# the sections by component, the graph pool was meta.graph_pool; before the Protocol contract,
# MPLP's calibration_rounds lived under meta:).
WORKER = r"""
import json, os, sys, time
cfg = json.loads(sys.argv[1])
try:
    import agentgraph.meta.net_config  # noqa: F401  (the sections by component)
except ImportError:
    cfg["meta"]["graph_pool"] = cfg["net"].pop("pool")
try:
    import agentgraph.meta.context  # noqa: F401  (the Protocol-contract API)
except ImportError:
    cfg["meta"]["calibration_rounds"] = cfg["protocol"].pop("calibration_rounds")
from agentgraph.meta.config import parse_config
from agentgraph.meta.train import train
t0 = time.perf_counter()
res = train(parse_config(cfg), progress=False, log=lambda s: None)
total = time.perf_counter() - t0
rows = [json.loads(l) for l in open(os.path.join(cfg["run"]["out_dir"], "metrics.jsonl"))]
print("RESULT " + json.dumps({"seconds": [r["seconds"] for r in rows], "total_s": total,
                              "setup_s": rows[0].get("setup_seconds")}))
"""


def config(graphs: int, steps: int, out_dir: str) -> dict:
    return {
        "net": {"kind": "random_dag", "sizes": [64, 10], "n_hidden": 20, "edge_prob": 0.3,
                "activation": "sigmoid", "loss": "cross_entropy", "pool": graphs},
        "data": {"task": "digits", "image_size": 8, "cv_batch": 100},
        "protocol": {"k": 4, "hidden": 7, "sharing": "kind", "calibration_rounds": 1},
        "meta": {"inner_steps": 10, "batch": 8, "outer_batch": 1, "meta_steps": steps, "meta_lr": 1e-3,
                 "prior_pool": 4},
        "run": {"seed": 0, "out_dir": out_dir, "checkpoint_every": steps},
    }


def run_tree(tree: str, graphs: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cfg = config(graphs, steps, os.path.join(d, "run"))
        env = {**os.environ, "PYTHONPATH": tree, "JAX_LOG_COMPILES": "1"}
        p = subprocess.run([sys.executable, "-c", WORKER, json.dumps(cfg)], cwd=tree, env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:  # reported, not hidden: e.g. LLVM out of mapped memory after many compilations
            errs = [ln for ln in p.stderr.splitlines() if "ERROR" in ln or "Error" in ln][-3:]
            done = sum(1 for ln in p.stderr.splitlines() if "Finished XLA compilation of jit(step_fn)" in ln)
            return {"tree": tree, "failed": f"exit {p.returncode} after {done} meta-step compilations: " + " | ".join(errs)}
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))
        res = json.loads(line[len("RESULT "):])
        compiles = sum(1 for ln in p.stderr.splitlines() if "Finished XLA compilation of jit(step_fn)" in ln)
    secs = res["seconds"]
    after = sorted(secs[graphs:])
    return {"tree": tree, "first_cycle_s": sum(secs[:graphs]), "median_step_s": after[len(after) // 2] if after else None,
            "meta_step_compilations": compiles, "total_s": res["total_s"], "setup_s": res["setup_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graphs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--tree", default=None, help="another agentgraph checkout to compare with (e.g. a git worktree)")
    ap.add_argument("--only-tree", action="store_true", help="run only --tree, not this checkout")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "graph_pool-cpu.json"))
    a = ap.parse_args()
    rows = []
    for tree in ([a.tree] if a.tree else []) + ([] if a.only_tree else [ROOT]):
        r = run_tree(tree, a.graphs, a.steps)
        rows.append(r)
        if "failed" in r:
            print(f"{r['tree']}: FAILED ({r['failed']})")
            continue
        print(f"{r['tree']}: first cycle of {a.graphs} graphs {r['first_cycle_s']:.1f} s, median meta-step "
              f"{r['median_step_s']:.3f} s, meta-step compilations {r['meta_step_compilations']}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"graphs": a.graphs, "steps": a.steps, "rows": rows}, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
