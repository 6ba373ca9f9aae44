"""Evaluate a learned protocol against SGD and Adam on fresh random networks.

Every run draws a fresh network (weights ``~ N(0, init_std)``, biases 0) and a fresh task; each
learner trains it for ``K`` inner steps on the same batches; after every step the network is
scored on the task's evaluation set (the test split for images: accuracy; the sinusoid: L2 loss
on 100 evenly spaced points). Reported: mean and std over runs at each step (step 0 = before
training). SGD and Adam learning rates are tuned on separate runs unless given.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentgraph.meta.config import TrainConfig
from agentgraph.meta.setup import Setup, make_setup, predictions, with_params
from agentgraph.meta.tasks import TaskFamily, task_family
from agentgraph.protocols import mplp

__all__ = ["LR_GRID", "evaluate", "score", "run_mplp", "run_optax"]

#: Learning rates tried when tuning SGD and Adam.
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def score(setup: Setup, family: TaskFamily, w: jax.Array, b: jax.Array, data: dict) -> jax.Array:
    """Accuracy (classification) or mean loss of the network ``(w, b)`` on ``data``."""
    prog = setup.plain
    state = with_params(prog.init(data["x"].shape[0]), w, b)
    state, loss = prog.forward(None, state, data)
    if not family.classification:
        return loss / data["y"].shape[1]  # mean over output units
    pred = predictions(setup, prog, state)
    return jnp.mean(jnp.argmax(pred, -1) == jnp.argmax(data["y"], -1))


def _fresh(setup: Setup, key: jax.Array):
    return setup.cfg.net.init_std * jax.random.normal(key, (setup.n_synapses,)), jnp.zeros((setup.n_biases,))


def run_mplp(setup: Setup, family: TaskFamily, params: dict, key: jax.Array) -> jax.Array:
    """Scores ``[K + 1]`` of one MPLP run (no gradient anywhere in the inner loop)."""
    k_task, k_net = jax.random.split(key)
    task = family.eval_sample(k_task)
    w, b = _fresh(setup, k_net)
    prog = setup.prog
    state = with_params(prog.init(task["train"]["x"].shape[1]), w, b)

    def body(s, batch):
        s, _ = prog.step(params, s, batch)
        return s, score(setup, family, s["synapse"]["w"], s["bias"]["b"], task["cv"])

    _, scores = jax.lax.scan(body, state, task["train"])
    return jnp.concatenate([score(setup, family, w, b, task["cv"])[None], scores])


def run_optax(setup: Setup, family: TaskFamily, opt: optax.GradientTransformation, key: jax.Array) -> jax.Array:
    """Scores ``[K + 1]`` of one run of a gradient optimiser on the same kind of task."""
    k_task, k_net = jax.random.split(key)
    task = family.eval_sample(k_task)
    wb = _fresh(setup, k_net)
    prog = setup.plain

    def loss_fn(wb, batch):
        state = with_params(prog.init(batch["x"].shape[0]), *wb)
        return prog.forward(None, state, batch)[1]

    def body(carry, batch):
        wb, os_ = carry
        g = jax.grad(loss_fn)(wb, batch)
        upd, os_ = opt.update(g, os_, wb)
        wb = optax.apply_updates(wb, upd)
        return (wb, os_), score(setup, family, *wb, task["cv"])

    _, scores = jax.lax.scan(body, (wb, opt.init(wb)), task["train"])
    return jnp.concatenate([score(setup, family, *wb, task["cv"])[None], scores])


def _summary(scores: np.ndarray) -> dict[str, list[float]]:
    return {"mean": scores.mean(0).tolist(), "std": scores.std(0).tolist()}


def evaluate(cfg: TrainConfig, meta: dict, norm: dict, *, runs: int = 100, seed: int = 12345,
             sgd_lr: float | None = None, adam_lr: float | None = None, tune_runs: int = 10,
             setup: Setup | None = None) -> dict[str, Any]:
    """MPLP vs SGD vs Adam on fresh random networks: per-step mean ± std over ``runs``.

    Args:
        cfg: the network and task (may differ from training: transfer).
        meta, norm: the learned protocol and its normalisation.
        runs: evaluation runs.
        seed: evaluation seed (disjoint from training streams).
        sgd_lr, adam_lr: fixed learning rates; ``None`` tunes each over :data:`LR_GRID` on
            ``tune_runs`` separate runs (best final score).

    Returns:
        ``{"metric", "steps", "runs", "mplp": {"mean", "std"}, "sgd": {"mean", "std", "lr"},
        "adam": {...}}``.
    """
    setup = setup or make_setup(cfg)
    family = task_family(cfg)
    params = mplp.assemble(meta, norm, setup.keys)
    key = jax.random.PRNGKey(seed)
    k_eval, k_tune = jax.random.split(key)
    eval_keys = jax.random.split(k_eval, runs)
    better = (lambda a, b: a > b) if family.classification else (lambda a, b: a < b)

    mplp_scores = np.asarray(jax.jit(jax.vmap(lambda k: run_mplp(setup, family, params, k)))(eval_keys))
    out: dict[str, Any] = {"metric": "accuracy" if family.classification else "loss",
                           "steps": list(range(cfg.meta.inner_steps + 1)), "runs": runs,
                           "mplp": _summary(mplp_scores)}
    for name, make, fixed in (("sgd", optax.sgd, sgd_lr), ("adam", optax.adam, adam_lr)):
        def scores_for(lr, keys, make=make):
            return np.asarray(jax.jit(jax.vmap(lambda k: run_optax(setup, family, make(lr), k)))(keys))

        lr = fixed
        tuned = {}
        if lr is None:
            tune_keys = jax.random.split(jax.random.fold_in(k_tune, len(name)), tune_runs)
            for cand in LR_GRID:
                tuned[cand] = float(scores_for(cand, tune_keys)[:, -1].mean())
            lr = LR_GRID[0]
            for cand in LR_GRID:
                if better(tuned[cand], tuned[lr]):
                    lr = cand
        res = _summary(scores_for(lr, eval_keys))
        res["lr"] = lr
        if tuned:
            res["tuning"] = tuned
        out[name] = res
    return out
