"""Predictive coding against backprop on the same agent-graph MLP, MNIST: test accuracy after a
fixed number of training steps and wall time per step (and per epoch, extrapolated), both rules
compiled by the same engine from the same initial weights and the same batches.

Run:  nice -n 10 python benchmarks/local_rules_pc.py [--steps 300] [--T 8] [--sizes 784,128,128,10]
      (needs MNIST in the cache: ``python -m agentgraph.data fetch mnist``;
      writes benchmarks/results/local_rules_pc.json)

Network: ``mlp(sizes)``, tanh hidden units, softmax cross-entropy (PCX's "PC-CE" energy: the
output layer's energy is the cross-entropy, output precision 1), init N(0, 1/fan_in)-like
``init_std``. Predictive coding: ``T`` inference iterations at rate ``gamma`` from the
feedforward values, then the local update at ``lr``; backprop: the ``sgd`` protocol at ``lr``. The
time is wall-clock on this machine (CPU), after the first (compiling) step; an epoch is 60,000 /
batch steps. PCX's published numbers are not reproduced here (see docs/local_rules.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from agentgraph.builders import mlp_network
from agentgraph.data.mnist import load_mnist_raw
from agentgraph.protocols.base import resolve
from graph_trainer import GraphTrainer


def _data():
    xtr, ytr, xte, yte = load_mnist_raw()
    f = lambda x: ((x.reshape(len(x), -1).astype(np.float32) / 255.0) - 0.1307) / 0.3081
    return f(xtr), ytr.astype(np.int64), f(xte), yte.astype(np.int64)


class Model(GraphTrainer):
    """One rule on the MLP, compiled: ``train(x, y)`` one step, ``accuracy(x, y)`` on held-out data."""

    def __init__(self, section: dict, sizes: list[int], init_std: float, batch: int):
        rule = resolve(section)
        net = rule.network(mlp_network(sizes, activation="tanh", loss="cross_entropy", init_std=init_std, seed=0))
        super().__init__(net, rule.params(rule.init(jax.random.PRNGKey(0), net.graph), {}, net.graph), batch)


def run(section: dict, args, data) -> dict:
    """Train ``args.steps`` steps of one rule; its accuracy, losses and times."""
    xtr, ytr, xte, yte = data
    sizes = [int(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    m = Model(section, sizes, args.init_std, args.batch)
    eye = np.eye(10, dtype=np.float32)
    order = np.random.default_rng(0).permutation(len(xtr))
    losses, first = [], None
    for k in range(args.steps):
        idx = order[(k * args.batch) % len(xtr):][:args.batch]
        losses.append(float(m.train(xtr[idx], eye[ytr[idx]])))
        if k == 0:
            first = time.perf_counter()
    t1 = time.perf_counter()
    per_step = (t1 - first) / max(args.steps - 1, 1)
    acc = m.accuracy(xte, yte)
    print(f"{section['rule']}: test accuracy {acc:.4f} after {args.steps} steps, {per_step * 1e3:.1f} ms/step, "
          f"compile+first step {first - t0:.1f} s", flush=True)
    return {"section": section, "test_accuracy": acc, "steps": args.steps, "ms_per_step": 1e3 * per_step,
            "s_per_epoch_extrapolated": per_step * 60000 / args.batch, "compile_and_first_step_s": first - t0,
            "loss_first_10": float(np.mean(losses[:10])), "loss_last_10": float(np.mean(losses[-10:]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--sizes", default="784,128,128,10")
    ap.add_argument("--init-std", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--gamma", type=float, default=0.1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "local_rules_pc.json"))
    args = ap.parse_args()
    data = _data()
    out = {"args": vars(args), "device": jax.devices()[0].device_kind, "runs": [
        run({"rule": "sgd", "lr": args.lr}, args, data),
        run({"rule": "predictive_coding", "T": args.T, "gamma": args.gamma, "lr": args.lr}, args, data)]}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
