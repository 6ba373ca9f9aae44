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
from agentgraph.meta.gradient_input import eval_scale, with_gradient
from agentgraph.meta.setup import Setup, make_setup, predictions, with_params
from agentgraph.meta.tasks import TaskFamily, task_family
from agentgraph.protocols import mplp

__all__ = ["LR_GRID", "evaluate", "score", "run_mplp", "run_optax"]

#: Learning rates tried when tuning SGD and Adam.
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def score(setup: Setup, family: TaskFamily, w: jax.Array, b: jax.Array, data: dict, *,
          per_example: bool = False) -> jax.Array:
    """Accuracy (classification) or mean loss of the network ``(w, b)`` on ``data`` (``[C, n]``
    arrays); with ``per_example``, the ``[C]`` values (correct 0/1, or loss per output unit)."""
    prog = setup.plain
    state = with_params(prog.init(data["x"].shape[0]), w, b)
    state, loss = prog.forward(None, state, data)
    pred = predictions(setup, prog, state)
    if not family.classification:
        if not per_example:
            return loss / data["y"].shape[1]  # mean over output units
        return (0.5 * (data["y"] - pred) ** 2).mean(-1)
    ok = (jnp.argmax(pred, -1) == jnp.argmax(data["y"], -1)).astype(pred.dtype)
    return ok if per_example else ok.mean()


def _seen(setup: Setup, family: TaskFamily, w, b, train: dict, t) -> jax.Array:
    """The score on the training points of batches ``0..t`` (what the learner has seen)."""
    K, B = train["x"].shape[:2]
    flat = jax.tree.map(lambda v: v.reshape(K * B, *v.shape[2:]), train)
    vals = score(setup, family, w, b, flat, per_example=True)
    mask = (jnp.arange(K * B) // B <= t).astype(vals.dtype)
    return (vals * mask).sum() / mask.sum()


def _fresh(setup: Setup, key: jax.Array):
    return setup.cfg.net.init_std * jax.random.normal(key, (setup.n_synapses,)), jnp.zeros((setup.n_biases,))


def run_mplp(setup: Setup, family: TaskFamily, params: dict, key: jax.Array, prior: dict | None = None,
             prog=None) -> tuple[jax.Array, jax.Array]:
    """One run of the protocol (MPLP: no gradient anywhere in the inner loop; ``prog`` given:
    that program, e.g. the gradient protocol for the MAML baseline): ``(scores [K + 1], seen
    [K])`` — the evaluation-set score before and after each step, and the score on the training
    points seen so far after each step. Starts from a fresh random network, or from ``prior``
    (``{"w", "b"}``, a learned MAML prior)."""
    k_task, k_net = jax.random.split(key)
    task = family.eval_sample(k_task)
    w, b = _fresh(setup, k_net) if prior is None else (prior["w"], prior["b"])
    prog = setup.prog if prog is None else prog
    state = with_params(prog.init(task["train"]["x"].shape[1]), w, b)

    feed = prog is setup.prog and eval_scale(setup) is not None

    def body(s, tb):
        t, batch = tb
        if feed:  # protocol.grad_input "always" (a "train" input is gone at evaluation)
            s = with_gradient(setup, s, batch, eval_scale(setup))
        s, _ = prog.step(params, s, batch)
        w, b = s["synapse"]["w"], s["bias"]["b"]
        return s, (score(setup, family, w, b, task["cv"]), _seen(setup, family, w, b, task["train"], t))

    K = task["train"]["x"].shape[0]
    _, (scores, seen) = jax.lax.scan(body, state, (jnp.arange(K), task["train"]))
    return jnp.concatenate([score(setup, family, w, b, task["cv"])[None], scores]), seen


def run_optax(setup: Setup, family: TaskFamily, opt: optax.GradientTransformation,
              key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One run of a gradient optimiser on the same kind of task: ``(scores [K + 1], seen [K])``
    as :func:`run_mplp`."""
    k_task, k_net = jax.random.split(key)
    task = family.eval_sample(k_task)
    wb = _fresh(setup, k_net)
    prog = setup.plain

    def loss_fn(wb, batch):
        state = with_params(prog.init(batch["x"].shape[0]), *wb)
        return prog.forward(None, state, batch)[1]

    def body(carry, tb):
        t, batch = tb
        wb, os_ = carry
        g = jax.grad(loss_fn)(wb, batch)
        upd, os_ = opt.update(g, os_, wb)
        wb = optax.apply_updates(wb, upd)
        return (wb, os_), (score(setup, family, *wb, task["cv"]), _seen(setup, family, *wb, task["train"], t))

    K = task["train"]["x"].shape[0]
    _, (scores, seen) = jax.lax.scan(body, (wb, opt.init(wb)), (jnp.arange(K), task["train"]))
    return jnp.concatenate([score(setup, family, *wb, task["cv"])[None], scores]), seen


#: Bytes one evaluation run may hold at once, per agent and example (learner activations).
_BYTES_PER_ROW = 1200 * 4
_MEMORY_BUDGET = 4e9


def _runs_at_once(setup: Setup, batch: int) -> int:
    """How many evaluation runs to vmap together so their activations fit ``_MEMORY_BUDGET``
    (all 100 for the paper's 12×12 net; a handful for (784,100,10))."""
    rows = (setup.n_synapses + setup.n_biases) * batch
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


def evaluate(cfg: TrainConfig, meta: dict | None, norm: dict, *, runs: int = 100, seed: int = 12345,
             sgd_lr: float | None = None, adam_lr: float | None = None, tune_runs: int = 10,
             setup: Setup | None = None, prior: dict | None = None) -> dict[str, Any]:
    """MPLP vs SGD vs Adam on fresh random networks: per-step mean ± std over ``runs``.

    Args:
        cfg: the network and task (may differ from training: transfer).
        meta, norm: the learned protocol and its normalisation (``meta`` is ``None`` for
            ``protocol.rule: sgd``, the MAML baseline: its "protocol" runs are SGD with
            ``protocol.sgd_lr``).
        prior: a learned MAML prior ``{"w", "b"}``: the protocol's runs start from it (SGD and
            Adam still start from fresh random networks).
        runs: evaluation runs.
        seed: evaluation seed (disjoint from training streams).
        sgd_lr, adam_lr: fixed learning rates; ``None`` tunes each over :data:`LR_GRID` on
            ``tune_runs`` separate runs (best final score).

    Returns:
        ``{"metric", "steps", "runs", "mplp": {"mean", "std", "seen_mean", "seen_std"}, "sgd":
        {..., "lr"}, "adam": {...}}`` — ``mean``/``std`` per step ``0..K`` on the evaluation set,
        ``seen_*`` per step ``1..K`` on the training points seen so far.
    """
    setup = setup or make_setup(cfg)
    family = task_family(cfg)
    from agentgraph.meta.loop import protocol_params

    params, prog = protocol_params(setup, {"protocol": meta}, norm)
    key = jax.random.PRNGKey(seed)
    k_eval, k_tune = jax.random.split(key)
    eval_keys = jax.random.split(k_eval, runs)
    better = (lambda a, b: a > b) if family.classification else (lambda a, b: a < b)

    chunk = _runs_at_once(setup, cfg.meta.batch)
    mplp_runs = _chunked(jax.jit(jax.vmap(lambda k: run_mplp(setup, family, params, k, prior, prog))), eval_keys, chunk)
    out: dict[str, Any] = {"metric": "accuracy" if family.classification else "loss",
                           "steps": list(range(cfg.meta.inner_steps + 1)), "runs": runs,
                           "mplp": _summary(mplp_runs)}
    for name, make, fixed in (("sgd", optax.sgd, sgd_lr), ("adam", optax.adam, adam_lr)):
        # the learning rate is an argument of one compiled program, not a constant of many
        run_lr = jax.jit(jax.vmap(lambda lr, k, make=make: run_optax(setup, family, make(lr), k), in_axes=(None, 0)))

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
