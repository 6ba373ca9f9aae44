"""Catastrophic forgetting of every learning rule the library has, on permuted and split sequences.

Each rule learns a sequence of tasks (``--tasks`` of them, ``--examples`` training examples each,
batch 8 — VSML batch 1, the same examples), starting from a fresh network; after each task it is
scored on every task's test split (split sequences: among the task's own classes,
task-incremental). Reported per rule and sequence, mean ± std over ``--seeds``: the average
accuracy after the last task and the average forgetting (best earlier accuracy minus final, over
all but the last task). Library API: :mod:`agentgraph.benchmarks.forgetting`.

Rules: SGD and Adam (backprop; learning rates tuned on a single task, from a grid), attention-
seeking neurons with attention ``w²/2`` (= SGD) and ``|w|`` (sign feedback), and the meta-trained
protocols given as ``--protocol NAME=CKPT`` (default: the shipped MPLP ``pretrained/mnist.npz``,
meta-trained on MNIST 12×12 with (144, 50, 10); BLUR meta-trained by gradient on MNIST 14×14 with
(196, 20, 10), ``benchmarks/results/protocols/es/blur-gradient_s0.npz``; VSML meta-trained on digits
with (64, 10), ``benchmarks/results/protocols/vsml/gradient_lr1e-2_s0.npz`` — the runs' exported
protocols, docs/results/es.md and docs/vsml.md). Every rule runs on the same network, (d, ``--hidden``, 10) with hidden activation
``--activation`` (default sigmoid, MNIST 12×12: (144, 50, 10), MPLP's own); a meta-trained protocol is loaded into it (its learned
parameters are shared per kind or layer type, so they fit other widths).

Run:  python benchmarks/forgetting.py [--dataset mnist] [--image-size 12] [--hidden 50] [--activation sigmoid] [--tasks 5] [--examples 800]
          [--seeds 3] [--protocol mplp=agentgraph/pretrained/digits.npz ...] [--png docs/img/forgetting.png]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
import optax

from agentgraph.benchmarks.forgetting import (
    average_accuracy,
    forgetting,
    optax_learner,
    permuted_tasks,
    protocol_learner,
    run_sequence,
    split_tasks,
)
from agentgraph.data import load_dataset
from agentgraph.meta.config import MLPNetConfig, parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.protocol_io import checkpoint_config, load_protocol

DEFAULT_PROTOCOLS = ("mplp=agentgraph/pretrained/mnist.npz",
                     "blur=benchmarks/results/protocols/es/blur-gradient_s0.npz",  # its ckpt_00002999.npz
                     "vsml=benchmarks/results/protocols/vsml/gradient_lr1e-2_s0.npz")  # its ckpt_00000699.npz


def _net(a) -> dict:
    sizes = [a.image_size ** 2, *([a.hidden] if a.hidden else []), 10]
    return {"kind": "mlp", "sizes": sizes, "activation": a.activation, "loss": "cross_entropy", "init_std": 0.05}


def _base_config(a, protocol=None):
    d = {"net": _net(a),
         "data": {"task": a.dataset, "image_size": a.image_size}}
    if protocol:
        d["protocol"] = protocol
    return parse_config(d)


def _tune(make_learner, grid, task, steps, n_out):
    """The grid value whose learner scores best on ``task`` after ``steps`` updates (one seed)."""
    best, best_acc = None, -1.0
    for v in grid:
        R = run_sequence(make_learner(v), [task], steps, jax.random.PRNGKey(7), n_out)
        if R[0, 0] > best_acc:
            best, best_acc = v, R[0, 0]
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--image-size", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=50, help="hidden units of the network every rule runs on")
    ap.add_argument("--activation", default="sigmoid", help="hidden activation of the network every rule runs on")
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--examples", type=int, default=800, help="training examples per task")
    ap.add_argument("--test", type=int, default=1000, help="test examples per task")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--protocol", action="append", default=None, help="NAME=CKPT of a meta-trained protocol")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "forgetting.json"))
    ap.add_argument("--png", default=None)
    a = ap.parse_args()
    t0 = time.time()
    ds = load_dataset(a.dataset, size=a.image_size)
    n_out = ds.n_classes
    sequences = {"permuted": permuted_tasks(ds, a.tasks, seed=0, test=a.test),
                 "split": split_tasks(ds, [(2 * i, 2 * i + 1) for i in range(a.tasks)], test=a.test)}
    steps8 = a.examples // 8
    base = make_context(_base_config(a))
    first = sequences["permuted"][0]
    sgd_lr = _tune(lambda lr: optax_learner(base, optax.sgd(lr), "sgd"), (0.03, 0.1, 0.3, 1.0), first, steps8, n_out)
    adam_lr = _tune(lambda lr: optax_learner(base, optax.adam(lr), "adam"), (1e-3, 3e-3, 1e-2, 3e-2), first, steps8,
                    n_out)
    learners = [optax_learner(base, optax.sgd(sgd_lr), f"SGD ({sgd_lr})"),
                optax_learner(base, optax.adam(adam_lr), f"Adam ({adam_lr})")]
    for power, label in ((2.0, "attention w²/2"), (1.0, "attention |w|")):
        mk = lambda lr, power=power: protocol_learner(  # noqa: E731
            c := make_context(_base_config(a, {"rule": "attention", "lr": lr, "power": power})), c.params({}, {}), "")
        lr = _tune(mk, (0.03, 0.1, 0.3, 1.0), first, steps8, n_out)
        learners.append(mk(lr)._replace(name=f"{label} ({lr})"))
    for spec in a.protocol or DEFAULT_PROTOCOLS:
        name, _, path = spec.partition("=")
        cfg = checkpoint_config(path)
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"task": a.dataset, "image_size": a.image_size}),
                                     "net": MLPNetConfig(**_net(a))})
        ctx = make_context(cfg)
        learned, stats = load_protocol(path, ctx)
        # the batch the protocol was meta-trained with (VSML learns online: 1)
        learners.append(protocol_learner(ctx, ctx.params(learned, stats), f"{name} (meta-trained)", batch=cfg.meta.batch))
    res = {"dataset": a.dataset, "image_size": a.image_size, "net": _net(a)["sizes"], "tasks": a.tasks,
           "examples": a.examples,
           "seeds": a.seeds, "rules": {}}
    for L in learners:
        steps = a.examples // L.batch
        res["rules"][L.name] = {}
        for seq_name, tasks in sequences.items():
            Rs = [run_sequence(L, tasks, steps, jax.random.PRNGKey(s), n_out) for s in range(a.seeds)]
            acc = [average_accuracy(R) for R in Rs]
            fgt = [forgetting(R) for R in Rs]
            res["rules"][L.name][seq_name] = {"avg_accuracy": [float(np.mean(acc)), float(np.std(acc))],
                                              "forgetting": [float(np.mean(fgt)), float(np.std(fgt))],
                                              "R_mean": np.mean(Rs, axis=0).tolist()}
            print(f"{L.name:>28} {seq_name:>9}: accuracy {100 * np.mean(acc):5.1f} ± {100 * np.std(acc):4.1f}  "
                  f"forgetting {100 * np.mean(fgt):5.1f} ± {100 * np.std(fgt):4.1f}", flush=True)
    res["seconds"] = time.time() - t0
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {a.out} ({res['seconds']:.0f} s)")
    if a.png:
        from agentgraph.plots import plot_forgetting
        plot_forgetting(res, a.png)


if __name__ == "__main__":
    main()
