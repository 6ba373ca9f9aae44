"""VSML on the authors' convolutional setting (one 3×3 stride-2 conv layer of 8 channels, then
dense) on MNIST 28×28, online (batch 1), against SGD and Adam on the same CNN and example orders.

For ``--runs`` episodes (fresh synapse states, a random order of ``--examples`` training images
never seen in that order) each method learns online, one example per inner step. Reported per
inner step: the *online* accuracy (the example predicted before its label is heard), mean over
the episodes; every ``--every`` steps the held-out accuracy on the first ``--test`` test images
(VSML: the learner's state, its tied kernel LSTM states and per-synapse states, copied to every
test image — the protocol's ``held_out`` hook). SGD and Adam train the library CNN (the config's
``activation``, fresh weights ``~ N(0, init_std)``), their learning rates tuned on 3 separate
episodes (grid :data:`~agentgraph.meta.evaluate.LR_GRID`, best held-out accuracy at the end).
Each extra ``--protocol NAME=CKPT`` (e.g. the digits-trained protocol the CNN run started from)
runs on the same episodes.

Run:  python benchmarks/vsml_cnn.py CKPT [--protocol digits=benchmarks/results/protocols/vsml/gradient_lr1e-2_s0.npz]
          [--runs 10] [--examples 300] [--every 50] [--test 200] [--out benchmarks/results/vsml_cnn.json]
          [--png docs/img/vsml_cnn.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vsml_online import episode_curves, optax_curves  # noqa: E402  (benchmarks/ is not a package)

from agentgraph.data import load_dataset  # noqa: E402
from agentgraph.meta.context import make_context  # noqa: E402
from agentgraph.meta.evaluate import LR_GRID  # noqa: E402
from agentgraph.meta.protocol_io import checkpoint_config, load_protocol  # noqa: E402


def protocol_curves(ctx, params, ds, orders: list[np.ndarray], every: int, key: jax.Array):
    """VSML's ``(held-out accuracy [runs, T // every + 1], online hits [runs, T])`` on ``orders``
    (each ``int [T]`` indices into the training split); fresh synapse states per episode, drawn
    with ``fold_in(key, r)`` (:func:`vsml_online.episode_curves`)."""
    return episode_curves(ctx, params, ds, orders, every, [jax.random.fold_in(key, r) for r in range(len(orders))])


def optax_hits(ctx, make_opt, ds, orders: list[np.ndarray], every: int, key: jax.Array):
    """SGD / Adam (``make_opt()``), batch 1, on the library CNN: ``(held-out accuracy
    [runs, T // every + 1], online hits [runs, T])``."""
    n_out = ds.n_classes
    prog = ctx.plain
    opt = make_opt()

    def logits_loss(p, x, y):
        s, loss = prog.forward(None, ctx.start(p, x.shape[0], plain=True), {"x": x, "y": y})
        return loss, ctx.predict(s, plain=True)

    @jax.jit
    def episode(p, xs, ys):
        def body(c, xy):
            p, o = c
            (_, logits), g = jax.value_and_grad(logits_loss, has_aux=True)(p, xy[0][None], xy[1][None])
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), logits[0].argmax() == xy[1].argmax()
        return jax.lax.scan(body, (p, opt.init(p)), (xs, ys))[1]

    acc, _ = optax_curves(ctx, make_opt, ds, orders, len(orders[0]), every, key)
    hits = []
    for r, order in enumerate(orders):
        p = ctx.fresh(jax.random.fold_in(key, r), plain=True)
        xs, ys = jnp.asarray(ds.x_train[order]), jnp.asarray(np.eye(n_out)[ds.y_train[order]], jnp.float32)
        hits.append(np.asarray(episode(p, xs, ys), np.float64))
    return acc, np.array(hits)


def _summary(acc: np.ndarray, hits: np.ndarray, window: int) -> dict:
    T = hits.shape[1]
    per_step = hits.mean(0)
    return {"mean": acc.mean(0).tolist(), "std": acc.std(0).tolist(), "online": float(hits.mean()),
            "online_per_step": per_step.tolist(),
            "online_windows": [float(per_step[t:t + window].mean()) for t in range(0, T, window)],
            "online_windows_std": [float(hits[:, t:t + window].mean(1).std()) for t in range(0, T, window)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt", help="the VSML checkpoint (or exported protocol) meta-trained on the CNN")
    ap.add_argument("--protocol", action="append", default=[], help="NAME=CKPT: another VSML protocol on the same CNN")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--test", type=int, default=200, help="held-out images (the first N of the test split)")
    ap.add_argument("--config", default=None, help="the CNN config (default: the checkpoint's)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "vsml_cnn.json"))
    ap.add_argument("--png", default=None)
    a = ap.parse_args()
    t_start = time.process_time()
    if a.config:
        from agentgraph.meta.config import load_config
        cfg = load_config(a.config)
    else:
        cfg = checkpoint_config(a.ckpt)
    ctx = make_context(cfg)
    ds = load_dataset(cfg.data.task, size=cfg.data.image_size)
    ds = dataclasses.replace(ds, x_test=ds.x_test[:a.test], y_test=ds.y_test[:a.test])
    T, every = a.examples, a.every
    rng = np.random.default_rng(0)
    orders = [rng.permutation(ds.x_train.shape[0])[:T] for _ in range(a.runs)]
    tune_rng = np.random.default_rng(999)  # separate episodes for the learning rates
    tune_orders = [tune_rng.permutation(ds.x_train.shape[0])[:T] for _ in range(3)]
    key = jax.random.PRNGKey(0)
    res = {"metric": "accuracy", "steps": list(range(0, T + 1, every)), "dataset": cfg.data.task,
           "image_size": cfg.data.image_size, "net": cfg.net.model_dump(), "runs": a.runs, "examples": T,
           "test_images": a.test, "window": 25, "checkpoint": a.ckpt,
           "synapse_agents": len(ctx.net.graph.agents("vsml_synapse")) + len(ctx.net.graph.agents("vsml_tied_synapse")),
           "kernel_ties": len([f for f in ctx.net.graph.ties().fields if f == "c"])}
    for name, path in [("protocol", a.ckpt), *(p.split("=", 1) for p in a.protocol)]:
        learned, stats = load_protocol(path, ctx)
        params = ctx.protocol.params(learned, stats, ctx.net.graph)
        t0 = time.time()
        acc, hits = protocol_curves(ctx, params, ds, orders, every, jax.random.PRNGKey(1))
        res[name] = {**_summary(acc, hits, 25), "checkpoint": path, "seconds": time.time() - t0}
        print(f"{name}: online {100 * res[name]['online']:.1f} %, held-out {100 * acc.mean(0)[-1]:.1f} % "
              f"({time.time() - t0:.0f} s)", flush=True)
    for meth, make in (("sgd", optax.sgd), ("adam", optax.adam)):
        scores = {lr: optax_curves(ctx, lambda: make(lr), ds, tune_orders, T, T, key)[0][:, -1].mean() for lr in LR_GRID}
        lr = max(scores, key=scores.get)
        acc, hits = optax_hits(ctx, lambda: make(lr), ds, orders, every, jax.random.PRNGKey(2))
        res[meth] = {**_summary(acc, hits, 25), "lr": lr, "tuning": {str(k): float(v) for k, v in scores.items()}}
        print(f"{meth} (lr {lr}): online {100 * res[meth]['online']:.1f} %, held-out {100 * acc.mean(0)[-1]:.1f} %",
              flush=True)
    res["cpu_seconds"] = time.process_time() - t_start
    methods = [m for m in res if isinstance(res[m], dict) and "online" in res[m]]
    print(f"online accuracy per window of 25 inner steps (mean over {a.runs} episodes)")
    for m in methods:
        print(f"{m:>10} " + " ".join(f"{100 * v:5.1f}" for v in res[m]["online_windows"]))
    print(f"held-out accuracy ({a.test} test images) after n examples")
    for m in methods:
        print(f"{m:>10} " + " ".join(f"{100 * v:5.1f}" for v in res[m]["mean"]))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    if a.png:
        _plot(res, methods, a.png)


def _plot(res: dict, methods: list[str], path: str) -> None:
    """Two panels: online accuracy per inner step (25-step windows) and held-out accuracy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = {"protocol": "VSML meta-trained on the CNN", "sgd": f"SGD ({res['sgd']['lr']})",
             "adam": f"Adam ({res['adam']['lr']})", "digits": "VSML trained on digits (no CNN training)"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    w = res["window"]
    for m in methods:
        y = 100 * np.array(res[m]["online_windows"])
        s = 100 * np.array(res[m]["online_windows_std"])
        x = np.arange(len(y)) * w + w / 2
        axes[0].plot(x, y, label=names.get(m, m))
        axes[0].fill_between(x, y - s, y + s, alpha=0.15)
        y, s = 100 * np.array(res[m]["mean"]), 100 * np.array(res[m]["std"])
        axes[1].plot(res["steps"], y, marker="o", ms=3, label=names.get(m, m))
        axes[1].fill_between(res["steps"], y - s, y + s, alpha=0.15)
    axes[0].set(xlabel="inner step (example)", ylabel="online accuracy %, 25-step windows",
                title="predicted before the label is heard")
    axes[1].set(xlabel="examples seen", ylabel=f"held-out accuracy % ({res['test_images']} test images)",
                title="held-out")
    for ax in axes:
        ax.axhline(10, color="grey", lw=0.5, ls=":")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"VSML on MNIST 28×28, conv 8@3×3 stride 2 → dense 10, batch 1, {res['runs']} episodes")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
