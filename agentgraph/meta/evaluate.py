"""Evaluate a learned protocol against SGD and Adam on fresh random networks.

Every run draws a fresh network (weights ``~ N(0, init_std)``, biases 0) and a fresh task; each
learner trains it for ``K`` inner steps on the same batches; after every step the network is
scored on the task's evaluation set (the test split for images: accuracy; the sinusoid: L2 loss
on 100 evenly spaced points). Reported: mean and std over runs at each step (step 0 = before
training). SGD and Adam learning rates are tuned on separate runs unless given.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import TrainConfig
from agentgraph.meta.context import Context, make_context
from agentgraph.meta.tasks import TaskFamily, task_family
from agentgraph.network import accuracy, prediction_loss

__all__ = ["LR_GRID", "evaluate", "score", "run_protocol", "run_optax"]

#: Learning rates tried when tuning SGD and Adam.
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def _judge(family: TaskFamily, pred: jax.Array, y: jax.Array, per_example: bool) -> jax.Array:
    """Accuracy (classification) or mean loss per output unit of predictions ``pred [C, n_out]``
    against ``y``; with ``per_example``, the ``[C]`` values."""
    if not family.classification:
        per = prediction_loss(pred, y, "values") / y.shape[1]  # mean over output units
        return per if per_example else per.mean()
    ok = accuracy(pred, y)
    return ok if per_example else ok.mean()


def score(ctx: Context, family: TaskFamily, program, params, weights: dict, data: dict, *,
          per_example: bool = False, plain: bool = False) -> jax.Array:
    """Accuracy (classification) or mean loss per output of the network with ``weights`` run by
    ``program`` (the protocol's, or ``ctx.plain`` with ``plain``) on ``data`` (``[C, n]``
    arrays); with ``per_example``, the ``[C]`` values (correct 0/1, or loss per output unit)."""
    state = ctx.start(weights, data["x"].shape[0], program, plain)
    state, _ = program.forward(params, state, data)
    return _judge(family, ctx.predict(state, program, plain), data["y"], per_example)


def _seen(family: TaskFamily, predict, train: dict, t) -> jax.Array:
    """The score on the training points of batches ``0..t`` (what the learner has seen);
    ``predict(data) -> [C, n_out]``."""
    K, B = train["x"].shape[:2]
    flat = jax.tree.map(lambda v: v.reshape(K * B, *v.shape[2:]), train)
    vals = _judge(family, predict(flat), flat["y"], True)
    mask = (jnp.arange(K * B) // B <= t).astype(vals.dtype)
    return (vals * mask).sum() / mask.sum()


def run_protocol(ctx: Context, family: TaskFamily, params: Any, key: jax.Array, prior: dict | None = None,
                 program=None) -> tuple[jax.Array, jax.Array]:
    """One run of the protocol (``params`` from ``ctx.params``): ``(scores [K + 1], seen [K])``
    — the evaluation-set score before and after each step, and the score on the training points
    seen so far after each step. Starts from a fresh random network, or from ``prior`` (learned
    weights, MAML). ``program``: the protocol's compiled graph (default ``ctx.program``). The
    network in each step's state scores held-out data as the protocol says
    (:meth:`Context.held_out`: the weights run forward, or the protocol's own hook — VSML's
    learners keep their LSTM states)."""
    k_task, k_net = jax.random.split(key)
    task = family.eval_sample(k_task)
    prog = ctx.program if program is None else program
    w = ctx.fresh(k_net, prog) if prior is None else prior
    state = ctx.start(w, task["train"]["x"].shape[1], prog)
    stage = ctx.protocol.stage(None)

    def on_cv(s):
        return _judge(family, ctx.held_out(prog, params, s, task["cv"]), task["cv"]["y"], False)

    def body(s, tb):
        t, batch = tb
        s, _ = ctx.step(prog, params, s, batch, stage, None)
        return s, (on_cv(s), _seen(family, lambda d: ctx.held_out(prog, params, s, d), task["train"], t))

    K = task["train"]["x"].shape[0]
    _, (scores, seen) = jax.lax.scan(body, state, (jnp.arange(K), task["train"]))
    return jnp.concatenate([on_cv(state)[None], scores]), seen


def run_optax(ctx: Context, family: TaskFamily, opt: optax.GradientTransformation,
              key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One run of a gradient optimiser on the library network (``ctx.plain``), same kind of task
    and the same fresh network for the same key: ``(scores [K + 1], seen [K])`` as
    :func:`run_protocol`."""
    k_task, k_net = jax.random.split(key)
    task = family.eval_sample(k_task)
    prog = ctx.plain
    w = ctx.fresh(k_net, plain=True)

    def loss_fn(w, batch):
        return prog.forward(None, ctx.start(w, batch["x"].shape[0], plain=True), batch)[1]

    def body(carry, tb):
        t, batch = tb
        w, os_ = carry
        g = jax.grad(loss_fn)(w, batch)
        upd, os_ = opt.update(g, os_, w)
        w = optax.apply_updates(w, upd)
        predict = lambda d: ctx.predict(prog.forward(None, ctx.start(w, d["x"].shape[0], plain=True), d)[0],  # noqa: E731
                                        prog, True)
        return (w, os_), (score(ctx, family, prog, None, w, task["cv"], plain=True), _seen(family, predict, task["train"], t))

    K = task["train"]["x"].shape[0]
    _, (scores, seen) = jax.lax.scan(body, (w, opt.init(w)), (jnp.arange(K), task["train"]))
    return jnp.concatenate([score(ctx, family, prog, None, w, task["cv"], plain=True)[None], scores]), seen


#: Bytes one evaluation run may hold at once, per agent and example (learner activations).
_BYTES_PER_ROW = 1200 * 4
_MEMORY_BUDGET = 4e9


def _runs_at_once(ctx: Context, batch: int) -> int:
    """How many evaluation runs to vmap together so their activations fit ``_MEMORY_BUDGET``
    (all 100 for the paper's 12×12 net; a handful for (784,100,10))."""
    rows = ctx.net.graph.number_of_agents() * batch
    return max(1, int(_MEMORY_BUDGET // (rows * _BYTES_PER_ROW)))


def _chunked(fn, keys: jax.Array, chunk: int):
    """``fn(keys)`` (a vmapped run over keys ``[R, ...]``) in slices of ``chunk`` runs,
    concatenated: the same numbers as one call, in bounded memory."""
    if keys.shape[0] <= chunk:
        return fn(keys)
    parts = [jax.device_get(fn(keys[i:i + chunk])) for i in range(0, keys.shape[0], chunk)]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def _summary(runs: tuple[np.ndarray, np.ndarray]) -> dict[str, list[float]]:
    scores, seen = (np.asarray(r) for r in runs)
    return {"mean": scores.mean(0).tolist(), "std": scores.std(0).tolist(),
            "seen_mean": seen.mean(0).tolist(), "seen_std": seen.std(0).tolist()}


def evaluate(cfg: TrainConfig, learned: Any, stats: Any, *, runs: int = 100, seed: int = 12345,
             sgd_lr: float | None = None, adam_lr: float | None = None, tune_runs: int = 10,
             ctx: Context | None = None, prior: dict | None = None) -> dict[str, Any]:
    """The protocol vs SGD vs Adam on fresh random networks: per-step mean ± std over ``runs``.

    Args:
        cfg: the network, protocol and task (may differ from training: transfer).
        learned, stats: the protocol's meta-parameters and measured stats (from a checkpoint,
            :func:`~agentgraph.meta.protocol_io.load_protocol`).
        prior: learned initial weights (MAML): the protocol's runs start from them (SGD and Adam
            still start from fresh random networks).
        runs: evaluation runs.
        seed: evaluation seed (disjoint from training streams).
        sgd_lr, adam_lr: fixed learning rates; ``None`` tunes each over :data:`LR_GRID` on
            ``tune_runs`` separate runs (best final score).
        ctx: a built :class:`~agentgraph.meta.context.Context` of ``cfg`` (built if not given).

    Returns:
        ``{"metric", "steps", "runs", "rule": name, "protocol": {"mean", "std", "seen_mean",
        "seen_std"}, "sgd": {..., "lr"}, "adam": {...}}`` — ``mean``/``std`` per step ``0..K``
        on the evaluation set, ``seen_*`` per step ``1..K`` on the training points seen so far.
    """
    for name, v in (("runs", runs), ("tune_runs", tune_runs)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise AgentGraphError(f"evaluate: {name} must be a positive number of runs, got {v!r}.")
    for name, v in (("sgd_lr", sgd_lr), ("adam_lr", adam_lr)):
        if v is not None and not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v > 0):
            raise AgentGraphError(f"evaluate: {name} must be a positive finite learning rate (or None to tune it), "
                                  f"got {v!r}.")
    ctx = ctx or make_context(cfg)
    family = task_family(cfg)
    ctx.check_task(family.eval_sample)
    params = ctx.params(learned, stats)
    key = jax.random.PRNGKey(seed)
    k_eval, k_tune = jax.random.split(key)
    eval_keys = jax.random.split(k_eval, runs)
    better = (lambda a, b: a > b) if family.classification else (lambda a, b: a < b)

    chunk = _runs_at_once(ctx, cfg.meta.batch)
    proto_runs = _chunked(jax.jit(jax.vmap(lambda k: run_protocol(ctx, family, params, k, prior))), eval_keys, chunk)
    out: dict[str, Any] = {"metric": "accuracy" if family.classification else "loss",
                           "steps": list(range(cfg.meta.inner_steps + 1)), "runs": runs,
                           "rule": ctx.protocol.name, "protocol": _summary(proto_runs)}
    for name, make, fixed in (("sgd", optax.sgd, sgd_lr), ("adam", optax.adam, adam_lr)):
        # the learning rate is an argument of one compiled program, not a constant of many
        run_lr = jax.jit(jax.vmap(lambda lr, k, make=make: run_optax(ctx, family, make(lr), k), in_axes=(None, 0)))

        def scores_for(lr, keys, run_lr=run_lr):
            return _chunked(lambda k: run_lr(jnp.asarray(lr, jnp.float32), k), keys, chunk)

        lr = fixed
        tuned = {}
        if lr is None:
            tune_keys = jax.random.split(jax.random.fold_in(k_tune, len(name)), tune_runs)
            for cand in LR_GRID:
                tuned[cand] = float(np.asarray(scores_for(cand, tune_keys)[0])[:, -1].mean())
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
