"""Meta-training that leaves the plateau: the paper's MNIST recipe against the options that
attack it, each one config switch, measured the same way.

Run:  python benchmarks/plateau.py run OPTION [--seed S] [--out-root runs/plateau]
      python benchmarks/plateau.py report [--out-root runs/plateau] [--runs 100]
          [--json benchmarks/results/plateau-cpu.json] [--plot docs/img/plateau.png]

``run`` meta-trains one option on 12×12 MNIST ((144,50,10) sigmoid, 20 steps × batch 8;
``examples/configs/mnist.yaml``) with a periodic evaluation every 100 meta-steps (accuracy after
20 inner steps, 20 fresh networks on the test set) and checkpoints every 100; run it again to
resume. ``report`` reads every run under ``--out-root``, scores each run's last checkpoint on
100 fresh networks (SGD lr 0.1 and Adam lr 0.01 beside it, as in the paper; cached beside
the run), and prints and stores, per run: meta-steps and wall
minutes (meta-steps only, plus set-up) to the first periodic evaluation ≥ 40 % and ≥ 48.95 %,
the best periodic evaluation, and the final 100-run accuracy — plus curves of accuracy against
meta-steps and against minutes, and of the meta-loss against meta-steps. A run that uses the
gradient at evaluation (``grad_always``) is marked as such: it is not a gradient-free protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from agentgraph.rundir import read_metrics  # noqa: E402

PAPER = 0.4895
CONFIG = os.path.join(ROOT, "examples", "configs", "mnist.yaml")
# the paper's recipe, whatever examples/configs/mnist.yaml's defaults are; options override
COMMON = ["run.eval_every=100", "run.checkpoint_every=100", "run.keep=30", "protocol.imitation_steps=0", "meta.meta_lr=5e-4"]

#: option -> (--set overrides, meta-steps, what it is)
OPTIONS: dict[str, tuple[list[str], int, str]] = {
    "baseline": ([], 1000, "the paper's recipe (meta-lr 5e-4, outer batch 1)"),
    "imitation": (["protocol.imitation_steps=600", "protocol.imitation_meta_lr=2e-3", "meta.meta_lr=2e-4"], 1600,
                  "600 imitation steps (messages and updates fitted to backprop's, 4-step unrolls, meta-lr 2e-3), "
                  "then the recipe at meta-lr 2e-4"),
    "imitation-long": (["protocol.imitation_steps=1200", "protocol.imitation_meta_lr=2e-3", "meta.meta_lr=2e-4"], 1600,
                       "as imitation, with 1,200 imitation steps (seed 1's imitation loss was still falling at 600)"),
    "imitation-metalr5e-4": (["protocol.imitation_steps=600", "protocol.imitation_meta_lr=2e-3"], 1600,
                             "as imitation, but the recipe's meta-lr 5e-4 after it"),
    "curriculum": (["meta.curriculum=[[0,5],[250,10],[500,20]]"], 1000,
                   "unroll 5 inner steps, 10 from meta-step 250, 20 from 500"),
    "outer4": (["meta.outer_batch=4", "meta.meta_lr=1e-3"], 360,
               "4 tasks per meta-step (one after another, 3.6 s a step), meta-lr ×2 (√4), "
               "as many minutes as the baseline's 1,000 steps"),
    "grad_train": (["protocol.grad_input=train", "protocol.grad_input_anneal=500"], 1000,
                   "gradient as a learner input, faded out over 500 meta-steps; evaluated without it"),
    "grad_always": (["protocol.grad_input=always"], 1000,
                    "gradient as a learner input in training and evaluation (not gradient-free)"),
}
USES_GRADIENT = {"grad_always"}


def _run(a) -> int:
    sets, steps, _ = OPTIONS[a.option]
    out = os.path.join(a.out_root, f"{a.option}_s{a.seed}")
    cmd = ["agentgraph", "train", CONFIG, "--out-dir", out, "--seed", str(a.seed), "--meta-steps", str(steps),
           "--no-progress"]
    for s in COMMON + sets:
        cmd += ["--set", s]
    if os.path.exists(os.path.join(out, "metrics.jsonl")):
        cmd.append("--resume")
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd)


def _curve(run_dir: str) -> dict:
    rows = read_metrics(os.path.join(run_dir, "metrics.jsonl"))  # a run killed mid-line still reads
    minutes, pts = 0.0, []
    warm = lambda r: r.get("warm_start") or r.get("imitation")  # noqa: E731  (older runs: "imitation")
    for r in rows:
        minutes += (r["seconds"] + r.get("setup_seconds", 0.0)) / 60.0
        if "eval" in r:
            pts.append({"step": r["step"] + 1, "minutes": minutes, "acc": r["eval"],
                        "phase": "imitation" if warm(r) else "meta"})
    imitation = sum(1 for r in rows if warm(r))
    meta = [r for r in rows if not warm(r) and r.get("finite", True)]
    loss = [(meta[i]["step"] + 1, sum(r["meta_loss"] for r in meta[i:i + 50]) / len(meta[i:i + 50]))
            for i in range(0, len(meta), 50)]  # means over 50 meta-steps, at each window's first step
    return {"points": pts, "steps": len(rows), "imitation_steps": imitation, "minutes": minutes, "meta_loss": loss}


def _first(points, level):
    for p in points:
        if p["acc"] >= level:
            return {"step": p["step"], "minutes": round(p["minutes"], 1)}
    return None


def _final_eval(run_dir: str, runs: int) -> dict:
    from agentgraph import checkpoint as ckpt

    path = ckpt.latest(run_dir)
    cache = os.path.join(run_dir, f"final_eval_{runs}.json")
    if os.path.exists(cache):
        with open(cache) as f:
            res = json.load(f)
        if res.get("checkpoint") == path:
            return res
    subprocess.check_call(["agentgraph", "eval", path, "--runs", str(runs), "--sgd-lr", "0.1", "--adam-lr", "0.01",
                           "--out", cache + ".tmp"])
    with open(cache + ".tmp") as f:
        res = json.load(f)
    res["checkpoint"] = path
    with open(cache, "w") as f:
        json.dump(res, f)
    os.remove(cache + ".tmp")
    return res


def _report(a) -> int:
    from agentgraph.plots import plot_meta_curves

    rows, by_step, by_min, by_loss = [], {}, {}, {}
    for name in sorted(os.listdir(a.out_root)):
        d = os.path.join(a.out_root, name)
        if not os.path.exists(os.path.join(d, "metrics.jsonl")):
            continue
        option = name.rsplit("_s", 1)[0]
        c = _curve(d)
        final = _final_eval(d, a.runs)
        learned = final["protocol"] if "protocol" in final else final["mplp"]  # evaluations cached before: "mplp"
        row = {"run": name, "option": option, "what": OPTIONS.get(option, ([], 0, ""))[2],
               "uses_gradient_at_evaluation": option in USES_GRADIENT, "meta_steps": c["steps"] - c["imitation_steps"],
               "imitation_steps": c["imitation_steps"], "minutes": round(c["minutes"], 1),
               "to_40": _first(c["points"], 0.40), "to_paper": _first(c["points"], PAPER),
               "best_periodic": max((p["acc"] for p in c["points"]), default=None),
               "final_100": {"mean": learned["mean"][-1], "std": learned["std"][-1]},
               "sgd_100": final["sgd"]["mean"][-1], "adam_100": final["adam"]["mean"][-1], "curve": c["points"]}
        rows.append(row)
        by_step[name] = [(p["step"], 100 * p["acc"]) for p in c["points"]]
        by_min[name] = [(p["minutes"], 100 * p["acc"]) for p in c["points"]]
        by_loss[name] = c["meta_loss"]
    fmt = lambda r: f"step {r['step']} / {r['minutes']} min" if r else "not reached"  # noqa: E731
    print(f"{'run':22s} {'meta-steps':>10s} {'minutes':>8s}  {'to 40 %':>22s}  {'to 48.95 %':>22s}  best  final (100 runs)")
    for r in rows:
        print(f"{r['run']:22s} {r['meta_steps']:>10d} {r['minutes']:>8.1f}  {fmt(r['to_40']):>22s}  "
              f"{fmt(r['to_paper']):>22s}  {100 * (r['best_periodic'] or 0):4.1f}  "
              f"{100 * r['final_100']['mean']:.1f} ± {100 * r['final_100']['std']:.1f}"
              + ("   [uses the gradient]" if r["uses_gradient_at_evaluation"] else ""))
    print("\n| run | meta-steps | minutes | to 40 % | to 48.95 % | best periodic (20 runs) | last checkpoint, 100 runs |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        steps = f"{r['imitation_steps']} + {r['meta_steps']}" if r["imitation_steps"] else f"{r['meta_steps']}"
        flag = " (gradient given at evaluation)" if r["uses_gradient_at_evaluation"] else ""
        print(f"| `{r['run']}`{flag} | {steps} | {r['minutes']:.1f} | {fmt(r['to_40'])} | {fmt(r['to_paper'])} | "
              f"{100 * (r['best_periodic'] or 0):.1f} % | {100 * r['final_100']['mean']:.1f} ± "
              f"{100 * r['final_100']['std']:.1f} % |")
    os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({"paper": PAPER, "rows": rows}, f, indent=2)
    base = os.path.splitext(a.plot)[0]
    kw = dict(ylabel="accuracy after 20 inner steps (%)", hline=100 * PAPER, hline_label="paper, MPLP (48.95 %)")
    plot_meta_curves(by_step, base + "-steps.png", xlabel="meta-step (imitation steps included)",
                     title="12×12 MNIST: periodic evaluation (20 fresh networks)", **kw)
    plot_meta_curves(by_min, base + "-minutes.png", xlabel="minutes on the 2-core CPU (meta-steps + set-up)",
                     title="12×12 MNIST: the same runs against time", **kw)
    plot_meta_curves(by_loss, base + "-metaloss.png", xlabel="meta-step (imitation steps included)",
                     ylabel="meta-loss (mean over 50 meta-steps)", hline=2.302585, hline_label="chance (ln 10)",
                     title="12×12 MNIST: the paper's meta-loss (imitation phases left out)")
    print(f"wrote {a.json}, {base}-steps.png, {base}-minutes.png, {base}-metaloss.png")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("option", choices=sorted(OPTIONS))
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out-root", default="runs/plateau")
    p = sub.add_parser("report")
    p.add_argument("--out-root", default="runs/plateau")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--json", default="benchmarks/results/plateau-cpu.json")
    p.add_argument("--plot", default="docs/img/plateau.png")
    a = ap.parse_args(argv)
    return _run(a) if a.cmd == "run" else _report(a)


if __name__ == "__main__":
    sys.exit(main())
