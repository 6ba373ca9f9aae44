"""Predictive coding side by side with the PCX library (Pinchetti et al., ICLR 2025; ``pcx==0.6.3``)
on the same MLP and data: MNIST and Fashion-MNIST, test accuracy after every epoch and seconds per
epoch, epochs alternating between the implementations; and a one-step equivalence check.

Run (PCX lives in its own virtualenv; the project's environment keeps its newer jax):
    python -m venv /work/venvs/pcx
    /work/venvs/pcx/bin/pip install pcx==0.6.3 'jax[cpu]>=0.4.33,<0.5' numpy
    nice -n 5 python benchmarks/local_rules_pcx.py [--epochs 3] [--datasets mnist,fashion_mnist]
        [--pcx-python /work/venvs/pcx/bin/python] [--check-only]
    (needs ``python -m agentgraph.data fetch mnist`` / ``fashion_mnist``; writes
    benchmarks/results/local_rules_pcx-cpu.json; the PCX side runs as subprocesses of
    ``benchmarks/local_rules_pcx_driver.py``, fed through a .npz under /tmp)

Network (every run): ``784-128-128-128-10`` (PCX's benchmark MLP), softmax cross-entropy as the
output energy (π = 1), batch 128 (60,000 // 128 = 468 steps an epoch, the last partial batch
dropped as PCX's loaders do), pixels scaled to [-1, 1] as PCX's loaders do, the same initial weights
(uniform ±1/√fan_in, equinox's default, seed 0) and the same batch order everywhere. Runs:

* ``ours``: the ``predictive_coding`` protocol compiled by the engine (relu, T, γ, lr: plain SGD on
  values and weights, updates averaged over the batch);
* ``pcx_shared``: PCX with the same model and the same optimisers (value nodes on pre-activations
  as ours, values ``v -= γ ∂F_i/∂v_i``, weights ``θ -= lr mean_i ∂F_i/∂θ``);
* ``pcx_published``: PCX's own published MLP setting (GELU, value nodes on activations, T = 5,
  SGD with momentum on the values, AdamW on PCX's warm-up-cosine schedule over 25
  epochs on the weights; the hyper-parameter files of PCX's ``examples/s4_1_discriminative_mode``);
* ``backprop``: the ``sgd`` protocol on the same network (relu, ``bp_lr``: PC's 0.2 diverges).

The equivalence check (``--check-only`` runs only it): a 4-3-3-2 network, one PC step of ours and
of PCX's from the same weights and batch; the largest deviation of the updated weights (float64,
interpreter; and float32, compiled).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from agentgraph import interpreter
from agentgraph.builders import mlp_network
from agentgraph.data.idx_dirs import load_fashion_mnist_raw
from agentgraph.data.mnist import load_mnist_raw
from agentgraph.protocols.base import resolve
from graph_trainer import GraphTrainer

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "local_rules_pcx_driver.py")
SIZES = [784, 128, 128, 128, 10]
#: PCX's published PC-CE MLP hyper-parameters (examples/s4_1_discriminative_mode/hps/MLP/*/MLP_PC-CE_*.yaml).
PUBLISHED = {"mnist": {"w_lr": 0.00029959151754717025, "w_wd": 0.003314230264294929,
                       "h_lr": 0.01828189494026352, "h_momentum": 0.35000000000000003},
             "fashion_mnist": {"w_lr": 0.0002770746850948943, "w_wd": 0.0008402702337314271,
                               "h_lr": 0.013125101796600251, "h_momentum": 0.4}}


def init_weights(sizes: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    """``{"W0": [n_in, n_out], "b0": [n_out], ...}``, uniform ±1/√n_in (equinox's ``Linear`` default)."""
    rng = np.random.default_rng(seed)
    out = {}
    for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lim = 1.0 / np.sqrt(a)
        out[f"W{l}"] = rng.uniform(-lim, lim, (a, b)).astype(np.float32)
        out[f"b{l}"] = rng.uniform(-lim, lim, b).astype(np.float32)
    return out


def agent_weights(agents: dict, sizes: list[int]) -> dict[str, np.ndarray]:
    """The weights of an ``mlp`` graph's per-agent state (``{agent: {field: value}}``: the
    interpreter's layout, ``Program.to_agents``) as ``{"W0": [n_in, n_out], "b0": [n_out], ...}``."""
    out = {}
    for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        out[f"W{l}"] = np.array([[np.asarray(agents[("w", l, i, j)]["w"]) for j in range(b)] for i in range(a)])
        out[f"b{l}"] = np.array([np.asarray(agents[("b", l, j)]["b"]) for j in range(b)])
    return out


def set_agent_weights(agents: dict, w: dict[str, np.ndarray], sizes: list[int]) -> None:
    """Write ``w`` (as :func:`agent_weights` returns) into a per-agent state, in place."""
    for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        for i in range(a):
            for j in range(b):
                agents[("w", l, i, j)]["w"] = np.asarray(w[f"W{l}"][i, j], agents[("w", l, i, j)]["w"].dtype)
        for j in range(b):
            agents[("b", l, j)]["b"] = np.asarray(w[f"b{l}"][j], agents[("b", l, j)]["b"].dtype)


class Trainer(GraphTrainer):
    """One rule (a protocol section) on ``mlp(sizes)`` with the given initial weights, compiled."""

    def __init__(self, section: dict, sizes: list[int], activation: str, w0: dict[str, np.ndarray], batch: int):
        rule = resolve(section)
        net = rule.network(mlp_network(sizes, activation=activation, loss="cross_entropy", seed=0))
        super().__init__(net, rule.params(rule.init(jax.random.PRNGKey(0), net.graph), {}, net.graph), batch)
        agents = self.prog.to_agents(self.state)
        set_agent_weights(agents, w0, sizes)
        self.state = self.prog.from_agents(agents)

    def warm(self, x: np.ndarray, y: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> None:
        """Compile the step and the evaluation without changing the state."""
        jax.block_until_ready(self._step(self.prog, self.state, {"x": x, "y": y}))
        self.accuracy(xte[:1000], yte[:1000])

    def epoch(self, xtr: np.ndarray, ytr: np.ndarray, order: np.ndarray, batch: int) -> float:
        """One epoch over ``order`` (the last partial batch dropped); its wall time in seconds."""
        eye = np.eye(10, dtype=np.float32)
        t0 = time.perf_counter()
        for i in range(len(order) // batch):
            idx = order[i * batch:(i + 1) * batch]
            self.train(xtr[idx], eye[ytr[idx]])
        jax.block_until_ready(self.state)
        return time.perf_counter() - t0


def load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(xtr [60000, 784] float32 in [-1, 1], ytr int, xte, yte)`` of ``mnist`` or ``fashion_mnist``."""
    xtr, ytr, xte, yte = (load_mnist_raw if name == "mnist" else load_fashion_mnist_raw)()
    f = lambda x: (x.reshape(len(x), -1).astype(np.float32) / 255.0 - 0.5) / 0.5
    return f(xtr), ytr.astype(np.int64), f(xte), yte.astype(np.int64)


class PCX:
    """A PCX driver subprocess serving epochs (``local_rules_pcx_driver.py serve``)."""

    def __init__(self, python: str, cfg: dict, data: str, workdir: str, tag: str):
        path = os.path.join(workdir, f"{tag}.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.proc = subprocess.Popen([python, DRIVER, "serve", path, data], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.tag = tag

    def epoch(self, k: int) -> dict:
        """Run epoch ``k`` (``-1``: compile only); ``{"seconds", "test_accuracy"}``."""
        self.proc.stdin.write(f"epoch {k}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"PCX driver {self.tag} ended (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def pcx_configs(dataset: str, args) -> dict[str, dict]:
    """The two PCX runs' driver configurations (module docstring)."""
    p = PUBLISHED[dataset]
    base = {"sizes": SIZES, "T": args.T, "batch": args.batch}
    return {
        "pcx_shared": {**base, "act": args.activation, "convention": "pre",
                       "h": {"lr": args.gamma}, "w": {"opt": "sgd", "lr": args.lr}},
        "pcx_published": {**base, "T": 5, "act": "gelu", "convention": "post",
                          "h": {"lr": p["h_lr"], "momentum": p["h_momentum"]},
                          "w": {"opt": "adamw", "lr": p["w_lr"], "wd": p["w_wd"], "epochs": 25,
                                "steps_per_epoch": 60000 // args.batch}}}


def run_dataset(name: str, args, workdir: str, save=lambda rows: None) -> dict:
    """Every run on one dataset, one epoch of each in turn (``save(rows)`` after every epoch)."""
    xtr, ytr, xte, yte = load(name)
    w0 = init_weights(SIZES, seed=0)
    orders = np.stack([np.random.default_rng(100 + k).permutation(len(xtr)) for k in range(args.epochs)])
    data = os.path.join(workdir, f"{name}.npz")
    np.savez(data, xtr=xtr, ytr=ytr, xte=xte, yte=yte, orders=orders, **w0)
    eye = np.eye(10, dtype=np.float32)
    ours = {"ours": Trainer({"rule": "predictive_coding", "T": args.T, "gamma": args.gamma, "lr": args.lr},
                            SIZES, args.activation, w0, args.batch),
            "backprop": Trainer({"rule": "sgd", "lr": args.bp_lr}, SIZES, args.activation, w0, args.batch)}
    pcx = {k: PCX(args.pcx_python, c, data, workdir, f"{name}-{k}") for k, c in pcx_configs(name, args).items()}
    for t in ours.values():
        t.warm(xtr[:args.batch], eye[ytr[:args.batch]], xte, yte)
    for p in pcx.values():
        p.epoch(-1)
    rows = {k: {"test_accuracy": [], "seconds": []} for k in ("ours", "pcx_shared", "pcx_published", "backprop")}
    for k in range(args.epochs):
        for tag in rows:
            if tag in ours:
                sec = ours[tag].epoch(xtr, ytr, orders[k], args.batch)
                acc = ours[tag].accuracy(xte, yte)
            else:
                r = pcx[tag].epoch(k)
                sec, acc = r["seconds"], r["test_accuracy"]
            rows[tag]["seconds"].append(sec)
            rows[tag]["test_accuracy"].append(acc)
            print(f"{name} epoch {k + 1} {tag}: test accuracy {acc:.4f}, {sec:.1f} s", flush=True)
        save(rows)
    for p in pcx.values():
        p.close()
    os.remove(data)
    ratio = [a / b for a, b in zip(rows["ours"]["seconds"], rows["pcx_shared"]["seconds"])]
    return {"runs": rows, "ratio_ours_over_pcx_shared": ratio,
            "ratio_ours_over_pcx_published": [a / b for a, b in zip(rows["ours"]["seconds"],
                                                                     rows["pcx_published"]["seconds"])],
            "median_s_per_epoch": {k: float(np.median(v["seconds"])) for k, v in rows.items()}}


def equivalence(args, workdir: str) -> dict:
    """One PC step of ours and of PCX's from the same weights and batch (4-3-3-2, T = 3): the
    largest deviation of the updated weights and biases, per activation and precision."""
    sizes, B, T, gamma, lr = [4, 3, 3, 2], 5, 3, 0.3, 0.2
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], B)]
    out = {"sizes": sizes, "batch": B, "T": T, "gamma": gamma, "lr": lr}
    rule = resolve({"rule": "predictive_coding", "T": T, "gamma": gamma, "lr": lr})
    for act in ("tanh", "relu"):
        net = rule.network(mlp_network(sizes, activation=act, loss="cross_entropy", init_std=0.5, seed=0))
        g = net.graph
        prm = rule.params(rule.init(None, g), {}, g)
        cfg = {"sizes": sizes, "act": act, "convention": "pre", "T": T,
               "h": {"lr": gamma}, "w": {"opt": "sgd", "lr": lr}}
        for prec in ("float64", "float32"):
            if prec == "float64":  # the interpreter, float64
                with jax.enable_x64(True):
                    s0 = interpreter.init_state(g, B)
                    w0 = agent_weights(s0, sizes)
                    exact = {grp: {"lr": lr, "gamma": gamma, "pi": 1.0} for grp in prm}  # not via float32 logs
                    r = interpreter.step(g, s0, exact, {"x": x, "y": y})
                    w1 = agent_weights(r.state, sizes)
            else:  # the compiled program, float32
                t = GraphTrainer(net, prm, B)
                w0 = agent_weights(t.prog.to_agents(t.state), sizes)
                t.train(x.astype(np.float32), y.astype(np.float32))
                w1 = agent_weights(t.prog.to_agents(t.state), sizes)
            src, dst, path = (os.path.join(workdir, f"eq-{act}-{prec}.{e}") for e in ("npz", "out.npz", "json"))
            np.savez(src, x=x, y=y, **w0)
            with open(path, "w") as f:
                json.dump({**cfg, "x64": prec == "float64"}, f)
            subprocess.run([args.pcx_python, DRIVER, "step", path, src, dst], check=True)
            theirs = np.load(dst)
            dev = max(float(np.abs(theirs[k] - w1[k]).max()) for k in w1)
            moved = max(float(np.abs(w1[k] - w0[k]).max()) for k in w1)
            out[f"{act}-{prec}"] = {"max_abs_deviation": dev, "max_abs_update": moved}
            print(f"equivalence {act} {prec}: max |ours - PCX| of the updated weights {dev:.2e} "
                  f"(largest update {moved:.2e})", flush=True)
    return out


def _save(path: str, out: dict) -> None:
    with open(path, "w") as f:
        json.dump(out, f, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--datasets", default="mnist,fashion_mnist")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--T", type=int, default=5)
    ap.add_argument("--gamma", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--bp-lr", type=float, default=0.05, help="backprop's rate (at 0.2 it diverged in epoch 2)")
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--pcx-python", default="/work/venvs/pcx/bin/python")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "local_rules_pcx-cpu.json"))
    args = ap.parse_args()
    versions = subprocess.run([args.pcx_python, "-c", "import importlib.metadata as m; print({p: m.version(p) for p in "
                               "('pcx', 'jax', 'jaxlib', 'equinox', 'optax', 'numpy')})"],
                              capture_output=True, text=True, check=True).stdout.strip()
    out = {"args": vars(args), "device": jax.devices()[0].device_kind, "sizes": SIZES, "pcx_env": versions,
           "load_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="local_rules_pcx-") as workdir:
        out["equivalence"] = equivalence(args, workdir)
        if not args.check_only:
            out["datasets"] = {}
            for d in args.datasets.split(","):
                out["datasets"][d] = run_dataset(d, args, workdir, lambda rows: _save(args.out, {
                    **out, "partial": {d: rows}, "load_now": os.getloadavg()}))
    out["load_end"] = os.getloadavg()
    if not args.check_only:
        ratios = [r for d in out["datasets"].values() for r in d["ratio_ours_over_pcx_shared"]]
        out["median_ratio_ours_over_pcx_shared"] = float(np.median(ratios))
        _save(args.out, out)
        print("median time ratio ours / PCX (shared setting):", out["median_ratio_ours_over_pcx_shared"])
        print("wrote", args.out)


if __name__ == "__main__":
    main()
