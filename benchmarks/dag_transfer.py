"""A protocol meta-trained on random non-layered graphs, evaluated on *unseen* random graphs.

Run:  python benchmarks/dag_transfer.py CHECKPOINT [--seeds 100 101 102] [--hidden 10 20 40]
          [--edge-prob 0.15] [--runs 100] [--out benchmarks/results/repro/dag_transfer.json]

For every (seed, hidden units) pair a fresh ``random_dag`` is built with that seed — none of the
graph pool's training seeds — with the checkpoint's inputs, outputs, activation and loss, and the
protocol is evaluated on it exactly as ``agentgraph eval`` does (100 fresh weight draws; SGD and
Adam tuned on separate runs of the same graph). Prints one row per graph and writes JSON plus a
plot of the mean curves per graph size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agentgraph.runtime import reexec_with_hugepages  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    ap.add_argument("--hidden", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--edge-prob", type=float, default=None, help="default: the checkpoint's")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--out", default="benchmarks/results/repro/dag_transfer.json")
    a = ap.parse_args(argv)

    from agentgraph.meta.config import parse_config
    from agentgraph.meta.context import make_context
    from agentgraph.meta.evaluate import evaluate
    from agentgraph.meta.protocol_io import load_protocol, read_checkpoint
    from agentgraph.plots import plot_curves

    _, meta = read_checkpoint(a.checkpoint)  # any checkpoint format; the config in today's schema
    base = meta["config"]
    train_seeds = list(range(base["run"]["seed"], base["run"]["seed"] + base["net"].get("pool", 1)))
    if set(a.seeds) & set(train_seeds):
        ap.error(f"--seeds {a.seeds} overlap the training graphs' seeds {train_seeds}")
    rows, panels = [], []
    for h in a.hidden:
        per_size = []
        for seed in a.seeds:
            net = {**base["net"], "n_hidden": h, **({"edge_prob": a.edge_prob} if a.edge_prob is not None else {})}
            cfg = parse_config({**base, "net": net, "run": {**base["run"], "seed": seed}})
            ctx = make_context(cfg)
            learned, stats = load_protocol(a.checkpoint, ctx)
            t0 = time.perf_counter()
            res = evaluate(cfg, learned, stats, runs=a.runs, ctx=ctx)
            synapses = len(ctx.base.graph.agents("synapse"))
            # rows keep this script's keys: "mplp" (the protocol), "sgd", "adam"
            row = {"seed": seed, "n_hidden": h, "edge_prob": net["edge_prob"], "synapses": synapses,
                   "waves": len(ctx.plain.plan.forward), "seconds": time.perf_counter() - t0,
                   **{name: {"final_mean": res[m]["mean"][-1], "final_std": res[m]["std"][-1], "lr": res[m].get("lr")}
                      for name, m in (("mplp", "protocol"), ("sgd", "sgd"), ("adam", "adam"))}, "curves": res}
            rows.append(row)
            per_size.append(res)
            print(f"seed {seed} hidden {h:3d} ({synapses} synapses, {row['waves']} forward waves): "
                  f"MPLP {100 * row['mplp']['final_mean']:.1f} ± {100 * row['mplp']['final_std']:.1f} %, "
                  f"SGD {100 * row['sgd']['final_mean']:.1f} % (lr {row['sgd']['lr']}), "
                  f"Adam {100 * row['adam']['final_mean']:.1f} % (lr {row['adam']['lr']})", flush=True)
        panels.append((f"unseen random DAGs, {h} hidden units (seed {a.seeds[0]})", per_size[0]))
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"checkpoint": a.checkpoint, "train_seeds": train_seeds, "rows": rows}, f, indent=2)
    plot_curves(panels, os.path.splitext(a.out)[0] + ".png",
                title=f"MPLP meta-trained on random DAGs (seeds {train_seeds}), on unseen ones",
                labels={"protocol": "MPLP (no gradient)"})
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    reexec_with_hugepages()
    sys.exit(main())
