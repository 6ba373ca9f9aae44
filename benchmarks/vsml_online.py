"""Online learning curves of a meta-trained VSML against SGD and Adam with batch 1.

For ``--runs`` episodes (fresh synapse states, a random order of ``--examples`` training examples)
the VSML network learns online, one example per tick; every ``--every`` examples its state (the
synapses' LSTM states, copied to every test example) predicts the held-out set: accuracy against
examples seen. SGD and Adam train the same library network (the config's, or a random DAG), batch
1, on the same example orders, their learning rates tuned on separate episodes. Also the *online*
accuracy (each example predicted before its label is heard), averaged over the episode.

With ``--net random_dag`` the episodes are spread over ``--graphs`` random non-layered networks
(``--n-hidden`` hidden units, skip connections, parallel synapses; graph seeds 1000, 1001, …, none
seen in meta-training): VSML runs on each graph's VSML network with the same learned LSTM, SGD
and Adam train the same graph (hidden activation ``--activation``) by backprop.

Run:  python benchmarks/vsml_online.py CKPT [--runs 20] [--examples 500] [--every 25]
          [--dataset digits|mnist|fashion_mnist] [--test 1000] [--out benchmarks/results/vsml_online.json] [--png PATH]
          [--net random_dag --graphs 5 --n-hidden 20 --edge-prob 0.15 --parallel-prob 0.05 --activation tanh]
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
from agentgraph.meta.net_config import RandomDagNetConfig
from agentgraph.cli_args import overrides
from agentgraph.meta.checkpoints import checkpoint_eval_config
from agentgraph.meta.protocol_io import load_protocol
from agentgraph.network import fresh_weights, with_weights


def episode_curves(ctx, params, ds, orders, every, net_keys):
    """VSML online on the episodes ``orders`` (each ``int [T]`` indices into the training split),
    fresh synapse states drawn with ``net_keys[r]``: ``(held-out accuracy [runs, T//every + 1],
    online hits [runs, T])`` (each example predicted before its label is heard)."""
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
    def _heldout(state, x_te, y_te):  # the protocol's held_out hook: the learner of example 0 predicts
        z = ctx.held_out(prog, params, state, {"x": x_te, "y": y_te})
        return (z.argmax(-1) == y_te.argmax(-1)).mean()

    def heldout(state):  # the test set as arguments, not constants (XLA would fold them)
        return _heldout(state, x_te, y_te)

    accs, hits_all = [], []
    for order, k_net in zip(orders, net_keys):
        state = prog.init(1)
        state = with_weights(state, fresh_weights(net.init, k_net, state))
        xs = jnp.asarray(ds.x_train[order])[:, None]
        ys = jnp.asarray(np.eye(n_out)[ds.y_train[order]], jnp.float32)[:, None]
        curve, hits = [float(heldout(state))], []
        for t0 in range(0, len(order), every):
            state, z = segment(state, xs[t0:t0 + every], ys[t0:t0 + every])
            hits.append(np.asarray(z.argmax(-1) == ys[t0:t0 + every, 0].argmax(-1)))
            curve.append(float(heldout(state)))
        accs.append(curve)
        hits_all.append(np.concatenate(hits))
    return np.array(accs), np.array(hits_all, np.float64)


def vsml_curves(ctx, params, ds, runs, T, every, key):
    """``(held-out accuracy [runs, T//every + 1], online accuracy [runs])`` and the orders used
    (episode ``r``: order and fresh states from ``fold_in(key, r)``)."""
    orders, net_keys = [], []
    for r in range(runs):
        k_order, k_net = jax.random.split(jax.random.fold_in(key, r))
        orders.append(np.asarray(jax.random.permutation(k_order, ds.x_train.shape[0])[:T]))
        net_keys.append(k_net)
    accs, hits = episode_curves(ctx, params, ds, orders, every, net_keys)
    return accs, hits.mean(axis=1), orders


def optax_curves(ctx, make_opt, ds, orders, T, every, key):
    """The same episodes for the library network ``ctx.plain`` (fresh weights ``~ N(0, init_std)``)
    trained by ``make_opt()`` with batch 1."""
    n_out = ds.n_classes
    x_te, y_te = jnp.asarray(ds.x_test), jnp.asarray(np.eye(n_out)[ds.y_test], jnp.float32)
    opt, prog = make_opt(), ctx.plain

    def logits_loss(p, x, y):
        s, loss = prog.forward(None, ctx.start(p, x.shape[0], plain=True), {"x": x, "y": y})
        return loss, ctx.predict(s, plain=True)

    @jax.jit
    def segment(p, o, xs, ys):
        def body(c, xy):
            p, o = c
            (_, logits), g = jax.value_and_grad(logits_loss, has_aux=True)(p, xy[0][None], xy[1][None])
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), logits[0].argmax() == xy[1].argmax()
        (p, o), hit = jax.lax.scan(body, (p, o), (xs, ys))
        return p, o, hit

    @jax.jit
    def _heldout(p, x_te, y_te):
        return (logits_loss(p, x_te, y_te)[1].argmax(-1) == y_te.argmax(-1)).mean()

    def heldout(p):
        return _heldout(p, x_te, y_te)

    accs, online = [], []
    for r, order in enumerate(orders):
        p = ctx.fresh(jax.random.fold_in(key, r), plain=True)
        o = opt.init(p)
        xs, ys = jnp.asarray(ds.x_train[order]), jnp.asarray(np.eye(n_out)[ds.y_train[order]], jnp.float32)
        curve, hits = [float(heldout(p))], []
        for t0 in range(0, T, every):
            p, o, hit = segment(p, o, xs[t0:t0 + every], ys[t0:t0 + every])
            hits.append(np.asarray(hit))
            curve.append(float(heldout(p)))
        accs.append(curve)
        online.append(float(np.concatenate(hits).mean()))
    return np.array(accs), np.array(online)


def _tune(ctx, name, make, ds, T, every, key, runs=3):
    rng = np.random.default_rng(999)
    orders = [rng.permutation(ds.x_train.shape[0])[:T] for _ in range(runs)]
    best = max(LR_GRID, key=lambda lr: optax_curves(ctx, lambda: make(lr), ds, orders, T, every, key)[0][:, -1].mean())
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
    ap.add_argument("--net", choices=("config", "random_dag"), default="config",
                    help="the checkpoint's network, or random non-layered networks")
    ap.add_argument("--graphs", type=int, default=5, help="random networks (--net random_dag); runs spread over them")
    ap.add_argument("--n-hidden", type=int, default=20)
    ap.add_argument("--edge-prob", type=float, default=0.15)
    ap.add_argument("--parallel-prob", type=float, default=0.05)
    ap.add_argument("--activation", default="tanh", help="hidden activation of the baselines' random networks")
    ap.add_argument("--set", action="append", metavar="FIELD=VALUE",
                    help="override the checkpoint's config (dotted path, YAML value), e.g. net.sizes=[196,10] "
                    "data.image_size=14: run a protocol on another network; repeatable")
    a = ap.parse_args()
    cfg = checkpoint_eval_config(a.ckpt, overrides=overrides(a.set))
    if a.net == "config":
        cfgs = [cfg]
    else:
        net = RandomDagNetConfig(sizes=cfg.net.sizes, loss=cfg.net.loss, init_std=cfg.net.init_std, n_hidden=a.n_hidden,
                                 edge_prob=a.edge_prob, parallel_prob=a.parallel_prob, activation=a.activation)
        cfgs = [cfg.model_copy(update={"net": net, "run": cfg.run.model_copy(update={"seed": 1000 + g})})
                for g in range(a.graphs)]
    ctxs = [make_context(c) for c in cfgs]
    learned, stats = load_protocol(a.ckpt, ctxs[0])
    name = a.dataset or cfg.data.task
    ds = load_dataset(name, size=cfg.data.image_size)
    ds = dataclasses.replace(ds, x_test=ds.x_test[:a.test], y_test=ds.y_test[:a.test])
    if ds.x_train.shape[1] != cfg.net.sizes[0]:
        raise SystemExit(f"{name} has {ds.x_train.shape[1]} inputs, the network {cfg.net.sizes[0]}")
    key = jax.random.PRNGKey(0)
    T, every = a.examples, a.every
    per = [len(range(g, a.runs, len(ctxs))) for g in range(len(ctxs))]  # episodes on each network
    curves = {m: [] for m in ("protocol", "sgd", "adam")}
    online = {m: [] for m in curves}
    lrs = {m: _tune(ctxs[0], m, make, ds, T, every, key) for m, make in (("sgd", optax.sgd), ("adam", optax.adam))}
    for g, ctx in enumerate(ctxs):
        params = ctx.protocol.params(learned, stats, ctx.net.graph)
        acc, on, orders = vsml_curves(ctx, params, ds, per[g], T, every, jax.random.fold_in(key, g))
        curves["protocol"].append(acc)
        online["protocol"].append(on)
        for meth, make in (("sgd", optax.sgd), ("adam", optax.adam)):
            acc, on = optax_curves(ctx, lambda: make(lrs[meth]), ds, orders, T, every,
                                   jax.random.fold_in(jax.random.PRNGKey(1), g))
            curves[meth].append(acc)
            online[meth].append(on)
    res = {"metric": "accuracy", "steps": list(range(0, T + 1, every)), "dataset": name, "checkpoint": a.ckpt,
           "overrides": a.set or [], "runs": a.runs, "net": a.net if a.net == "config" else {
               "kind": "random_dag", "graphs": len(ctxs), "n_hidden": a.n_hidden, "edge_prob": a.edge_prob,
               "parallel_prob": a.parallel_prob, "baseline_activation": a.activation,
               "synapses": [len(c.base.graph.agents("synapse")) for c in ctxs]}}
    for m in curves:
        acc, on = np.concatenate(curves[m]), np.concatenate(online[m])
        res[m] = {"mean": acc.mean(0).tolist(), "std": acc.std(0).tolist(), "online": float(on.mean())}
        if m in lrs:
            res[m]["lr"] = lrs[m]
    print(f"held-out accuracy on {name} after n examples (mean ± std over {a.runs} episodes; online = accuracy "
          "of each example predicted before its label, over the episode)")
    print(f"{'n':>5} " + " ".join(f"{m:>16}" for m in ("vsml", "sgd", "adam")))
    for i, n in enumerate(res["steps"]):
        print(f"{n:>5} " + " ".join(f"{100 * res[m]['mean'][i]:7.2f} ± {100 * res[m]['std'][i]:5.2f}"
                                    for m in ("protocol", "sgd", "adam")))
    print("online " + " ".join(f"{100 * res[m]['online']:16.2f}" for m in ("protocol", "sgd", "adam")))
    tag = name if a.net == "config" else f"{name}_dag"
    out = a.out or os.path.join(os.path.dirname(__file__), "results", f"vsml_online_{tag}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    if a.png:
        from agentgraph.plots import plot_curves
        where = "" if a.net == "config" else f", {len(ctxs)} random DAGs"
        plot_curves(res, a.png, title=f"VSML on {name}{where}, batch 1", xlabel="examples seen",
                    labels={"protocol": "VSML", "sgd": "SGD", "adam": "Adam"})


if __name__ == "__main__":
    main()
