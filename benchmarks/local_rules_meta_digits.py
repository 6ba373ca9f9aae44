"""Meta-learned per-layer rates of feedback alignment vs the hand-tuned setting, equal inner steps.

Hand-tuned: one learning rate for every layer, the best of a grid (held-out accuracy after
``inner_steps`` steps, fresh networks, the evaluation seed), feedback scale 1. Meta-learned: the
config's run (``examples/configs/feedback_rules_digits.yaml``) started from that best rate, its
per-group rates and feedback scale trained by gradient through the unrolled inner loop. Both are
scored on the same ``--runs`` fresh networks and evaluation tasks (paired); SGD and Adam (rates
tuned by :func:`agentgraph.meta.evaluate.evaluate`) for reference.

Run from the repository root (≈ 8 minutes on 2 shared cores):
    nice -n 10 python benchmarks/local_rules_meta_digits.py [--rule direct_feedback_alignment]
writes ``benchmarks/results/local_rules_fa_meta_digits.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import jax
import numpy as np
import yaml

from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.evaluate import evaluate
from agentgraph.meta.protocol_io import load_protocol
from agentgraph.meta.train import train

CONFIG = "examples/configs/feedback_rules_digits.yaml"
GRID = (0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--meta-steps", type=int, default=None)
    ap.add_argument("--rule", default="feedback_alignment",
                    help="feedback_alignment, sign_symmetry or direct_feedback_alignment (same settings)")
    ap.add_argument("--out", default=None, help="default: local_rules_fa_meta_digits.json for feedback_alignment, "
                    "local_rules_<rule>_meta_digits.json otherwise, in benchmarks/results/")
    a = ap.parse_args()
    stem = "fa" if a.rule == "feedback_alignment" else a.rule
    a.out = a.out or os.path.join(os.path.dirname(__file__), "results", f"local_rules_{stem}_meta_digits.json")
    t0 = time.time()
    base = yaml.safe_load(open(CONFIG))
    base["protocol"]["rule"] = a.rule
    if a.meta_steps:
        base["meta"]["meta_steps"] = a.meta_steps
    base["run"]["out_dir"] = f"runs/local_rules_fa_meta_digits_{int(time.time())}"  # a fresh run
    K = base["meta"]["inner_steps"]
    grid = {}
    for lr in GRID:  # the hand-tuned setting: one rate for every layer
        cfg = parse_config({**base, "protocol": {**base["protocol"], "init_lr": lr}})
        ctx = make_context(cfg)
        learned = ctx.protocol.init(jax.random.PRNGKey(0), ctx.net.graph)
        r = evaluate(cfg, learned, {}, runs=a.runs, sgd_lr=0.1, adam_lr=0.01, ctx=ctx)
        grid[lr] = r["protocol"]
        print(f"hand-tuned lr {lr}: accuracy after {K} steps {r['protocol']['mean'][-1]:.4f}", flush=True)
    best = max(GRID, key=lambda lr: grid[lr]["mean"][-1])
    cfg = parse_config({**base, "protocol": {**base["protocol"], "init_lr": best}})
    t1 = time.time()
    train(cfg, progress=False, log=lambda s: None)
    t_train = time.time() - t1
    ckpt = sorted(glob.glob(os.path.join(base["run"]["out_dir"], "ckpt_*.npz")))[-1]
    ctx = make_context(cfg)
    learned, stats = load_protocol(ckpt, ctx)
    meta = evaluate(cfg, learned, stats, runs=a.runs, ctx=ctx)
    rates = ctx.protocol.params(learned, stats, ctx.net.graph)
    hand, ml = grid[best], meta["protocol"]
    se = lambda s: float(np.asarray(s["std"][-1]) / np.sqrt(a.runs))
    out = {
        "task": "digits 8x8, mlp [64, 32, 10] tanh, cross-entropy", "rule": a.rule,
        "inner_steps": K, "runs": a.runs, "config": CONFIG, "meta_steps": cfg.meta.meta_steps,
        "command": f"nice -n 10 python benchmarks/local_rules_meta_digits.py --rule {a.rule}",
        "hand_tuned": {"grid": {str(k): v["mean"][-1] for k, v in grid.items()}, "best_lr": best,
                       "final_accuracy": hand["mean"][-1], "std": hand["std"][-1], "se": se(hand), "curve": hand["mean"]},
        "meta_learned": {"final_accuracy": ml["mean"][-1], "std": ml["std"][-1], "se": se(ml), "curve": ml["mean"],
                         "rates": {g: float(p["lr"]) for g, p in rates.items() if g.startswith(("synapse", "bias"))},
                         "feedback_scale": float(next(iter(rates.values()))["feedback"]), "checkpoint": ckpt},
        "sgd": {"final_accuracy": meta["sgd"]["mean"][-1], "lr": meta["sgd"].get("lr")},
        "adam": {"final_accuracy": meta["adam"]["mean"][-1], "lr": meta["adam"].get("lr")},
        "seconds": {"train": round(t_train, 1), "total": round(time.time() - t0, 1)},
    }
    json.dump(out, open(a.out, "w"), indent=1)
    print(json.dumps({k: out[k] for k in ("hand_tuned", "meta_learned", "sgd", "adam", "seconds")}, indent=1))


if __name__ == "__main__":
    main()
