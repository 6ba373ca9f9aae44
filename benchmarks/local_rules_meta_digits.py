"""Meta-learned hyper-parameters of a local learning rule vs its hand-tuned setting, equal inner steps.

Hand-tuned: one learning rate for every layer, the best of a grid (held-out accuracy after
``inner_steps`` steps, fresh networks, the evaluation seed), every other setting at the config's
value. Meta-learned: the rule's config run started from that best rate, its meta-parameters
(per-group rates and the rule's own: feedback scale, inference rate, β and relaxation rate, ABCD
coefficients, noise scale) trained by gradient through the unrolled inner loop. Both are scored
on the same ``--runs`` fresh networks and evaluation tasks (paired: the seed of
:func:`agentgraph.meta.evaluate.evaluate`); SGD and Adam (rates tuned by ``evaluate``) on the
library network for reference.

The grid and the meta-learned setting are scored by one compiled program whose meta-parameters
are an argument (``evaluate`` compiles one per setting).

Run from the repository root (each ≤ ≈ 8 minutes on 2 shared cores):
    nice -n 10 python benchmarks/local_rules_meta_digits.py --rule feedback_alignment
    nice -n 10 python benchmarks/local_rules_meta_digits.py --rule predictive_coding   # also equilibrium,
        # hebbian, node_perturbation, direct_feedback_alignment, sign_symmetry
writes ``benchmarks/results/local_rules_<fa|rule>_meta_digits.json``. ``--set FIELD=VALUE``
overrides the config for the grid and the meta-learned run, ``--meta-set`` for the meta-learned
run only (e.g. ``protocol.lr_max``, a parameterisation the grid's rates would not fit); both are
recorded in the JSON's ``command``; ``--grid`` replaces the single rate's grid.

``--rule equilibrium --diagnose [LR ...]`` meta-learns nothing: it runs :func:`diagnose` on the
config (with ``--set``) at each rate — how far the free phase is from its fixed point after the
inner loop, and how many of the runs diverge — and appends the rows to
``benchmarks/results/local_rules_equilibrium_diagnosis.json``, e.g.
    nice -n 10 python benchmarks/local_rules_meta_digits.py --rule equilibrium --diagnose 0.1 0.15 0.2 \
        --set protocol.gamma=0.25 --set protocol.T=30
"""

from __future__ import annotations

import argparse
import copy
import glob
import itertools
import json
import os
import shlex
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml

from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import apply_overrides, parse_config
from agentgraph.meta.context import Context, make_context
from agentgraph.meta.evaluate import LR_GRID, run_optax, run_protocol
from agentgraph.meta.protocol_io import load_protocol
from agentgraph.meta.tasks import task_family
from agentgraph.meta.train import train
from agentgraph.protocols.base import resolve

FA_CONFIG = "examples/configs/feedback_rules_digits.yaml"
#: rule -> (config, the setting holding the single rate, its grid)
RULES = {
    "feedback_alignment": (FA_CONFIG, "init_lr", (0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0)),
    "sign_symmetry": (FA_CONFIG, "init_lr", (0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0)),
    "direct_feedback_alignment": (FA_CONFIG, "init_lr", (0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0)),
    "predictive_coding": ("examples/configs/local_rules_pc_digits.yaml", "lr", (0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0)),
    "equilibrium": ("examples/configs/local_rules_ep_digits.yaml", "lr", (0.05, 0.1, 0.2, 0.4)),
    "hebbian": ("examples/configs/local_rules_hebbian_digits.yaml", "init_lr", (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)),
    "node_perturbation": ("examples/configs/local_rules_np_digits.yaml", "init_lr",
                          (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)),
}
#: further hand-designed settings scored like the hand-tuned one (best rate of the same grid): rule -> {name: overrides}
ALTERNATIVES = {"hebbian": {"oja": {"form": "oja"}}}
#: rules whose hand-tuned alternatives also get a per-layer grid (a rate per synapse group): rule -> {group: rates}
PER_LAYER = {"hebbian": {"synapse:0": (1e-6, 1e-4, 1e-3, 0.01), "synapse:1": (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)},
             "node_perturbation": {"synapse:0": (0.001, 0.003, 0.01, 0.03), "synapse:1": (0.03, 0.1, 0.3, 1.0),
                                   "bias:0": (1e-4, 0.03), "bias:1": (1e-4, 0.03)},
             "predictive_coding": {"synapse:0": (0.1, 0.3, 0.5, 1.0), "synapse:1": (0.5, 1.0, 2.0, 4.0),
                                   "bias:0": (0.005, 0.5), "bias:1": (0.005, 0.5)},
             "feedback_alignment": {"synapse:0": (0.5, 1.0, 1.5), "synapse:1": (0.5, 1.0, 1.5),
                                    "bias:0": (0.01, 1.0), "bias:1": (0.01, 1.0)},
             "equilibrium": {"synapse:0": (0.1, 0.15), "synapse:1": (0.1, 0.15), "bias:0": (0.0015, 0.015, 0.15),
                             "bias:1": (0.0015, 0.015, 0.15)},
             "direct_feedback_alignment": {"synapse:0": (0.5, 0.7, 1.0), "synapse:1": (0.5, 1.0, 1.5),
                                           "bias:0": (0.005, 0.5), "bias:1": (0.005, 0.5)}}
EVAL_SEED = 12345  # evaluate()'s default: the same fresh networks and tasks as its protocol row


def scorer(ctx: Context, runs: int, chunk: int = 25):
    """``score(learned) -> [runs, K + 1]`` held-out accuracies of the protocol with meta-parameters
    ``learned`` on the ``runs`` evaluation networks and tasks of :func:`evaluate` (same keys),
    compiled once for every ``learned`` of one structure.

    Example:
        >>> score = scorer(ctx, 100)                                    # doctest: +SKIP
        >>> score(ctx.protocol.init(jax.random.PRNGKey(0), ctx.net.graph)).shape   # doctest: +SKIP
        (100, 21)
    """
    family = task_family(ctx.cfg)
    keys = jax.random.split(jax.random.split(jax.random.PRNGKey(EVAL_SEED))[0], runs)
    run = jax.jit(jax.vmap(lambda lrn, k: run_protocol(ctx, family, ctx.params(lrn, {}), k)[0], in_axes=(None, 0)))
    return lambda learned: np.concatenate([np.asarray(run(learned, keys[i:i + chunk]))
                                           for i in range(0, runs, chunk)])


def diagnose(cfg_dict: dict, runs: int, long_ticks: int = 200, chunk: int = 25) -> dict:
    """How far the free phase is from its fixed point after the inner loop, and how many runs
    diverge, for the config ``cfg_dict`` (an equilibrium protocol, its ``lr``/``lrs`` as given)
    on the first ``runs`` evaluation networks and tasks of :func:`scorer` (the same keys).

    After the ``inner_steps`` steps, the held-out batch's predictions (the output units' ``u``
    after ``T`` free ticks from ``u = 0``, as the accuracy reads them) are compared with those
    after ``T + 1`` ticks (``last_tick``: the last tick's max ``|Δu|`` over examples and outputs)
    and after ``long_ticks`` ticks (``to_fixed_point``: max ``|u_T − u_long|``). A run *diverges*
    when its final accuracy is below 0.2 or a prediction is not finite. Returns the final
    accuracy (mean ± s.e.), the number of diverging runs, and the medians (over the runs that
    do not diverge) and maxima of both residuals, and the diverging runs' median last-tick change.

    Example:
        >>> d = diagnose(yaml.safe_load(open("examples/configs/local_rules_ep_digits.yaml")), 100)  # doctest: +SKIP
        >>> d["diverged"], round(d["last_tick"]["median"], 3)                                      # doctest: +SKIP
        (5, 0.02)
    """
    cfg_dict = copy.deepcopy(cfg_dict)
    T = int(cfg_dict["protocol"].get("T", 20))
    cfg_dict["protocol"]["K"] = int(cfg_dict["protocol"].get("K") or T)  # the nudged phase stays as given
    ctxs = {}
    for ticks in (T, T + 1, long_ticks):
        c = copy.deepcopy(cfg_dict)
        c["protocol"]["T"] = ticks
        ctxs[ticks] = make_context(parse_config(c))
    ctx = ctxs[T]
    family = task_family(ctx.cfg)
    learned = ctx.protocol.init(jax.random.PRNGKey(0), ctx.net.graph)
    params = ctx.params(learned, {})
    keys = jax.random.split(jax.random.split(jax.random.PRNGKey(EVAL_SEED))[0], runs)

    def one(key):  # run_protocol's inner loop, keeping the final state
        k_task, k_net = jax.random.split(key)
        task = family.eval_sample(k_task)
        prog = ctx.program
        state = ctx.start(ctx.fresh(k_net, prog), task["train"]["x"].shape[1], prog)
        stage = ctx.protocol.stage(None)

        def body(s, batch):
            return ctx.step(prog, params, s, batch, stage, None)[0], None

        s, _ = jax.lax.scan(body, state, task["train"])
        preds = {t: c.held_out(c.program, params, s, task["cv"]) for t, c in ctxs.items()}
        acc = jnp.mean(jnp.argmax(preds[T], -1) == jnp.argmax(task["cv"]["y"], -1))
        finite = jnp.all(jnp.isfinite(preds[T])) & jnp.all(jnp.isfinite(preds[long_ticks]))
        return (acc, finite, jnp.max(jnp.abs(preds[T + 1] - preds[T])),
                jnp.max(jnp.abs(preds[long_ticks] - preds[T])))

    run = jax.jit(jax.vmap(one))
    acc, finite, last, far = (np.concatenate(v) for v in zip(*[tuple(map(np.asarray, run(keys[i:i + chunk])))
                                                                for i in range(0, runs, chunk)]))
    bad = (acc < 0.2) | ~finite
    ok = lambda v: v[~bad] if (~bad).any() else np.array([np.nan])  # noqa: E731
    return {"T": T, "K": cfg_dict["protocol"]["K"], "gamma": cfg_dict["protocol"].get("gamma"),
            "beta": cfg_dict["protocol"].get("beta"), "lr": cfg_dict["protocol"].get("lr"), "runs": runs,
            "final_accuracy": float(acc.mean()), "se": float(acc.std() / np.sqrt(runs)), "diverged": int(bad.sum()),
            "last_tick": {"median": float(np.median(ok(last))), "max": float(np.nanmax(ok(last)))},
            "to_fixed_point": {"median": float(np.median(ok(far))), "max": float(np.nanmax(ok(far)))},
            "long_ticks": long_ticks,
            "diverged_runs": {"last_tick_median": float(np.median(last[bad])) if bad.any() else None,
                              "finite": int(finite[bad].sum())}}


def baselines(ctx: Context, runs: int, tune_runs: int = 10, chunk: int = 25) -> dict:
    """SGD and Adam on the library network as :func:`agentgraph.meta.evaluate.evaluate` runs them
    (rate tuned over ``LR_GRID`` on ``tune_runs`` separate runs, then scored on the evaluation
    runs; the same keys), without re-running the protocol: ``{"sgd": {"final_accuracy", "lr"},
    "adam": {...}}``.

    Example:
        >>> baselines(ctx, 100)["sgd"]["lr"]                          # doctest: +SKIP
        0.3
    """
    family = task_family(ctx.cfg)
    k_eval, k_tune = jax.random.split(jax.random.PRNGKey(EVAL_SEED))
    keys = jax.random.split(k_eval, runs)
    out = {}
    for name, make in (("sgd", optax.sgd), ("adam", optax.adam)):
        run = jax.jit(jax.vmap(lambda lr, k, make=make: run_optax(ctx, family, make(lr), k)[0], in_axes=(None, 0)))
        final = lambda lr, ks, run=run: np.concatenate(
            [np.asarray(run(jnp.asarray(lr, jnp.float32), ks[i:i + chunk]))[:, -1] for i in range(0, len(ks), chunk)])
        tune = jax.random.split(jax.random.fold_in(k_tune, len(name)), tune_runs)
        tuned = {lr: float(final(lr, tune).mean()) for lr in LR_GRID}
        best = max(LR_GRID, key=lambda lr: tuned[lr])
        out[name] = {"final_accuracy": float(final(best, keys).mean()), "lr": best}
    return out


def summary(acc: np.ndarray) -> dict:
    """Mean, std and standard error of the final accuracy of ``acc [runs, K + 1]``, and the mean curve.

    Example:
        >>> summary(np.array([[0.1, 0.5], [0.1, 0.7]]))["final_accuracy"]
        0.6
    """
    n = acc.shape[0]
    return {"final_accuracy": float(acc[:, -1].mean()), "std": float(acc[:, -1].std()),
            "se": float(acc[:, -1].std() / np.sqrt(n)), "curve": acc.mean(0).tolist()}


def main() -> None:
    """The command line (module docstring): grid, hand-designed alternatives, meta-training, scores, JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--meta-steps", type=int, default=None)
    ap.add_argument("--meta-lr", type=float, default=None, help="default: the config's meta.meta_lr")
    ap.add_argument("--rule", default="feedback_alignment", help=", ".join(RULES))
    ap.add_argument("--config", default=None, help="default: the rule's config in RULES")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a config override for the meta-learned run and the grid (dotted path, YAML value), "
                         "e.g. meta.outer_batch=16; repeatable")
    ap.add_argument("--meta-set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a config override for the meta-learned run only (e.g. protocol.lr_max=0.21: a "
                         "parameterisation the grid's rates would not fit); repeatable")
    ap.add_argument("--grid", type=float, nargs="+", default=None, metavar="LR",
                    help="the hand-tuned single rate's grid (default: the rule's in RULES)")
    ap.add_argument("--diagnose", type=float, nargs="*", default=None, metavar="LR",
                    help="equilibrium only: instead of meta-learning, diagnose() the config (with --set) at these "
                         "rates (default: the rule's grid) — the free phase's distance from its fixed point and "
                         "the diverging runs — and write the table to --out (default "
                         "local_rules_equilibrium_diagnosis.json)")
    ap.add_argument("--out", default=None, help="default: local_rules_fa_meta_digits.json for feedback_alignment, "
                    "local_rules_<rule>_meta_digits.json otherwise, in benchmarks/results/")
    a = ap.parse_args()
    if a.rule not in RULES:
        raise AgentGraphError(f"--rule must be one of {sorted(RULES)}, got {a.rule!r}.")
    config, key, grid_values = RULES[a.rule]
    config = a.config or config
    grid_values = tuple(a.grid) if a.grid else grid_values
    stem = "fa" if a.rule == "feedback_alignment" else a.rule
    if a.diagnose is not None and a.rule != "equilibrium":
        raise AgentGraphError("--diagnose is for --rule equilibrium (the free phase's fixed point).")
    if a.diagnose is not None:
        a.out = a.out or os.path.join(os.path.dirname(__file__), "results", "local_rules_equilibrium_diagnosis.json")
    a.out = a.out or os.path.join(os.path.dirname(__file__), "results", f"local_rules_{stem}_meta_digits.json")
    t0 = time.time()
    with open(config) as f:
        base = yaml.safe_load(f)
    base["protocol"]["rule"] = a.rule
    for item in a.set:
        field, sep, value = item.partition("=")
        if not sep:
            raise AgentGraphError(f"--set takes FIELD=VALUE, got {item!r}.")
        apply_overrides(base, {field: yaml.safe_load(value)})
    if a.diagnose is not None:
        rows = []
        for lr in a.diagnose or grid_values:
            d = diagnose({**base, "protocol": {**base["protocol"], key: lr}}, a.runs)
            rows.append(d)
            print(f"T {d['T']} gamma {d['gamma']} beta {d['beta']} lr {lr}: accuracy {d['final_accuracy']:.4f} "
                  f"+- {d['se']:.4f}, diverged {d['diverged']}/{a.runs}, last tick max|du| median "
                  f"{d['last_tick']['median']:.2e} (max {d['last_tick']['max']:.2e}), |u_T - u_{d['long_ticks']}| "
                  f"median {d['to_fixed_point']['median']:.2e} (max {d['to_fixed_point']['max']:.2e}) "
                  f"({time.time() - t0:.0f} s)", flush=True)
        prev = []
        if os.path.exists(a.out):
            with open(a.out) as f:
                prev = json.load(f)["rows"]
        command = (f"nice -n 10 python benchmarks/local_rules_meta_digits.py --rule {a.rule} --runs {a.runs} --diagnose "
                   + " ".join(map(str, a.diagnose)) + "".join(f" --set {shlex.quote(item)}" for item in a.set))
        with open(a.out, "w") as f:  # appended: one file holds every diagnosed setting
            json.dump({"config": config, "rows": prev + [{**r, "command": command} for r in rows]}, f, indent=1)
        return
    if a.meta_steps:
        base["meta"]["meta_steps"] = a.meta_steps
    if a.meta_lr:
        base["meta"]["meta_lr"] = a.meta_lr
    base["run"]["out_dir"] = f"runs/local_rules_{stem}_meta_digits_{int(time.time())}"  # a fresh run
    # a checkpoint after every taken meta-step: train() writes one only after a taken step, so a run
    # whose last meta-step is rejected (a diverging inner loop) would otherwise end without one
    base["run"]["checkpoint_every"] = 1
    K = base["meta"]["inner_steps"]
    ctx = make_context(parse_config(base))
    score = scorer(ctx, a.runs)
    grid, finals = {}, {}
    for lr in grid_values:  # the hand-tuned setting: one rate for every layer
        learned = resolve({**base["protocol"], key: lr}).init(jax.random.PRNGKey(0), ctx.net.graph)
        acc = score(learned)
        grid[lr], finals[lr] = summary(acc), acc[:, -1]
        print(f"hand-tuned {key} {lr}: accuracy after {K} steps {grid[lr]['final_accuracy']:.4f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    best = max(grid_values, key=lambda lr: grid[lr]["final_accuracy"])
    alternatives = {}
    for name, over in ALTERNATIVES.get(a.rule, {}).items():  # e.g. Oja's rule: Hebb's classic stabilised form
        proto = {**base["protocol"], **over}
        alt_ctx = make_context(parse_config({**base, "protocol": proto}))
        alt_score, alt = scorer(alt_ctx, a.runs), {}
        for lr in grid_values:
            acc = alt_score(resolve({**proto, key: lr}).init(jax.random.PRNGKey(0), alt_ctx.net.graph))
            alt[lr] = (summary(acc), acc[:, -1])
            print(f"{name} {key} {lr}: accuracy after {K} steps {alt[lr][0]['final_accuracy']:.4f}", flush=True)
        lr_best = max(grid_values, key=lambda lr: alt[lr][0]["final_accuracy"])
        alternatives[name] = {"overrides": over, "grid": {str(k): v[0]["final_accuracy"] for k, v in alt.items()},
                              "best_lr": lr_best, **alt[lr_best][0], "finals": alt[lr_best][1]}
    for name, over in ({"": {}, **ALTERNATIVES.get(a.rule, {})}).items() if a.rule in PER_LAYER else ():
        proto = {**base["protocol"], **over}  # a rate per layer, hand-tuned on a grid
        alt_ctx = make_context(parse_config({**base, "protocol": proto}))
        alt_score, alt = scorer(alt_ctx, a.runs), {}
        groups = PER_LAYER[a.rule]
        for rates in itertools.product(*groups.values()):
            learned = resolve(proto).init(jax.random.PRNGKey(0), alt_ctx.net.graph)
            learned["log_lr"].update({g: jnp.asarray(np.log(r), jnp.float32) for g, r in zip(groups, rates)})
            acc = alt_score(learned)
            alt[rates] = (summary(acc), acc[:, -1])
        top = max(alt, key=lambda r: alt[r][0]["final_accuracy"])
        print(f"per-layer {name or proto.get('form', '')}: best {dict(zip(groups, top))} "
              f"{alt[top][0]['final_accuracy']:.4f}", flush=True)
        alternatives[f"{name or proto.get('form', 'base')}_per_layer"] = {
            "overrides": over, "grid": {"/".join(map(str, k)): v[0]["final_accuracy"] for k, v in alt.items()},
            "best_lr": dict(zip(groups, top)), **alt[top][0], "finals": alt[top][1]}
    meta_base = copy.deepcopy({**base, "protocol": {**base["protocol"], key: best}})
    for item in a.meta_set:
        field, sep, value = item.partition("=")
        if not sep:
            raise AgentGraphError(f"--meta-set takes FIELD=VALUE, got {item!r}.")
        apply_overrides(meta_base, {field: yaml.safe_load(value)})
    cfg = parse_config(meta_base)
    t1 = time.time()
    train(cfg, progress=False, log=lambda s: None)
    t_train = time.time() - t1
    ckpt = max(glob.glob(os.path.join(base["run"]["out_dir"], "ckpt_*.npz")))
    ctx = make_context(cfg)
    learned, stats = load_protocol(ckpt, ctx)
    # scored on the same evaluation networks and tasks (the same keys: paired), by the meta-learned
    # run's own protocol (--meta-set may change how its meta-parameters map to rates)
    acc = (scorer(ctx, a.runs) if a.meta_set else score)(jax.tree.map(jnp.asarray, learned))
    ml, diff = summary(acc), acc[:, -1] - finals[best]
    ref = baselines(ctx, a.runs)  # SGD and Adam, rates tuned as evaluate() tunes them
    meta_params = jax.tree.map(lambda v: np.asarray(v).tolist(), learned)
    rates = ctx.protocol.params(learned, stats, ctx.net.graph)
    hand = grid[best]
    out = {
        "task": f"digits 8x8, mlp {base['net']['sizes']} {base['net'].get('activation', 'tanh')}, "
                f"{base['net'].get('loss', 'cross_entropy')}", "rule": a.rule,
        "inner_steps": K, "runs": a.runs, "config": config, "meta_steps": cfg.meta.meta_steps,
        "command": f"nice -n 10 python benchmarks/local_rules_meta_digits.py --rule {a.rule}"
                   + (f" --meta-steps {a.meta_steps}" if a.meta_steps else "")
                   + (f" --meta-lr {a.meta_lr}" if a.meta_lr else "")
                   + (" --grid " + " ".join(map(str, a.grid)) if a.grid else "")
                   + "".join(f" --set {shlex.quote(item)}" for item in a.set)
                   + "".join(f" --meta-set {shlex.quote(item)}" for item in a.meta_set),
        "meta_lr": cfg.meta.meta_lr,
        "hand_tuned": {"grid": {str(k): v["final_accuracy"] for k, v in grid.items()}, "setting": key,
                       "best_lr": best, **hand},
        "meta_learned": {**ml, "meta_parameters": meta_params,
                         "params": {g: {f: np.asarray(v).tolist() for f, v in p.items()} for g, p in rates.items()},
                         "checkpoint": ckpt},
        "paired_difference": {"mean": float(diff.mean()), "se": float(diff.std() / np.sqrt(a.runs))},
        "alternatives": {n: {**{k: v for k, v in alt.items() if k != "finals"},
                             "paired_difference_of_meta_learned": {
                                 "mean": float((acc[:, -1] - alt["finals"]).mean()),
                                 "se": float((acc[:, -1] - alt["finals"]).std() / np.sqrt(a.runs))}}
                         for n, alt in alternatives.items()},
        "sgd": ref["sgd"], "adam": ref["adam"],
        "seconds": {"train": round(t_train, 1), "total": round(time.time() - t0, 1)},
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: out[k] for k in ("hand_tuned", "paired_difference", "alternatives", "sgd", "adam", "seconds")},
                     indent=1)[:4000])
    print("meta-learned", ml["final_accuracy"], "+-", ml["se"], out["meta_learned"]["params"])


if __name__ == "__main__":
    main()
