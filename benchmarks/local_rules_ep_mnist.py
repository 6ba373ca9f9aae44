"""Equilibrium propagation against backprop on Scellier & Bengio (2017)'s MNIST setting: the
784-500-10 network, batch 20, 20 free / 4 nudged relaxation steps at step 0.5, per-layer rates,
trained epoch by epoch from the same initial weights in the same batch order; test accuracy on the
10,000 test images after each epoch and wall time per epoch (training only).

Run:  nice -n 10 python benchmarks/local_rules_ep_mnist.py [--epochs 25] [--budget-min 20]
      nice -n 10 python benchmarks/local_rules_ep_mnist.py --probe 100 500 --rate-scale 0.25 --label probe
      nice -n 10 python benchmarks/local_rules_ep_mnist.py --activation hard_sigmoid --output-activation hard_sigmoid \
          --rules equilibrium,sgd,sgd_linear --label hard_sigmoid --budget-min 40   (their clipping, outputs too)
      (needs MNIST in the cache: ``python -m agentgraph.data fetch mnist``; writes (merges the
      run under ``--label`` into) benchmarks/results/local_rules_ep_mnist-cpu.json)

The mapping of the authors' setting (``bscellier/Towards-a-Biologically-Plausible-Backprop``,
``train_model.py`` net1 and ``model.py``) onto the ``equilibrium`` protocol (docs/local_rules.md, "Benchmarks against the
families' libraries", EP on Scellier & Bengio's setting; the default activation is relu):

* their cost is ``Σ (s_out − y)²`` (no ½) and their β = 0.5, so their nudging force is
  ``2β (y − s) = 1.0 (y − s)``; ours is ``β (y − u)`` on ``½ Σ (u − y)²``: **β = 1**;
* their update is ``(α/β_theirs)(ρρ|β − ρρ|0)`` (batch means), ours ``(lr/β)(…)``: the same update
  at **lr = 2α**: 0.2 (input→hidden weights and hidden biases), 0.1 (hidden→output);
  backprop (``sgd`` with the same per-group rates) follows the gradient EP's update tends to;
* their step ε = 0.5 on ``s ← clip(s − ε ∂F/∂s)`` is our γ = 0.5 (``u ← u + γ(drive − u)``);
* their β sign is drawn at random per batch; ``nudge: centred`` is that update's expectation
  (``--nudge positive``: one nudged phase at +β);
* ρ: their hard sigmoid ``clip(s, 0, 1)`` is ``--activation hard_sigmoid``; their output is clipped
  to [0, 1] too: ``--output-activation hard_sigmoid`` (the protocol's ``output_activation``: cost
  and nudge on ``clip(u_out)``, as theirs on the clipped output state); without it our outputs are
  linear (the L2 head). Backprop (``sgd``) then runs on the same function, the L2 loss of the
  clipped output (the library ``mlp``'s ``output_activation``: the loss whose gradient EP's update
  tends to); ``sgd_linear`` is backprop with linear outputs (the earlier baseline);
* Glorot-uniform weights ``±√(6/(n_in+n_out))``, zero biases (theirs); pixels in [0, 1] (theirs);
  training on the first 50,000 training images in their fixed order (their training split,
  no shuffling); their free phase starts from persistent particles (each example's last fixed
  point), ours from ``u = 0``.
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


#: The authors' net1 (train_model.py): per-layer rates α, their β, step ε, iterations.
THEIRS = {"sizes": [784, 500, 10], "batch": 20, "epochs": 25, "n_it_neg": 20, "n_it_pos": 4, "epsilon": 0.5,
          "beta": 0.5, "alphas": [0.1, 0.05], "cost": "sum (s_out - y)^2", "rho": "clip(s, 0, 1)"}


def setting(alphas=(0.1, 0.05), beta_theirs: float = 0.5, epsilon: float = 0.5, T: int = 20, K: int = 4,
            nudge: str = "centred", scale: float = 1.0, output_activation: str | None = None) -> dict:
    """Their setting as an ``equilibrium`` protocol section (module docstring): β = 2 β_theirs,
    rates ``lr = 2α`` per layer (weights and the biases of the layer's units), γ = ε; ``scale``
    multiplies every rate (an adjustment); ``output_activation`` (``hard_sigmoid``: their clipped
    output) the protocol's, left out when ``None`` (linear outputs).

    Example:
        >>> s = setting()
        >>> s["beta"], s["gamma"], s["lrs"]["synapse:0"], s["lrs"]["bias:1"]
        (1.0, 0.5, 0.2, 0.1)
    """
    lrs = {}
    for l, a in enumerate(alphas):
        lrs[f"synapse:{l}"] = lrs[f"bias:{l}"] = round(2.0 * a * scale, 10)
    out = {"rule": "equilibrium", "T": T, "K": K, "beta": 2.0 * beta_theirs, "gamma": epsilon,
           "lr": min(lrs.values()), "lrs": lrs, "nudge": nudge, "learn": ["lr"]}
    return out if output_activation is None else {**out, "output_activation": output_activation}


def glorot(sizes, seed: int = 0) -> list[np.ndarray]:
    """Their initial weights: uniform ``±√(6/(n_in+n_out))`` per layer, ``[n_in, n_out]`` each."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, size=(a, b)) * np.sqrt(6.0 / (a + b)) for a, b in zip(sizes[:-1], sizes[1:])]


class Model(GraphTrainer):
    """One rule on ``mlp(sizes)`` (``activation`` hidden units, L2 head; ``output_activation`` on the
    library network's outputs — for backprop; EP takes its own in ``section``), compiled, with the
    given initial weights ``ws`` (zero biases) and per-group rates ``lrs`` (``section`` gives the rule).

    Example:
        >>> sec = setting(T=2, K=1)
        >>> m = Model(sec, [3, 4, 2], glorot([3, 4, 2]), sec["lrs"], batch=2)
        >>> np.allclose(m.weights()[1], glorot([3, 4, 2])[1], atol=1e-6)
        True
    """

    def __init__(self, section: dict, sizes, ws, lrs: dict, batch: int, activation: str = "sigmoid",
                 output_activation: str | None = None):
        rule = resolve(section)
        net = rule.network(mlp_network(sizes, activation=activation, loss="l2", output_activation=output_activation,
                                       seed=0))
        params = rule.params(rule.init(jax.random.PRNGKey(0), net.graph), {}, net.graph)
        params = {g: {**p, "lr": lrs[g]} if g in lrs else p for g, p in params.items()}
        super().__init__(net, params, batch)
        self.sizes, self.rows = list(sizes), self._rows(sizes)
        w = np.asarray(self.state["synapse"]["w"]).copy()
        for l, W in enumerate(ws):
            w[self.rows[l]] = W
        self.state["synapse"]["w"] = jax.numpy.asarray(w, self.state["synapse"]["w"].dtype)
        self.state["bias"]["b"] = jax.numpy.zeros_like(self.state["bias"]["b"])

    def _rows(self, sizes) -> list[np.ndarray]:
        index = self.prog.index
        out = []
        for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            r = np.array([index[("w", l, i, j)][1] for i in range(a) for j in range(b)]).reshape(a, b)
            out.append(r)
        return out

    def weights(self) -> list[np.ndarray]:
        w = np.asarray(self.state["synapse"]["w"])
        return [w[r] for r in self.rows]


def _data(n_train: int):
    xtr, ytr, xte, yte = load_mnist_raw()
    f = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0  # noqa: E731  pixels in [0, 1], as theirs
    return f(xtr[:n_train]), ytr[:n_train].astype(np.int64), f(xte), yte.astype(np.int64)


def _epoch(m: Model, xtr, ytr, batch: int) -> tuple[float, float, bool]:
    eye = np.eye(10, dtype=np.float32)
    losses = []
    t0 = time.perf_counter()
    for k in range(len(xtr) // batch):  # their order: fixed, no shuffling
        sl = slice(k * batch, (k + 1) * batch)
        losses.append(m.train(xtr[sl], eye[ytr[sl]]))
    jax.block_until_ready(m.state)
    dt = time.perf_counter() - t0
    loss = np.asarray(losses, np.float64)
    return dt, float(np.mean(loss[-500:])), bool(np.all(np.isfinite(loss)))


def probe(widths, a, xtr, ytr, steps: int = 40) -> dict:
    """The training loss of the first ``steps`` EP steps (batch 20, the mapped setting, Glorot
    weights) for each hidden width in ``widths``: where the loss starts and the first step whose
    loss is not finite — does the relaxation itself blow up as the hidden layer widens?"""
    eye = np.eye(10, dtype=np.float32)
    sec = setting(THEIRS["alphas"], a.beta_theirs, a.gamma, THEIRS["n_it_neg"], THEIRS["n_it_pos"], a.nudge,
                  a.rate_scale, a.output_activation)
    out = {}
    for h in widths:
        sizes = [784, h, 10]
        m = Model(sec, sizes, glorot(sizes, a.seed), sec["lrs"], THEIRS["batch"], a.activation)
        losses = [float(m.train(xtr[k * 20:(k + 1) * 20], eye[ytr[k * 20:(k + 1) * 20]])) for k in range(steps)]
        bad = [k for k, v in enumerate(losses) if not np.isfinite(v)]
        out[str(h)] = {"loss": losses, "first_non_finite_step": bad[0] if bad else None}
        print(f"[probe] hidden {h}: loss at step 0 {losses[0]:.3f}, step {steps - 1} {losses[-1]:.3f}, "
              f"first non-finite step {bad[0] if bad else None}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--budget-min", type=float, default=20.0, help="stop starting epochs after this many minutes")
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--activation", default="relu", help="relu equals their clip(s, 0, 1) below 1; sigmoid "
                    "(bounded, but 0.5 at rest) diverged in the first steps (docs/local_rules.md)")
    ap.add_argument("--output-activation", default=None, help="the output units' activity (EP's protocol "
                    "output_activation; backprop's mlp output_activation for rule sgd): hard_sigmoid is their clipped "
                    "output; default linear")
    ap.add_argument("--nudge", default="centred", choices=["centred", "positive"])
    ap.add_argument("--gamma", type=float, default=0.5, help="their epsilon")
    ap.add_argument("--beta-theirs", type=float, default=0.5)
    ap.add_argument("--rate-scale", type=float, default=1.0, help="multiplies every rate (an adjustment)")
    ap.add_argument("--rules", default="equilibrium,sgd", help="of equilibrium, sgd (backprop, outputs as "
                    "--output-activation), sgd_linear (backprop, linear outputs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="main")
    ap.add_argument("--probe", type=int, nargs="*", default=None, metavar="HIDDEN",
                    help="instead of training: the first 40 steps' loss at these hidden widths (stored under --label)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "local_rules_ep_mnist-cpu.json"))
    a = ap.parse_args()
    sizes, batch = THEIRS["sizes"], THEIRS["batch"]
    xtr, ytr, xte, yte = _data(a.n_train)
    if a.probe:
        allrec = {}
        if os.path.exists(a.out):
            with open(a.out) as f:
                allrec = json.load(f)
        allrec[a.label] = {"args": vars(a), "probe": probe(a.probe, a, xtr, ytr)}
        with open(a.out, "w") as f:
            json.dump(allrec, f, indent=1)
        print("wrote", a.out)
        return
    sec = setting(THEIRS["alphas"], a.beta_theirs, a.gamma, THEIRS["n_it_neg"], THEIRS["n_it_pos"], a.nudge,
                  a.rate_scale, a.output_activation)
    ws = glorot(sizes, a.seed)
    bp = {"rule": "sgd", "lr": sec["lr"]}
    sections = {"equilibrium": sec, "sgd": bp, "sgd_linear": bp}
    lib_out = {"sgd": a.output_activation}  # EP's output activity is its protocol's; sgd_linear: linear outputs
    rules = a.rules.split(",")
    models, runs = {}, {}
    for r in rules:
        t0 = time.perf_counter()
        models[r] = Model(sections[r], sizes, ws, sec["lrs"], batch, a.activation, lib_out.get(r))
        runs[r] = {"section": sections[r], "lrs": sec["lrs"], "library_output_activation": lib_out.get(r),
                   "test_accuracy": [], "s_per_epoch": [],
                   "train_loss_last_500": [], "finite": [], "build_s": time.perf_counter() - t0,
                   "initial_test_accuracy": models[r].accuracy(xte, yte)}
    start = time.perf_counter()
    rec = {"args": vars(a), "theirs": THEIRS, "device": jax.devices()[0].device_kind, "runs": runs,
           "note": "s_per_epoch: training only (the first epoch includes compiling); alternating epoch by epoch"}
    for e in range(a.epochs):
        if e and (time.perf_counter() - start) / 60 > a.budget_min:
            break
        for r in rules:
            dt, loss, ok = _epoch(models[r], xtr, ytr, batch)
            acc = models[r].accuracy(xte, yte)
            for k, v in (("s_per_epoch", dt), ("test_accuracy", acc), ("train_loss_last_500", loss), ("finite", ok)):
                runs[r][k].append(v)
            print(f"[{a.label}] epoch {e + 1} {r}: test accuracy {acc:.4f}, {dt:.1f} s, loss {loss:.4f}, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
        rec["epochs_run"] = e + 1
        rec["load_avg_1min_end"] = os.getloadavg()[0]
        allrec = {}
        if os.path.exists(a.out):
            with open(a.out) as f:
                allrec = json.load(f)
        allrec[a.label] = rec
        with open(a.out, "w") as f:
            json.dump(allrec, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
