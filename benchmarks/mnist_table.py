"""The MPLP paper's Table 1 with a meta-trained MNIST protocol: accuracy after 20 inner steps.

Run:  python benchmarks/mnist_table.py CHECKPOINT [--runs 100]
          [--out benchmarks/results/repro/mnist_table.json]

Rows (each mean ± std over ``--runs`` fresh random networks, every step scored on 100 test
images): MPLP on 12×12 MNIST, (144,50,10) sigmoid; the same protocol on a step activation; on
(784,100,10) with 28×28 MNIST; SGD (lr 0.1) and Adam (lr 0.01), the paper's baselines; and SGD
and Adam with their learning rates tuned on separate runs (``agentgraph.meta.evaluate.LR_GRID``).
Writes JSON with every curve and a plot of the curves (same name, ``.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agentgraph.runtime import reexec_with_hugepages  # noqa: E402

PAPER = {"mplp": (48.95, 6.35), "step": (43.07, 7.36), "mnist28": (37.60, 9.60), "sgd": (14.74, 5.80),
         "adam": (39.46, 9.83)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--out", default="benchmarks/results/repro/mnist_table.json")
    a = ap.parse_args(argv)

    from agentgraph.meta.config import parse_config
    from agentgraph.meta.context import make_context
    from agentgraph.meta.evaluate import evaluate
    from agentgraph.meta.protocol_io import load_protocol, read_checkpoint
    from agentgraph.plots import plot_curves

    _, meta = read_checkpoint(a.checkpoint)  # any checkpoint format; the config in today's schema
    base = meta["config"]
    variants = {
        "mplp": base,
        "step": {**base, "net": {**base["net"], "activation": "step"}},
        "mnist28": {**base, "net": {**base["net"], "sizes": [784, 100, 10]}, "data": {**base["data"], "image_size": 28}},
    }
    out = {"checkpoint": a.checkpoint, "meta_steps": meta["step"] + 1, "runs": a.runs, "paper": PAPER, "rows": {},
           "curves": {}}
    t_all = time.perf_counter()
    for name, data in variants.items():
        cfg = parse_config(data)
        ctx = make_context(cfg)
        learned, stats = load_protocol(a.checkpoint, ctx)
        t0 = time.perf_counter()
        fixed = evaluate(cfg, learned, stats, runs=a.runs, sgd_lr=0.1, adam_lr=0.01, ctx=ctx)
        out["curves"][name] = fixed
        out["rows"][name] = {"mean": fixed["protocol"]["mean"][-1], "std": fixed["protocol"]["std"][-1],
                             "seconds": time.perf_counter() - t0}
        if name == "mplp":
            out["rows"]["sgd"] = {"mean": fixed["sgd"]["mean"][-1], "std": fixed["sgd"]["std"][-1], "lr": 0.1}
            out["rows"]["adam"] = {"mean": fixed["adam"]["mean"][-1], "std": fixed["adam"]["std"][-1], "lr": 0.01}
            tuned = evaluate(cfg, learned, stats, runs=a.runs, ctx=ctx)
            out["curves"]["tuned"] = tuned
            for m in ("sgd", "adam"):
                out["rows"][f"{m}_tuned"] = {"mean": tuned[m]["mean"][-1], "std": tuned[m]["std"][-1],
                                             "lr": tuned[m]["lr"]}
        print(f"{name}: {100 * out['rows'][name]['mean']:.2f} ± {100 * out['rows'][name]['std']:.2f} %", flush=True)
    out["seconds"] = time.perf_counter() - t_all
    labels = {"mplp": "MPLP, 12×12, (144,50,10) sigmoid", "step": "MPLP → step activation",
              "mnist28": "MPLP → (784,100,10), 28×28", "sgd": "SGD (lr 0.1)", "adam": "Adam (lr 0.01)",
              "sgd_tuned": "SGD (tuned)", "adam_tuned": "Adam (tuned)"}
    print(f"\n| | paper | ours ({out['meta_steps']} meta-steps, {a.runs} runs) |\n|---|---|---|")
    for key, label in labels.items():
        r = out["rows"][key]
        p = PAPER.get(key)
        lr = f" (lr {r['lr']:g})" if "lr" in r and key.endswith("tuned") else ""
        print(f"| {label}{lr} | {f'{p[0]:.2f} ± {p[1]:.2f} %' if p else '—'} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} % |")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    panels = [("12×12, (144,50,10) sigmoid", out["curves"]["mplp"]),
              ("transferred: step activation", {k: v for k, v in out["curves"]["step"].items() if k != "sgd" and k != "adam"}),
              ("transferred: (784,100,10), 28×28", {k: v for k, v in out["curves"]["mnist28"].items() if k not in ("sgd", "adam")})]
    plot_curves(panels, os.path.splitext(a.out)[0] + ".png", title=f"MNIST, accuracy per inner step ({a.runs} fresh networks)",
                labels={"protocol": "MPLP (no gradient)"})
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    reexec_with_hugepages()
    sys.exit(main())
