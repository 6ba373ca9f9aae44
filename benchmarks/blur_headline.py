"""BLUR's headline (issue 33 item 2): CMA-ES and gradient meta-training on MNIST 14x14 with the
authors' conventions, the ablation of each convention, and the paper's own protocol.

Run:  python benchmarks/blur_headline.py list
      python benchmarks/blur_headline.py run NAME [NAME ...] [--meta-steps=N] [--cpu-cap=MIN]   # in turn, nice'd
      python benchmarks/blur_headline.py summarise NAME [--meta-steps=N]  # write a finished run's JSON
      python benchmarks/blur_headline.py plot OUT.png EVAL.json:TITLE ...   # accuracy per inner step
      python benchmarks/blur_headline.py table                  # the tables of docs/blur.md
      python benchmarks/blur_headline.py curves OUT.png NAME[:LABEL] ...  # evaluations against generations

Each variant is ``agentgraph train CONFIG --set ...`` into ``runs/blur_headline/<name>``; after it
finishes this writes ``benchmarks/results/runs/blur/<name>.json``: the command, a note, the
generations, the CPU minutes (``cpu_seconds`` of every meta-step plus set-up, from the run's
``metrics.jsonl``), every periodic evaluation (read-out accuracy of ``run.eval_runs`` fresh
networks on the test split after the inner steps) and the best / last / mean-of-last-five of them.
The run state stays in ``runs/`` (not committed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "benchmarks", "results", "runs", "blur")
RUNS = os.path.join(ROOT, "runs", "blur_headline")
SMALL = "examples/configs/blur_mnist14_authors.yaml"
PAPER = "examples/configs/blur_mnist14_paper.yaml"

# One convention of the authors' set back to agentgraph's (protocol options, settings.py).
BACK_TO_OURS: dict[str, list[str]] = {
    "bias_state": ["protocol.bias_state=e0"],
    "label_states": ["protocol.label_states=keep"],
    "label_coding": ["protocol.label_coding=as_given"],
    "feedback": ["protocol.feedback=tied"],
    "activations": ["protocol.sigma=tanh", "protocol.output_sigma=null"],
    "batch_update": ["protocol.batch_update=mean"],
    "synapse_init": ["protocol.synapse_init=normal"],
    "genome_init": ["protocol.genome_init=agentgraph", "protocol.genome_scale=0.5"],
}
# The same options, one of the authors' on top of agentgraph's conventions.
AUTHORS_ALONE: dict[str, list[str]] = {
    "bias_state": ["protocol.bias_state=ones"],
    "label_states": ["protocol.label_states=zero"],
    "label_coding": ["protocol.label_coding=pm1"],
    "feedback": ["protocol.feedback=separate"],
    "activations": ["protocol.sigma=relu_tanh", "protocol.output_sigma=tanh"],
    "batch_update": ["protocol.batch_update=sum"],
    "synapse_init": ["protocol.synapse_init=uniform"],
    "genome_init": ["protocol.genome_init=authors", "protocol.genome_scale=1.0"],
}
OURS = ["protocol.conventions=agentgraph"]

VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "abl_authors": (SMALL, [], "small setting, every authors' convention (the ablation's base)"),
    "abl_ours": (SMALL, OURS, "small setting, agentgraph's conventions"),
    **{f"abl_back_{k}": (SMALL, v, f"small setting, authors' conventions with {k} back to agentgraph's")
       for k, v in BACK_TO_OURS.items()},
    **{f"abl_alone_{k}": (SMALL, OURS + v, f"small setting, agentgraph's conventions with the authors' {k}")
       for k, v in AUTHORS_ALONE.items()},
    "abl_authors_sigma03": (SMALL, ["meta.optimizer.sigma=0.3"], "small setting, authors', CMA-ES sigma 0.3"),
    "abl_authors_b128": (SMALL, ["meta.batch=128", "meta.inner_steps=15", "meta.outer_batch=1"],
                         "small network and k=3, authors', the paper's data: 15 steps x batch 128"),
    "paper_authors": (PAPER, [], "the paper's CMA-ES protocol (hidden 20, not 512), authors' conventions"),
    "paper_ours": (PAPER, OURS + ["protocol.k=2"], "the paper's CMA-ES protocol (hidden 20), agentgraph's conventions"),
    "paper_authors_k3": (PAPER, ["protocol.k=3"], "the paper's CMA-ES protocol (hidden 20), authors', k = 3"),
    "paper_authors_h64": (PAPER, ["net.sizes=[196,64,10]"], "the paper's CMA-ES protocol, hidden 64, authors'"),
    "paper_authors_h512": (PAPER, ["net.sizes=[196,512,10]"],
                           "the paper's CMA-ES protocol at the paper's width (hidden 512), authors' conventions"),
    "paper_ours_h512": (PAPER, OURS + ["protocol.k=2", "net.sizes=[196,512,10]"],
                        "the paper's CMA-ES protocol at the paper's width (hidden 512), agentgraph's conventions"),
    **{f"paper_back_{k}": (PAPER, v, (f"the paper's CMA-ES protocol (hidden 20), authors' conventions with {k} back "
                                      "to agentgraph's")) for k, v in BACK_TO_OURS.items()},
    "paper_gradient_authors_init": (
        PAPER, ["meta.optimizer={kind: gradient}", "meta.objective=readout", "meta.meta_lr=5.0e-4",
                "protocol.objective=cross_entropy"],
        ("the paper's protocol (hidden 20), authors' conventions incl. their random genome, by gradient through the "
         "unroll (Adam 5e-4 as the paper's App. C.1, softmax cross-entropy of output state 0 as its §3.3): the "
         "meta-loss is ln 10 (a uniform softmax) from step 0 and never moves; stopped at 79 steps")),
    "paper_gradient_lr5e-3": (
        PAPER, ["meta.optimizer={kind: gradient}", "meta.objective=readout", "meta.meta_lr=5.0e-3",
                "protocol.objective=cross_entropy", "protocol.genome_init=agentgraph", "protocol.genome_scale=0.5"],
        ("as paper_gradient with Adam 5e-3: the meta-loss fell onto the same flat ln-10 plateau at meta-step 6 "
         "and stayed (stopped at 169 steps)")),
    "paper_gradient": (
        PAPER, ["meta.optimizer={kind: gradient}", "meta.objective=readout", "meta.meta_lr=1.0e-3",
                "protocol.objective=cross_entropy", "protocol.genome_init=agentgraph", "protocol.genome_scale=0.5",
                "run.eval_every=100"],
        ("the paper's protocol (hidden 20), authors' conventions but agentgraph's genome initialisation (the "
         "authors' starts on a flat ln-10 plateau), by gradient through the unroll (Adam 1e-3, softmax "
         "cross-entropy of output state 0 as the paper's §3.3), stopped at 4.0 CPU-min (run it with --cpu-cap=4.0)")),
}


def _rows(name: str) -> list[dict]:
    with open(os.path.join(RUNS, name, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _summary(name: str, config: str, sets: list[str], note: str, extra: list[str]) -> dict:
    rows = _rows(name)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in rows) + sum(r.get("setup_cpu_seconds", 0.0) for r in rows)
    evals = [[r["step"], round(r["eval"], 5)] for r in rows if "eval" in r]
    last5 = [e for _, e in evals[-5:]]
    cmd = " ".join(["agentgraph train", config, *[f'--set "{s}"' for s in sets], *extra,
                    f"--out-dir runs/blur_headline/{name}"])
    return {"command": cmd, "note": note, "generations": len(rows), "cpu_minutes": round(cpu / 60, 3),
            "wall_minutes": round(sum(r.get("seconds", 0.0) for r in rows) / 60, 3),
            "eval_every": evals, "best_eval": max(e for _, e in evals), "last_eval": evals[-1][1],
            "mean_last5_eval": round(sum(last5) / len(last5), 5),
            "meta_loss_first_last": [rows[0]["meta_loss"], rows[-1]["meta_loss"]]}


def _cpu_so_far(name: str) -> float:
    if not os.path.exists(os.path.join(RUNS, name, "metrics.jsonl")):
        return 0.0
    return sum(r.get("cpu_seconds", 0.0) + r.get("setup_cpu_seconds", 0.0) for r in _rows(name))


def run(name: str, extra: list[str], cpu_cap: float | None = None) -> None:
    """Train variant ``name``; with ``cpu_cap`` (CPU minutes, as the run's metrics count them) stop
    it at the first meta-step past the cap (equal-CPU comparisons)."""
    config, sets, note = VARIANTS[name]
    cmd = ["nice", "-n", "10", "agentgraph", "train", config, "--no-progress",
           "--out-dir", os.path.join(RUNS, name), *extra]
    for s in sets:
        cmd += ["--set", s]
    t = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        time.sleep(2)
        if cpu_cap is not None and _cpu_so_far(name) >= 60 * cpu_cap:
            proc.terminate()
            proc.wait()
            extra = [*extra, f"(stopped at {cpu_cap} CPU-min)"]
    s = _summary(name, config, sets, note, extra)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(s, f, indent=1)
    print(f"{name}: best {s['best_eval']:.3f} last {s['last_eval']:.3f} mean-last-5 {s['mean_last5_eval']:.3f} "
          f"({s['generations']} gens, {s['cpu_minutes']:.1f} CPU-min, {time.time() - t:.0f} s wall)", flush=True)


def table() -> None:
    print("| variant | best | last | mean of last 5 | generations | CPU-min |")
    print("|---|---|---|---|---|---|")
    for name in VARIANTS:
        p = os.path.join(OUT, f"{name}.json")
        if os.path.exists(p):
            with open(p) as f:
                s = json.load(f)
            print(f"| {name} | {s['best_eval']:.3f} | {s['last_eval']:.3f} | {s['mean_last5_eval']:.3f} | "
                  f"{s['generations']} | {s['cpu_minutes']:.1f} |")


def plot(out: str, panels: list[str]) -> None:
    """Accuracy per inner step of ``agentgraph eval --out`` JSONs, one panel each (``FILE:TITLE``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, spec in zip(axes[0], panels):
        path, title = spec.split(":", 1)
        with open(path) as f:
            r = json.load(f)
        for key, label, colour in (("protocol", "BLUR (CMA-ES genome, ours)", "C3"), ("sgd", "SGD", "C0"),
                                   ("adam", "Adam", "C2")):
            m, sd = r[key]["mean"], r[key]["std"]
            lr = f" (lr {r[key]['lr']:g})" if "lr" in r[key] else ""
            ax.plot(r["steps"], m, color=colour, label=label + lr)
            ax.fill_between(r["steps"], [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)],
                            color=colour, alpha=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("inner step (batch 128)")
        ax.set_ylabel(f"test accuracy ({r['runs']} runs)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def curves(out: str, names: list[str]) -> None:
    """The periodic evaluations of finished runs (their summaries) against the generation, with
    the paper's 0.84 as a line: ``python benchmarks/blur_headline.py curves OUT.png NAME ...``."""
    sys.path.insert(0, ROOT)
    from agentgraph.plots import plot_meta_curves

    runs = {}
    for spec in names:  # NAME or NAME:LABEL
        n, label = (spec.split(":", 1) + [spec])[:2]
        with open(os.path.join(OUT, f"{n}.json")) as f:
            runs[label] = [(g + 1, acc) for g, acc in json.load(f)["eval_every"]]
    plot_meta_curves(runs, out, xlabel="CMA-ES generation (population 80)",
                     ylabel="test accuracy after 15 steps (20 networks)", hline=0.84,
                     hline_label="the paper (hidden 512, best of 8 runs)", title="BLUR on MNIST 14x14")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] == "list":
        for n, (c, s, note) in VARIANTS.items():
            print(f"{n}: {note}\n    {c} {' '.join(s)}")
    elif args[0] == "plot":
        plot(args[1], args[2:])
    elif args[0] == "table":
        table()
    elif args[0] == "curves":
        curves(args[1], args[2:])
    elif args[0] == "summarise":  # a finished run's summary again (e.g. after its driver was stopped)
        names = [a for a in args[1:] if not a.startswith("--")]
        extra = [a for a in args[1:] if a.startswith("--")]
        for n in names:
            c, s, note = VARIANTS[n]
            with open(os.path.join(OUT, f"{n}.json"), "w") as f:
                json.dump(_summary(n, c, s, note, extra), f, indent=1)
    elif args[0] == "run":
        names = [a for a in args[1:] if not a.startswith("--")]
        cap = [float(a.split("=")[1]) for a in args[1:] if a.startswith("--cpu-cap=")]
        extra = [a for a in args[1:] if a.startswith("--") and not a.startswith("--cpu-cap=")]  # --meta-steps=N
        for n in names:
            run(n, extra, cap[0] if cap else None)
