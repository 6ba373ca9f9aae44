"""Attention-seeking neurons against backprop: test accuracy after each epoch, same network, same
optimiser (plain SGD, same learning rate), same data order per seed.

Rules: backprop (the library's SGD protocol), attention ``w²/2`` (the paper's equivalence: it
must match backprop), attention ``|w|`` (sign feedback) and ``|w|³/3``. Each rule trains
``--epochs`` epochs (``N / batch`` steps of batches drawn with replacement), and its test accuracy
is measured after each; mean ± std over ``--seeds``. Library API:
:mod:`agentgraph.benchmarks.forgetting` (one task = the whole dataset).

Run:  python benchmarks/attention_learning.py [--datasets digits mnist fashion_mnist] [--epochs 5]
          [--seeds 3] [--hidden 100] [--lr 0.05] [--batch 32] [--png docs/img/attention_learning.png]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from agentgraph.benchmarks.forgetting import Task, protocol_learner, train_task
from agentgraph.data import load_dataset
from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context

RULES = {"backprop (SGD)": {"rule": "sgd"}, "attention w²/2": {"rule": "attention", "power": 2.0},
         "attention |w|": {"rule": "attention", "power": 1.0}, "attention |w|³/3": {"rule": "attention", "power": 3.0}}
SIZES = {"digits": 8, "mnist": 28, "fashion_mnist": 28}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(SIZES))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "attention_learning.json"))
    ap.add_argument("--png", default=None)
    a = ap.parse_args()
    res = {"epochs": a.epochs, "seeds": a.seeds, "hidden": a.hidden, "lr": a.lr, "batch": a.batch, "datasets": {}}
    for name in a.datasets:
        t0 = time.time()
        size = SIZES.get(name, 28)
        ds = load_dataset(name, size=size)
        task = Task(name, ds.x_train, ds.y_train, ds.x_test, ds.y_test)
        steps = ds.x_train.shape[0] // a.batch
        res["datasets"][name] = {"net": [ds.x_train.shape[1], a.hidden, ds.n_classes], "rules": {}}
        for label, proto in RULES.items():
            cfg = parse_config({"net": {"kind": "mlp", "sizes": [ds.x_train.shape[1], a.hidden, ds.n_classes],
                                        "activation": "tanh", "loss": "cross_entropy", "init_std": 0.05},
                                "data": {"task": name, "image_size": size},
                                "protocol": {**proto, "lr": a.lr}})
            ctx = make_context(cfg)
            L = protocol_learner(ctx, ctx.params({}, {}), label, batch=a.batch)
            acc_fn = jax.jit(lambda s, x, y, L=L: (L.logits(s, x).argmax(-1) == y).mean())
            curves = []
            for seed in range(a.seeds):
                state = L.init(jax.random.PRNGKey(seed))
                curve = [float(acc_fn(state, ds.x_test, ds.y_test))]
                for e in range(a.epochs):
                    state = train_task(L, state, task, steps, jax.random.PRNGKey(1000 * seed + e), ds.n_classes)
                    curve.append(float(acc_fn(state, ds.x_test, ds.y_test)))
                curves.append(curve)
            c = np.array(curves)
            res["datasets"][name]["rules"][label] = {"mean": c.mean(0).tolist(), "std": c.std(0).tolist()}
            print(f"{name:>14} {label:>18}: " + "  ".join(f"{100 * m:5.2f}±{100 * s:4.2f}"
                                                           for m, s in zip(c.mean(0), c.std(0))), flush=True)
        res["datasets"][name]["seconds"] = time.time() - t0
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    if a.png:
        from agentgraph.plots import plot_curves
        panels = [(f"{n} ({d['net'][0]}-{d['net'][1]}-{d['net'][2]})",
                   {"metric": "accuracy", "steps": list(range(a.epochs + 1)), **d["rules"]})
                  for n, d in res["datasets"].items()]
        plot_curves(panels, a.png, methods=tuple(RULES), title="attention-seeking neurons vs backprop", xlabel="epoch")


if __name__ == "__main__":
    main()
