"""Online learning curves of a meta-trained VSML against SGD and Adam with batch 1.

For ``--runs`` episodes (fresh synapse states, a random order of ``--examples`` training examples)
the VSML network learns online, one example per tick; every ``--every`` examples its state (the
synapses' LSTM states, copied to every test example) predicts the held-out set: accuracy against
examples seen. SGD and Adam train the same (n_in, n_out) softmax network, batch 1, on the same
example orders, their learning rates tuned on separate episodes. Also the *online* accuracy (each
example predicted before its label is heard), averaged over the episode.

Run:  python benchmarks/vsml_online.py CKPT [--runs 20] [--examples 500] [--every 25]
          [--dataset digits|mnist|fashion_mnist] [--test 1000] [--out benchmarks/results/vsml_online.json] [--png PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentgraph.data import load_dataset
from agentgraph.meta.context import make_context
from agentgraph.meta.evaluate import LR_GRID
from agentgraph.meta.protocol_io import checkpoint_config, load_protocol
from agentgraph.protocols.base import fresh_weights, with_weights


def _broadcast_examples(prog, state, C: int) -> dict:
    """The state of example 0 copied to ``C`` examples (per-example fields, delayed messages)."""
    out = {}
    for k, fields in state.items():
        if k == "@delayed":
            out[k] = {n: jnp.broadcast_to(v[:, :1], (v.shape[0], C, *v.shape[2:])) for n, v in fields.items()}
            continue
        kind = prog.kinds[k]
        out[k] = {f: (jnp.broadcast_to(v[:, :1], (v.shape[0], C, *v.shape[2:])) if kind.fields[f].per_example else v)
                  for f, v in fields.items()}
    return out


def vsml_curves(ctx, params, ds, runs, T, every, key):
    """``(held-out accuracy [runs, T//every + 1], online accuracy [runs])`` and the orders used."""
    prog, net = ctx.program, ctx.net
    n_out = ds.n_classes
    x_te, y_te = jnp.asarray(ds.x_test), jnp.asarray(np.eye(n_out)[ds.y_test], jnp.float32)
    agents = list(net.readout.agents)

    @jax.jit
    def segment(state, xs, ys):
        def body(s, xy):
            s, _ = prog.step(params, s, {"x": xy[0], "y": xy[1]})
            return s, prog.read(s, agents, "z")[0]
        return jax.lax.scan(body, state, (xs, ys))

    @jax.jit
    def _heldout(state, x_te, y_te):
        s, _ = prog.forward(params, _broadcast_examples(prog, state, x_te.shape[0]), {"x": x_te, "y": y_te})
        z = prog.read(s, agents, "z")
        return (z.argmax(-1) == y_te.argmax(-1)).mean()

    def heldout(state):  # the test set as arguments, not constants (XLA would fold them)
        return _heldout(state, x_te, y_te)

    accs, online, orders = [], [], []
    for r in range(runs):
        k_order, k_net = jax.random.split(jax.random.fold_in(key, r))
        order = np.asarray(jax.random.permutation(k_order, ds.x_train.shape[0])[:T])
        orders.append(order)
        state = prog.init(1)
        w = fresh_weights(net.init, k_net, state)
        state = with_weights(state, w)
        xs = jnp.asarray(ds.x_train[order])[:, None]
        ys = jnp.asarray(np.eye(n_out)[ds.y_train[order]], jnp.float32)[:, None]
        curve, hits = [float(heldout(state))], []
        for t0 in range(0, T, every):
            state, z = segment(state, xs[t0:t0 + every], ys[t0:t0 + every])
            hits.append(np.asarray(z.argmax(-1) == ys[t0:t0 + every, 0].argmax(-1)))
            curve.append(float(heldout(state)))
        accs.append(curve)
        online.append(float(np.concatenate(hits).mean()))
    return np.array(accs), np.array(online), orders


def optax_curves(make_opt, ds, orders, T, every, key, init_std=0.05):
    """The same episodes for a plain softmax network trained by ``make_opt()`` with batch 1."""
    n_in, n_out = ds.x_train.shape[1], ds.n_classes
    x_te, y_te = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    opt = make_opt()

    def loss(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"], y).mean()

    @jax.jit
    def segment(p, o, xs, ys):
        def body(c, xy):
            p, o = c
            logits = xy[0] @ p["w"] + p["b"]
            g = jax.grad(loss)(p, xy[0][None], xy[1][None])
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), logits.argmax() == xy[1]
        (p, o), hit = jax.lax.scan(body, (p, o), (xs, ys))
        return p, o, hit

    @jax.jit
    def _heldout(p, x_te, y_te):
        return ((x_te @ p["w"] + p["b"]).argmax(-1) == y_te).mean()

    def heldout(p):
        return _heldout(p, x_te, y_te)

    accs, online = [], []
    for r, order in enumerate(orders):
        p = {"w": init_std * jax.random.normal(jax.random.fold_in(key, r), (n_in, n_out)), "b": jnp.zeros(n_out)}
        o = opt.init(p)
        xs, ys = jnp.asarray(ds.x_train[order]), jnp.asarray(ds.y_train[order])
        curve, hits = [float(heldout(p))], []
        for t0 in range(0, T, every):
            p, o, hit = segment(p, o, xs[t0:t0 + every], ys[t0:t0 + every])
            hits.append(np.asarray(hit))
            curve.append(float(heldout(p)))
        accs.append(curve)
        online.append(float(np.concatenate(hits).mean()))
    return np.array(accs), np.array(online)


def _tune(name, make, ds, T, every, key, runs=3):
    rng = np.random.default_rng(999)
    orders = [rng.permutation(ds.x_train.shape[0])[:T] for _ in range(runs)]
    best = max(LR_GRID, key=lambda lr: optax_curves(lambda: make(lr), ds, orders, T, every, key)[0][:, -1].mean())
    print(f"{name}: tuned lr {best}", flush=True)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--dataset", default=None, help="default: the checkpoint's training data")
    ap.add_argument("--test", type=int, default=1000, help="held-out examples used (the first N of the test split)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--png", default=None)
    a = ap.parse_args()
    cfg = checkpoint_config(a.ckpt)
    ctx = make_context(cfg)
    learned, stats = load_protocol(a.ckpt, ctx)
    params = ctx.protocol.params(learned, stats, ctx.net.graph)
    name = a.dataset or cfg.data.task
    ds = load_dataset(name, size=cfg.data.image_size)
    ds = dataclasses.replace(ds, x_test=ds.x_test[:a.test], y_test=ds.y_test[:a.test])
    if ds.x_train.shape[1] != cfg.net.sizes[0]:
        raise SystemExit(f"{name} has {ds.x_train.shape[1]} inputs, the network {cfg.net.sizes[0]}")
    key = jax.random.PRNGKey(0)
    T, every = a.examples, a.every
    v_acc, v_online, orders = vsml_curves(ctx, params, ds, a.runs, T, every, key)
    res = {"metric": "accuracy", "steps": list(range(0, T + 1, every)), "dataset": name, "checkpoint": a.ckpt,
           "runs": a.runs, "protocol": {"mean": v_acc.mean(0).tolist(), "std": v_acc.std(0).tolist(),
                                        "online": float(v_online.mean())}}
    for meth, make in (("sgd", optax.sgd), ("adam", optax.adam)):
        lr = _tune(meth, make, ds, T, every, key)
        acc, online = optax_curves(lambda: make(lr), ds, orders, T, every, jax.random.PRNGKey(1))
        res[meth] = {"mean": acc.mean(0).tolist(), "std": acc.std(0).tolist(), "lr": lr, "online": float(online.mean())}
    print(f"held-out accuracy on {name} after n examples (mean ± std over {a.runs} episodes; online = accuracy "
          "of each example predicted before its label, over the episode)")
    print(f"{'n':>5} " + " ".join(f"{m:>16}" for m in ("vsml", "sgd", "adam")))
    for i, n in enumerate(res["steps"]):
        print(f"{n:>5} " + " ".join(f"{100 * res[m]['mean'][i]:7.2f} ± {100 * res[m]['std'][i]:5.2f}"
                                    for m in ("protocol", "sgd", "adam")))
    print("online " + " ".join(f"{100 * res[m]['online']:16.2f}" for m in ("protocol", "sgd", "adam")))
    out = a.out or os.path.join(os.path.dirname(__file__), "results", f"vsml_online_{name}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    if a.png:
        from agentgraph.plots import plot_curves
        plot_curves(res, a.png, title=f"VSML on {name}, batch 1 (x: examples seen)",
                    labels={"protocol": "VSML", "sgd": "SGD", "adam": "Adam"})


if __name__ == "__main__":
    main()
