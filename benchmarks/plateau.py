"""Meta-training recipes measured the same way: the paper's recipe against the options that
attack its slow start, each one config switch — a *study* per experiment.

Run:  python benchmarks/plateau.py [--study mnist|sinusoid|maml|es] run OPTION [--seed S] [--out-root DIR]
      python benchmarks/plateau.py [--study mnist|sinusoid|maml|es] report [--out-root DIR] [--runs 100]
          [--json FILE] [--plot PNG] [--summaries DIR]

Studies:

* ``mnist`` (default; runs under ``runs/plateau``): 12×12 MNIST ((144,50,10) sigmoid, 20 steps ×
  batch 8; ``examples/configs/mnist.yaml``), periodic evaluation every 100 meta-steps (accuracy
  after 20 inner steps, 20 fresh networks on the test set); the target is the paper's 48.95 %.
* ``sinusoid`` (runs under ``benchmarks/long_runs/sinusoid``): the paper's Fig. 2 setting ((1,20,20,1)
  ReLU, 5 steps × batch 10; ``examples/configs/sinusoid.yaml``), periodic evaluation every 250
  meta-steps (L2 loss on 100 evenly spaced points after 5 inner steps, 100 fresh networks and
  tasks — the final metric itself); the target is the authors' own protocol's 0.0014.
* ``es`` (runs under ``benchmarks/long_runs/es``): evolution strategies against the gradient at
  equal CPU time — MPLP on digits by OpenES and by gradient, MPLP by OpenES directly on a step
  activation, and BLUR's genome on MNIST 14×14 by CMA-ES (population 80, accuracy as fitness; the
  paper's 0.84) and by gradient; evaluation every 25 meta-steps (generations), 20 fresh networks.
* ``maml`` (runs under ``benchmarks/long_runs/maml``): the paper's Fig. 3 — stateless MPLP learned jointly
  with a MAML prior (``examples/configs/maml_sinusoid.toml``, option ``mplp``) against MAML, the
  prior learned for SGD 0.05 (``maml_baseline.toml``, option ``maml``); 2 steps × batch 10,
  evaluation loss after 2 steps every 250 meta-steps on 100 fresh tasks.

``run`` meta-trains one option with checkpoints as often as the evaluations; run it again to
resume (from the run directory's newest checkpoint; its ``metrics.jsonl`` may be gone).
``report`` reads every run under ``--out-root`` and every run summary under ``--summaries``
(``benchmarks/results/runs/<study>/<run>.json``, written by ``benchmarks/summarise_runs.py``: a
finished run keeps only its summary, see benchmarks/long_runs/README.md), takes each run's
100-network score from its summary or, for a run with a checkpoint newer than its summary, scores
that checkpoint on 100 fresh networks (SGD and Adam beside it, as in the paper; cached beside the
run), and prints
and stores, per run: meta-steps and CPU minutes of the run's process (meta-steps only, plus
set-up; it stays meaningful when jobs share the machine) to the first periodic evaluation that
reaches each of the study's levels, the best periodic evaluation and
the final 100-run score — plus curves of the score against meta-steps and against minutes, and
of the meta-loss against meta-steps. A run that uses the gradient at evaluation (``grad_always``)
is marked as such: it is not a gradient-free protocol.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import summarise_runs  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Study:
    """One experiment: its config, the settings every option shares, the options (name ->
    (--set overrides, meta-steps, what it is)), and how its score reads."""

    config: str
    common: list[str]
    options: dict[str, tuple[list[str], int, str]]
    out_root: str
    levels: tuple[float, ...]  # report the first periodic evaluation reaching each
    target: float  # the paper's (or the authors' protocol's) score: the dashed line
    target_label: str
    higher_is_better: bool
    percent: bool  # show the score in %
    score: str  # axis label
    title: str
    eval_flags: list[str]  # agentgraph eval's baselines
    chance: float | None = None  # the meta-loss of a protocol that does nothing
    uses_gradient: frozenset[str] = frozenset()
    configs: dict[str, str] = dataclasses.field(default_factory=dict)  # options with a config of their own
    log: bool = False  # curves on log-log axes (runs of very different lengths)


MNIST = Study(
    config=os.path.join(ROOT, "examples", "configs", "mnist.yaml"),
    # the paper's recipe, whatever examples/configs/mnist.yaml's defaults are; options override
    common=["run.eval_every=100", "run.checkpoint_every=100", "run.keep=30", "protocol.imitation_steps=0",
            "meta.meta_lr=5e-4"],
    options={
        "baseline": ([], 1000, "the paper's recipe (meta-lr 5e-4, outer batch 1)"),
        "imitation": (["protocol.imitation_steps=600", "protocol.imitation_meta_lr=2e-3", "meta.meta_lr=2e-4"], 1600,
                      "600 imitation steps (messages and updates fitted to backprop's, 4-step unrolls, meta-lr 2e-3), "
                      "then the recipe at meta-lr 2e-4"),
        "imitation-long": (["protocol.imitation_steps=1200", "protocol.imitation_meta_lr=2e-3", "meta.meta_lr=2e-4"],
                           1600, "as imitation, with 1,200 imitation steps (seed 1's imitation loss was still falling "
                           "at 600)"),
        "imitation-metalr5e-4": (["protocol.imitation_steps=600", "protocol.imitation_meta_lr=2e-3"], 1600,
                                 "as imitation, but the recipe's meta-lr 5e-4 after it"),
        "curriculum": (["schedules.unroll=[[0,5],[250,10],[500,20]]"], 1000,
                       "unroll 5 inner steps, 10 from meta-step 250, 20 from 500"),
        "outer4": (["meta.outer_batch=4", "meta.meta_lr=1e-3"], 360,
                   "4 tasks per meta-step (one after another, 3.6 s a step), meta-lr ×2 (√4), "
                   "as many minutes as the baseline's 1,000 steps"),
        "grad_train": (["protocol.grad_input=train", "protocol.grad_input_anneal=500"], 1000,
                       "gradient as a learner input, faded out over 500 meta-steps; evaluated without it"),
        "grad_always": (["protocol.grad_input=always"], 1000,
                        "gradient as a learner input in training and evaluation (not gradient-free)"),
    },
    out_root="runs/plateau", levels=(0.40, 0.4895), target=0.4895, target_label="paper, MPLP (48.95 %)",
    higher_is_better=True, percent=True, score="accuracy after 20 inner steps (%)",
    title="12×12 MNIST", eval_flags=["--sgd-lr", "0.1", "--adam-lr", "0.01"], chance=2.302585,
    uses_gradient=frozenset({"grad_always"}),
)

SINUSOID = Study(
    config=os.path.join(ROOT, "examples", "configs", "sinusoid.yaml"),
    # the paper's recipe (meta-lr 1e-4, outer batch 4, no warm start); options override
    common=["run.eval_every=250", "run.checkpoint_every=250", "run.keep=2", "run.eval_runs=100",
            "protocol.imitation_steps=0", "meta.meta_lr=1e-4", "schedules.meta_lr=null"],
    options={
        "paper": ([], 8000, "the paper's recipe (meta-lr 1e-4, outer batch 4)"),
        "lr1e-3": (["meta.meta_lr=1e-3"], 8000, "the recipe at meta-lr 1e-3"),
        "imitation": (["protocol.imitation_steps=500", "protocol.imitation_lr=0.3", "meta.meta_lr=1e-3"], 8000,
                      "500 imitation steps of SGD(0.3), then the recipe at meta-lr 1e-3"),
        "scale0.1": (["protocol.out_scale=0.1"], 8000,
                     "the recipe with the learners' output scale starting at 0.1 instead of 0.01"),
        "scale0.3": (["protocol.out_scale=0.3"], 8000, "the recipe with the learners' output scale starting at 0.3"),
        "imitation-lr1e-4": (["protocol.imitation_steps=600", "protocol.imitation_lr=0.3",
                              "protocol.imitation_meta_lr=2e-3"], 8000,
                             "600 imitation steps of SGD(0.3) (meta-lr 2e-3), then the recipe (meta-lr 1e-4)"),
        "scale0.1-cv": (["protocol.out_scale=0.1", "meta.objective.hint_weight=0", "meta.objective.cv_weight=1"], 8000,
                        "as scale0.1, the meta-loss only the held-out loss after the last step (what is evaluated)"),
    },
    out_root="benchmarks/long_runs/sinusoid", levels=(0.005, 0.0014), target=0.0014,
    target_label="the authors' protocol (0.0014)", higher_is_better=False, percent=False,
    score="evaluation loss after 5 inner steps", title="sinusoid", eval_flags=["--adam-lr", "0.01"],
)

MAML = Study(
    config=os.path.join(ROOT, "examples", "configs", "maml_sinusoid.toml"),
    configs={"maml": os.path.join(ROOT, "examples", "configs", "maml_baseline.toml")},
    common=["run.eval_every=250", "run.checkpoint_every=250", "run.keep=2", "run.eval_runs=100"],
    options={
        "mplp": ([], 8000, "stateless MPLP learners and the prior learned jointly (paper Fig. 3), meta-lr 1e-4"),
        "maml": ([], 8000, "MAML: the prior learned for SGD(0.05), meta-lr 1e-4"),
        "mplp-lr1e-3": (["meta.meta_lr=1e-3"], 8000, "as mplp, meta-lr 1e-3"),
        "maml-lr1e-3": (["meta.meta_lr=1e-3"], 8000, "as maml, meta-lr 1e-3"),
        "mplp-scale0.1": (["protocol.out_scale=0.1"], 8000, "as mplp, the output scale starting at 0.1"),
    },
    out_root="benchmarks/long_runs/maml", levels=(0.015, 0.01), target=0.0171,
    target_label="MAML after 5,000 meta-steps at 1e-4 (0.0171)", higher_is_better=False, percent=False,
    score="evaluation loss after 2 inner steps", title="sinusoid, MAML prior", eval_flags=["--adam-lr", "0.01"], log=True,
)

_OPENES = ["meta.optimizer.kind=es", "meta.optimizer.strategy=open_es", "meta.optimizer.popsize=64",
           "meta.optimizer.sigma=0.03", "meta.optimizer.lr=0.01"]

ES = Study(
    config=os.path.join(ROOT, "examples", "configs", "digits.yaml"),
    configs={"blur-cmaes": os.path.join(ROOT, "examples", "configs", "blur_mnist14.yaml"),
             "blur-gradient": os.path.join(ROOT, "examples", "configs", "blur_mnist14.yaml"),
             "blur-gradient-decay": os.path.join(ROOT, "examples", "configs", "blur_mnist14.yaml"),
             "mplp-mnist-step-openes": os.path.join(ROOT, "examples", "configs", "mnist.yaml")},
    common=["run.checkpoint_every=25", "run.keep=2", "run.eval_every=25", "run.eval_runs=20"],
    options={
        "mplp-gradient": ([], 2000, "MPLP on digits by gradient (Adam 3e-3, outer batch 2)"),
        "mplp-openes": (_OPENES, 300, "MPLP on digits by OpenES (64 candidates, sigma 0.03, Adam 0.01), the same "
                        "meta-loss as fitness"),
        "mplp-step-openes": (_OPENES + ["net.sizes=[64,20,10]", "net.activation=step"], 300,
                             "MPLP on a (64,20,10) step-activation network by OpenES: no gradient passes a step"),
        "mplp-hidden-gradient": (["net.sizes=[64,20,10]"], 2000,
                                 "MPLP on a (64,20,10) sigmoid network by gradient; evaluated transferred to step"),
        "mplp-mnist-step-openes": (["net.activation=step", "meta.init_from=agentgraph/pretrained/mnist.npz",
                                    "meta.optimizer={kind: es, strategy: open_es, popsize: 32, sigma: 0.01, lr: 0.002}",
                                    "run.eval_every=10", "run.checkpoint_every=5"], 100,
                                   "the shipped MNIST protocol (gradient, sigmoid) fine-tuned by OpenES on the "
                                   "(144,50,10) step network it is transferred to (32 candidates, sigma 0.01)"),
        "blur-cmaes": ([], 400, "BLUR genome (k = 3, 40 numbers) on MNIST 14×14 by CMA-ES, population 80, "
                       "1 - accuracy as fitness (examples/configs/blur_mnist14.yaml)"),
        "blur-gradient": (["meta.optimizer={kind: gradient}", "meta.objective=readout"], 3000,
                          "the same BLUR genome by gradient (Adam 5e-3) on the read-out's cross-entropy"),
        "blur-gradient-decay": (["meta.optimizer={kind: gradient}", "meta.objective=readout",
                                 "schedules.meta_lr=[[0, 5e-3], [500, 5e-3], [3000, 2e-4]]"], 3000,
                                "as blur-gradient, the meta-lr decayed linearly from 5e-3 at step 500 to 2e-4 at 3,000"),
    },
    out_root="benchmarks/long_runs/es", levels=(0.5, 0.8), target=0.84,
    target_label="paper, BLUR by CMA-ES (0.84)", higher_is_better=True, percent=True,
    score="accuracy after the inner steps (%)", title="ES against gradient",
    eval_flags=["--sgd-lr", "0.1", "--adam-lr", "0.01"],
)

STUDIES = {"mnist": MNIST, "sinusoid": SINUSOID, "maml": MAML, "es": ES}


def _run(a, st: Study) -> int:
    sets, steps, _ = st.options[a.option]
    out = os.path.join(a.out_root, f"{a.option}_s{a.seed}")
    cmd = ["agentgraph", "train", st.configs.get(a.option, st.config), "--out-dir", out, "--seed", str(a.seed), "--meta-steps",
           str(a.meta_steps or steps), "--no-progress"]
    for s in st.common + sets:
        cmd += ["--set", s]
    if os.path.exists(os.path.join(out, "metrics.jsonl")) or summarise_runs._checkpoints(out):
        cmd.append("--resume")  # a run kept for continuing may hold only its newest checkpoint
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd)


def _curve(run_dir: str, summary: dict | None, study: str) -> dict:
    """The run's evaluation points, minutes and meta-loss windows: from its ``metrics.jsonl``
    (merged after its summary when it was resumed from a checkpoint kept without its metrics), or
    from its summary alone when the run state is gone."""
    rows = summarise_runs.read_metrics(os.path.join(run_dir, "metrics.jsonl"))  # a run killed mid-line still reads
    if rows:
        summary = summarise_runs.summarise(run_dir, study, os.path.basename(run_dir), rows, summary)
    return summarise_runs.curve(summary)


def _first(points, level, st: Study):
    for p in points:
        if (p["score"] >= level) if st.higher_is_better else (p["score"] <= level):
            return {"step": p["step"], "minutes": round(p["cpu_minutes"], 1)}
    return None


def _final_eval(run_dir: str, runs: int, st: Study) -> dict:
    from agentgraph import checkpoint as ckpt

    path = ckpt.latest(run_dir)
    cache = os.path.join(run_dir, f"final_eval_{runs}.json")
    if os.path.exists(cache):
        with open(cache) as f:
            res = json.load(f)
        if res.get("checkpoint") == path:
            return res
    subprocess.check_call(["agentgraph", "eval", path, "--runs", str(runs), *st.eval_flags, "--out", cache + ".tmp"])
    with open(cache + ".tmp") as f:
        res = json.load(f)
    res["checkpoint"] = path
    with open(cache, "w") as f:
        json.dump(res, f)
    os.remove(cache + ".tmp")
    return res


def _final(d: str, summary: dict | None, a, st: Study) -> tuple[dict | None, str]:
    """The run's 100-network evaluation and a note: the one recorded in its summary unless the run
    was continued past it (a newer checkpoint); else its last checkpoint scored now (cached beside it)."""
    latest = summarise_runs._checkpoints(d)
    recorded = (summary or {}).get("final_eval")
    if latest and not (summary and latest[-1][0] <= (summary.get("checkpoint_step") or -1) and recorded):
        return _final_eval(d, a.runs, st), ""
    if recorded:
        step = recorded.get("checkpoint_step")
        last = summary.get("checkpoint_step")
        return recorded, (f" (checkpoint {step:,})" if step is not None and step != last else "")
    return None, ""


def _report(a, st: Study) -> int:
    from agentgraph.plots import plot_meta_curves

    show = (lambda v: f"{100 * v:.1f} %") if st.percent else (lambda v: f"{v:.4f}")  # noqa: E731
    plot_y = (lambda v: 100 * v) if st.percent else (lambda v: v)  # noqa: E731
    rows, by_step, by_min, by_loss, gone = [], {}, {}, {}, []
    names = {n for n in (os.listdir(a.out_root) if os.path.isdir(a.out_root) else [])
             if os.path.exists(os.path.join(a.out_root, n, "metrics.jsonl"))}
    if a.summaries and os.path.isdir(a.summaries):
        names |= {f[:-len(".json")] for f in os.listdir(a.summaries) if f.endswith(".json")}
    for name in sorted(names):
        d = os.path.join(a.out_root, name)
        summary = summarise_runs.load(os.path.join(a.summaries, name + ".json")) if a.summaries else None
        option = name.rsplit("_s", 1)[0]
        c = _curve(d, summary, a.study)
        final, note = _final(d, summary, a, st)
        if not summarise_runs._checkpoints(d):
            gone.append(name)
        if final is not None:
            learned = final["protocol"] if "protocol" in final else final["mplp"]  # evaluations cached before: "mplp"
            final_100 = {"mean": learned["mean"][-1], "std": learned["std"][-1]}
        best = (max if st.higher_is_better else min)((p["score"] for p in c["points"]), default=None)
        row = {"run": name, "option": option, "what": st.options.get(option, ([], 0, ""))[2],
               "uses_gradient_at_evaluation": option in st.uses_gradient,
               "meta_steps": c["steps"] - c["imitation_steps"], "imitation_steps": c["imitation_steps"],
               "minutes": round(c["minutes"], 1), "cpu_minutes": round(c["cpu_minutes"], 1), "reached": {str(lv): _first(c["points"], lv, st) for lv in st.levels},
               "best_periodic": best, "final_100": final_100 if final else None, "final_note": note.strip(" ()"),
               "sgd_100": final["sgd"]["mean"][-1] if final else None,
               "adam_100": final["adam"]["mean"][-1] if final else None, "curve": c["points"]}
        rows.append(row)
        by_step[name] = [(p["step"], plot_y(p["score"])) for p in c["points"]]
        by_min[name] = [(p["cpu_minutes"], plot_y(p["score"])) for p in c["points"]]
        by_loss[name] = c["meta_loss"]
    if gone:
        print(f"Run state removed (finished runs): {', '.join(gone)} — their numbers are read from the summaries in "
              f"{a.summaries}/ (benchmarks/summarise_runs.py); no checkpoint is evaluated for them.\n")
    fmt = lambda r: f"step {r['step']} / {r['minutes']} min" if r else "not reached"  # noqa: E731  (CPU minutes)
    heads = [f"to {show(lv)}" for lv in st.levels]
    print("| run | meta-steps | wall minutes | CPU minutes | " + " | ".join(heads) +
          " | best periodic | last checkpoint, 100 runs |")
    print("|---" * (len(heads) + 6) + "|")
    for r in rows:
        steps = f"{r['imitation_steps']} + {r['meta_steps']}" if r["imitation_steps"] else f"{r['meta_steps']}"
        flag = " (gradient given at evaluation)" if r["uses_gradient_at_evaluation"] else ""
        reached = " | ".join(fmt(r["reached"][str(lv)]) for lv in st.levels)
        print(f"| `{r['run']}`{flag} | {steps} | {r['minutes']:.1f} | {r['cpu_minutes']:.1f} | {reached} | "
              f"{show(r['best_periodic']) if r['best_periodic'] is not None else '-'} | "
              + (f"{show(r['final_100']['mean'])} ± {show(r['final_100']['std'])}"
                 + (f" ({r['final_note']})" if r["final_note"] else "") if r["final_100"] else
                 "not evaluated on 100 (run state removed)") + " |")
    os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({"target": st.target, "rows": rows}, f, indent=2)
    base = os.path.splitext(a.plot)[0]
    kw = dict(ylabel=st.score, hline=plot_y(st.target), hline_label=st.target_label, log=st.log)
    plot_meta_curves(by_step, base + "-steps.png", xlabel="meta-step (imitation steps included)",
                     title=f"{st.title}: periodic evaluation", **kw)
    plot_meta_curves(by_min, base + "-minutes.png", xlabel="CPU minutes of the run's process\n(meta-steps + set-up; "
                     "wall minutes where no CPU time was recorded)",
                     title=f"{st.title}: the same runs against time", **kw)
    plot_meta_curves(by_loss, base + "-metaloss.png", xlabel="meta-step (imitation steps included)",
                     ylabel="meta-loss (mean over 50 meta-steps)", hline=st.chance,
                     hline_label="chance (ln 10)" if st.chance else "",
                     title=f"{st.title}: the paper's meta-loss (imitation phases left out)")
    print(f"wrote {a.json}, {base}-steps.png, {base}-minutes.png, {base}-metaloss.png")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", choices=sorted(STUDIES), default="mnist")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("option")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out-root", default=None)
    r.add_argument("--meta-steps", type=int, default=None, help="instead of the option's own")
    p = sub.add_parser("report")
    p.add_argument("--out-root", default=None)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--json", default=None, help="default benchmarks/results/plateau-cpu.json (mnist), "
                   "benchmarks/results/sinusoid_recipe-cpu.json (sinusoid)")
    p.add_argument("--plot", default=None, help="default docs/img/plateau.png, docs/img/sinusoid_recipe.png")
    p.add_argument("--summaries", default=None, help="run summaries read where a run's metrics.jsonl is gone "
                   "(default benchmarks/results/runs/STUDY; write them with benchmarks/summarise_runs.py)")
    a = ap.parse_args(argv)
    st = STUDIES[a.study]
    if a.cmd == "run" and a.option not in st.options:
        ap.error(f"option {a.option!r} is not one of the {a.study} study's: {', '.join(sorted(st.options))}")
    a.out_root = a.out_root or st.out_root
    if a.cmd == "run":
        return _run(a, st)
    stem = "plateau" if a.study == "mnist" else f"{a.study}_recipe"
    a.json = a.json or f"benchmarks/results/{stem}-cpu.json"
    a.plot = a.plot or f"docs/img/{stem}.png"
    a.summaries = a.summaries or os.path.join("benchmarks", "results", "runs", a.study)
    return _report(a, st)


if __name__ == "__main__":
    sys.exit(main())
