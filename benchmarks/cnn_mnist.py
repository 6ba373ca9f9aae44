"""The gradient protocol on an agent-graph CNN trained on MNIST 28×28, against the hand-written
``lax.conv`` CNN (``benchmarks/baselines/cnn_dense.py``) with SGD and with Adam — same network,
same initial weights, same batches; learning rates tuned on a held-out part of the training set.

Run:  python benchmarks/cnn_mnist.py [--epochs 3] [--batch 32] [--out benchmarks/results/cnn_mnist.json]
      (needs MNIST in the cache: ``python -m agentgraph.data fetch mnist``)
      python benchmarks/cnn_mnist.py --dataset fashion_mnist   # the second dataset
      (-> benchmarks/results/cnn_fashion_mnist.json, docs/img/cnn_fashion_mnist.png; needs
      ``python -m agentgraph.data fetch fashion_mnist``. No package on the reachable registries
      ships CIFAR-10's images — the CIFAR packages there download them at run time — so
      Fashion-MNIST 28×28 is the second dataset.)

Network: conv 16@3×3 pad 1 → relu → avg pool 2 → conv 32@3×3 pad 1 → relu → avg pool 2 → dense 64
→ relu → dense 10, softmax cross-entropy, He initialisation. Learning rates: SGD and Adam each
tried at three rates for one epoch on 55k training images, scored on the other 5k; the best of
each trains ``--epochs`` epochs on the 55k, test accuracy on the 10k test images after every
epoch (and on 2k test images every 400 steps, for the curve). The agent graph runs the SGD rate
(the gradient protocol *is* SGD): its curve should lie on the hand-written SGD curve.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "baselines"))

from agentgraph import compile  # noqa: E402
from agentgraph.builders import Conv, Dense, Pool, cnn, library_network  # noqa: E402
from agentgraph.data import load_fashion_mnist_raw  # noqa: E402
from agentgraph.data.mnist import load_mnist_raw  # noqa: E402
from agentgraph.protocols import gradient  # noqa: E402
import cnn_dense  # noqa: E402  (benchmarks/baselines)
from graph_trainer import GraphTrainer  # noqa: E402

SHAPE = (1, 28, 28)
LAYERS = [Conv(16, 3, 1, 1), Pool(2), Conv(32, 3, 1, 1), Pool(2), Dense(64)]
SGD_LRS, ADAM_LRS = (0.03, 0.1, 0.3), (3e-4, 1e-3, 3e-3)


#: dataset -> (loader of the uint8 images and labels, pixel mean, pixel std)
DATASETS = {"mnist": (load_mnist_raw, 0.1307, 0.3081), "fashion_mnist": (load_fashion_mnist_raw, 0.2860, 0.3530)}
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


def _data(dataset: str = "mnist"):
    load, mean, std = DATASETS[dataset]
    xtr, ytr, xte, yte = load()
    f = lambda x: ((x.reshape(len(x), -1).astype(np.float32) / 255.0) - mean) / std  # noqa: E731
    return f(xtr), ytr.astype(np.int64), f(xte), yte.astype(np.int64)


def _batches(n: int, batch: int, epoch: int):
    order = np.random.default_rng(1000 + epoch).permutation(n)
    return [order[i:i + batch] for i in range(0, n - batch + 1, batch)]


class Dense_:
    """The hand-written CNN with an optax optimiser."""

    def __init__(self, params, opt):
        self.params, self.opt = params, opt
        self.state = opt.init(params)

        def step(params, state, x, y):
            loss, g = jax.value_and_grad(cnn_dense.loss)(params, x, y, SHAPE, LAYERS, 10)
            upd, state = opt.update(g, state, params)
            return optax.apply_updates(params, upd), state, loss

        self._step = jax.jit(step)
        self._logits = jax.jit(lambda p, x: cnn_dense.forward(p, x, SHAPE, LAYERS, 10))

    def train(self, x, y):
        self.params, self.state, loss = self._step(self.params, self.state, x, y)
        return loss

    def accuracy(self, x, y) -> float:
        hits = sum(int((np.argmax(np.asarray(self._logits(self.params, x[i:i + 1000])), 1) == y[i:i + 1000]).sum())
                   for i in range(0, len(x), 1000))
        return hits / len(x)


class Graph_(GraphTrainer):
    """The agent-graph CNN under the gradient protocol (or another fixed rule's kinds, ``rule``)."""

    def __init__(self, g, lr: float, batch: int, rule=None):
        net = library_network(g, 0.1)
        if rule is not None:
            net = rule.network(net)
        super().__init__(net, gradient.params(net.graph, lr), batch)


def _run(model, x, y, xte, yte, epochs: int, batch: int, every: int, label: str) -> dict:
    eye = np.eye(10, dtype=np.float32)
    curve, per_epoch, t0, k = [], [], time.perf_counter(), 0
    for e in range(epochs):
        for idx in _batches(len(x), batch, e):
            model.train(x[idx], eye[y[idx]])
            k += 1
            if every and k % every == 0:
                curve.append((k, model.accuracy(xte[:2000], yte[:2000])))
        per_epoch.append(model.accuracy(xte, yte))
        print(f"{label}: epoch {e + 1} test accuracy {per_epoch[-1]:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"test_accuracy": per_epoch, "curve": curve, "seconds": time.perf_counter() - t0}


def attention_runs(a, powers) -> None:
    """Attention-seeking neurons on the same CNN, weights and batches, one epoch at the SGD rate
    tuned for backprop; stored under ``attention_p1`` / ``attention_p2`` in ``--out``."""
    from agentgraph.protocols.attention import attention

    with open(a.out) as f:
        out = json.load(f)
    x, y, xte, yte = _data(a.dataset)
    layers = [Conv(8, 3, 1, 1), Pool(2), Conv(16, 3, 1, 1), Pool(2)] if a.small else LAYERS
    g = cnn(SHAPE, layers, 10, "relu", "cross_entropy", init_std="he", seed=0)
    lr = a.lr or out["tuning"]["sgd"]["lr"]
    tag = f"_lr{a.lr:g}" if a.lr else ""
    runs = [(f"backprop{tag}", None)] if a.small else []
    runs += [(f"attention_p{p:g}{tag}", attention(lr, power=p)) for p in powers]
    for name, rule in runs:
        with open(a.out) as f:  # another run may have added its results meanwhile
            out = json.load(f)
        res = _run(Graph_(g, lr, a.batch, rule), x[:55000], y[:55000], xte, yte, 1, a.batch, a.every, f"{name}")
        if a.small:
            out.setdefault("small_cnn", {"network": "conv8-pool-conv16-pool-10", "synapse_uses": len(g.agents("synapse"))})[name] = res
        else:
            out[name] = res
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)
        print("wrote", a.out)


def plot(out: dict, path: str) -> None:
    """Test accuracy (2k test images) against training steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key, label in (("agentgraph_sgd", "agent graph, gradient protocol (SGD)"), ("handwritten_sgd", "hand-written lax.conv, SGD"),
                       ("handwritten_adam", "hand-written lax.conv, Adam")):
        steps, acc = zip(*out[key]["curve"])
        ax.plot(steps, 100 * np.array(acc), label=f"{label}: {100 * out[key]['test_accuracy'][-1]:.2f} %")
    ax.set_xlabel("training steps (batch %d)" % out["batch"])
    ax.set_ylabel("test accuracy (2k images), %")
    accs = [a for k in ("agentgraph_sgd", "handwritten_sgd", "handwritten_adam") for _, a in out[k]["curve"]]
    ax.set_ylim(max(0.0, 100 * min(accs) - 1), min(100.0, 100 * max(accs) + 1.5))
    ax.set_title(f"{TITLES[out.get('dataset', 'mnist')]} 28×28, CNN of {out['synapse_uses']:,} synapse agents (tied kernels)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print("wrote", path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--every", type=int, default=400)
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    ap.add_argument("--out", default=None, help="default benchmarks/results/cnn_<dataset>.json")
    ap.add_argument("--plot", default=None, help="default docs/img/cnn_<dataset>.png")
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from --out")
    ap.add_argument("--small", action="store_true",
                    help="with --attention: run on the smaller CNN of bench_cnn.py (conv 8 -> pool -> conv 16 -> pool -> "
                         "dense 10), with backprop on it for one epoch as the reference (stored under 'small_cnn')")
    ap.add_argument("--lr", type=float, default=None, help="with --attention: this rate instead of SGD's tuned one")
    ap.add_argument("--attention", type=float, nargs="*", default=None, metavar="POWER",
                    help="add attention-seeking neurons (powers, default 1 2: |w| and w²/2) for one epoch to --out, "
                         "against backprop's first epoch")
    a = ap.parse_args()
    here = os.path.dirname(__file__)
    a.out = a.out or os.path.join(here, "results", f"cnn_{a.dataset}.json")
    a.plot = a.plot or os.path.join(here, "..", "docs", "img", f"cnn_{a.dataset}.png")
    if a.plot_only:
        with open(a.out) as f:
            plot(json.load(f), a.plot)
        return
    if a.attention is not None:
        attention_runs(a, a.attention or [1.0, 2.0])
        return
    x, y, xte, yte = _data(a.dataset)
    xtr, ytr, xva, yva = x[:55000], y[:55000], x[55000:], y[55000:]
    g = cnn(SHAPE, LAYERS, 10, "relu", "cross_entropy", init_std="he", seed=0)
    init = [tuple(map(jnp.asarray, wb)) for wb in cnn_dense.params_of(compile(g).to_agents(compile(g).init(1)), SHAPE,
                                                                      LAYERS, 10)]
    tuned = {}
    for name, lrs, make in (("sgd", SGD_LRS, optax.sgd), ("adam", ADAM_LRS, optax.adam)):
        scores = {lr: _run(Dense_(init, make(lr)), xtr, ytr, xva, yva, 1, a.batch, 0, f"tune {name} {lr}")["test_accuracy"][0]
                  for lr in lrs}
        tuned[name] = {"lr": max(scores, key=scores.get), "validation": scores}
    out = {"dataset": a.dataset, "network": "conv16-pool-conv32-pool-dense64-10", "synapse_uses": len(g.agents("synapse")), "batch": a.batch,
           "epochs": a.epochs, "tuning": tuned}
    out["agentgraph_sgd"] = _run(Graph_(g, tuned["sgd"]["lr"], a.batch), xtr, ytr, xte, yte, a.epochs, a.batch, a.every,
                                 "agent graph (gradient protocol)")
    out["handwritten_sgd"] = _run(Dense_(init, optax.sgd(tuned["sgd"]["lr"])), xtr, ytr, xte, yte, a.epochs, a.batch,
                                  a.every, "hand-written SGD")
    out["handwritten_adam"] = _run(Dense_(init, optax.adam(tuned["adam"]["lr"])), xtr, ytr, xte, yte, a.epochs, a.batch,
                                   a.every, "hand-written Adam")
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    plot(out, a.plot)
    print(json.dumps({k: v["test_accuracy"] for k, v in out.items() if isinstance(v, dict) and "test_accuracy" in v}))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
