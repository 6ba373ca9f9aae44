"""Meta-training driver: calibrate, then meta-train with checkpoints, metrics and resume.

``train(cfg)`` writes into ``cfg.run.out_dir``: ``metrics.jsonl`` (one line per meta-step:
meta-loss, held-out loss, mean hint loss, first/last inner loss, seconds) and checkpoints
``ckpt_<step>.npz`` holding the :class:`TrainState` (the protocol's meta-parameters and any
learned prior, its measured stats, the optimiser state, the prior pool) and the step. Randomness is derived from ``(run.seed, step)``, so ``resume=True``
continues exactly as an uninterrupted run would (same numbers on CPU). A non-finite meta-loss or
gradient skips that update, is reported with its step, and is never written to a checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentgraph.errors import AgentGraphError
from agentgraph import checkpoint as ckpt
from agentgraph.meta.config import TrainConfig, parse_config
from agentgraph.meta.context import Context, make_contexts
from agentgraph.meta.loop import batch_meta_loss, task_meta_loss
from agentgraph.meta.objectives import make_objective
from agentgraph.meta.optim import meta_optimizer
from agentgraph.meta.tasks import TaskFamily, task_family
from agentgraph.runtime import release_freed_memory

__all__ = ["TrainResult", "TrainState", "init_training", "init_training_shapes", "make_meta_step", "measure_stats",
           "train"]

FORMAT = "agentgraph-train-2"
MAX_BAD_STEPS = 20


class TrainState(NamedTuple):
    """Everything meta-training carries from one meta-step to the next (a pytree).

    Attributes:
        trainable: what the meta-optimiser changes: ``{"protocol": learned}`` and, with
            ``meta.maml``, ``"prior"``: learned initial weights ``{kind: {field: [N, ...]}}``.
        stats: the protocol's measured, frozen quantities (``Protocol.calibrate``).
        opt_state: the meta-optimiser's state.
        pool: start weights of the inner runs, ``{kind: {field: [P, N, ...]}}``.
    """

    trainable: dict
    stats: Any
    opt_state: Any
    pool: dict


class TrainResult(dict):
    """Summary of a run: ``steps``, ``first_meta_loss``, ``last_meta_loss``, ``seconds_per_step``,
    ``bad_steps``, ``checkpoint``, ``out_dir``."""


def _keys(cfg: TrainConfig) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(protocol, pool, calibration, prior)`` keys of a run: one split of ``run.seed``."""
    k = jax.random.split(jax.random.PRNGKey(cfg.run.seed), 4)
    return k[0], k[1], k[2], k[3]


def measure_stats(ctx: Context, family: TaskFamily, learned: Any = None) -> tuple[Any, Any, dict]:
    """``(learned, stats, pool)`` as meta-training starts on ``ctx``'s network: the protocol's
    fresh meta-parameters for ``run.seed`` (or ``learned``), its stats calibrated over inner loops
    on the seed's prior pool (``Protocol.calibrate``), and the pool. ``agentgraph eval
    --remeasure`` calls it on a transfer target with the *untrained* protocol, as training did.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...                     "protocol": {"calibration_rounds": 1}, "meta": {"inner_steps": 2}})
        >>> learned, stats, pool = measure_stats(make_context(cfg), task_family(cfg))
        >>> sorted(stats["synapse:0"])
        ['in_inv_std', 'in_mean', 'out_mean']
    """
    cfg, proto = ctx.cfg, ctx.protocol
    k_meta, k_pool, k_cal, _ = _keys(cfg)
    if learned is None:
        learned = proto.init(k_meta, ctx.net.graph)
    pool = ctx.pool(k_pool, cfg.meta.prior_pool)
    stats = proto.calibrate(learned, proto.init_stats(ctx.net.graph), ctx, family.sample, k_cal, pool)
    return learned, stats, pool


def init_training(cfg: TrainConfig, ctx: Context, family: TaskFamily) -> TrainState:
    """A fresh training state: the protocol's meta-parameters (adjusted by its warm start's
    ``prepare``), measured stats, prior pool, a learned prior with ``meta.maml``, optimiser state.

    Raises:
        AgentGraphError: there is nothing to meta-train (a protocol with no meta-parameters and no
            ``meta.maml``).
    """
    _, _, k_cal, k_prior = _keys(cfg)
    learned, stats, pool = measure_stats(ctx, family)
    warm = ctx.protocol.warm_start
    if warm is not None and warm.prepare is not None:
        task = family.sample(jax.random.fold_in(k_cal, 1))
        learned = warm.prepare(learned, stats, ctx, task, jax.tree.map(lambda v: v[0], pool))
    trainable: dict[str, Any] = {"protocol": learned}
    if cfg.meta.maml:
        trainable["prior"] = ctx.fresh(k_prior)
    if not jax.tree.leaves(trainable):
        raise AgentGraphError(f"The protocol {ctx.protocol.name!r} has no meta-parameters: there is nothing to "
                              "meta-train. Set meta.maml to true to learn the initial weights (MAML).")
    return TrainState(trainable, stats, meta_optimizer(cfg.meta.meta_lr).init(trainable), pool)


def init_training_shapes(cfg: TrainConfig, ctx: Context) -> TrainState:
    """The structure and shapes of a training state, without calibrating (a checkpoint template)."""
    key = jax.random.PRNGKey(0)
    trainable: dict[str, Any] = {"protocol": ctx.protocol.init(key, ctx.net.graph)}
    if cfg.meta.maml:
        trainable["prior"] = ctx.fresh(key)
    return TrainState(trainable, ctx.protocol.init_stats(ctx.net.graph), meta_optimizer(cfg.meta.meta_lr).init(trainable),
                      ctx.pool(key, cfg.meta.prior_pool))


def make_meta_step(cfg: TrainConfig, ctx: Context, family: TaskFamily, *, warm: bool = False,
                   unroll: int | None = None, stage: Hashable = None) -> Callable:
    """The jitted meta-step ``(train_state, step, program) -> (train_state, metrics, finite)``
    (``program``: the protocol's compiled graph, an argument so that the programs of a graph
    pool share one executable; ``warm``: the protocol's warm-start objective at its meta-lr;
    ``unroll``: meta-train on the first ``unroll`` inner steps of each task only — the
    curriculum; ``stage``: the protocol's static variant, ``Protocol.stage``).

    A step whose meta-loss or gradients are not finite leaves the state unchanged and returns
    ``finite = False``.
    """
    m = cfg.meta
    w = ctx.protocol.warm_start
    opt = meta_optimizer((w.meta_lr or m.meta_lr) if warm else m.meta_lr)
    data_key = jax.random.fold_in(jax.random.PRNGKey(cfg.run.seed), 1)
    n_tasks = m.outer_batch
    warm_steps = w.steps if w is not None else 0
    objective = make_objective(m)
    warm_loss = w.make(ctx) if warm else None

    def task_loss(phase):
        def one(trainable, stats, program, task, w0):
            if warm_loss is not None:
                return warm_loss(trainable["protocol"], stats, task, trainable.get("prior", w0))
            return task_meta_loss(trainable, stats, ctx, program, task, w0, objective, stage=stage, phase=phase)

        return one

    def step_fn(ts: TrainState, step, program):
        k = jax.random.fold_in(data_key, step)
        k_tasks, k_prior = jax.random.split(k)
        tasks = jax.vmap(family.sample)(jax.random.split(k_tasks, n_tasks))
        if unroll is not None:
            tasks = {**tasks, "train": jax.tree.map(lambda v: v[:, :unroll], tasks["train"])}
        idx = jax.random.randint(k_prior, (n_tasks,), 0, jax.tree.leaves(ts.pool)[0].shape[0])
        w0s = jax.tree.map(lambda v: v[idx], ts.pool)
        phase = jnp.maximum(step - warm_steps, 0)
        (loss, aux), grads = jax.value_and_grad(batch_meta_loss, has_aux=True)(
            ts.trainable, ts.stats, ctx, program, tasks, w0s, task_loss(phase))
        finite = jnp.isfinite(loss) & jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        updates, new_opt = opt.update(grads, ts.opt_state, ts.trainable)
        new_tr = optax.apply_updates(ts.trainable, updates)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        out = ts._replace(trainable=keep(new_tr, ts.trainable), opt_state=keep(new_opt, ts.opt_state))
        metrics = {"meta_loss": loss, "cv": aux["cv"], "hint": aux["hint"].mean(),
                   "inner_first": aux["loss"][0], "inner_last": aux["loss"][-1]}
        return out, metrics, finite

    return jax.jit(step_fn)


def _release_after_compile(fn: Callable) -> Callable:
    """``fn`` (jitted) that, on its first call, compiles, hands the compiler's freed memory back
    to the system (:func:`~agentgraph.runtime.release_freed_memory`), then runs: the run's
    buffers do not pile on top of the compiler's leftovers (docs/performance.md)."""
    compiled = []

    def call(*args):
        if not compiled:
            fn.lower(*args).compile()  # fills the cache the call below uses
            release_freed_memory()
            compiled.append(True)
        return fn(*args)

    return call


def _metadata(cfg: TrainConfig, step: int) -> dict:
    return {"format": FORMAT, "step": step, "config": cfg.model_dump(mode="json")}


def _trim_metrics(path: str, upto: int) -> None:
    """Keep only metric lines of steps < ``upto`` (a resumed run rewrites the rest)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and json.loads(ln)["step"] < upto]
    with open(path, "w") as f:
        f.writelines(lines)


def _state_keys(tree: Any) -> set[str]:
    return {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, max_steps: int | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Meta-train the protocol ``cfg`` describes.

    Args:
        cfg: the validated config.
        resume: continue from the newest checkpoint in ``cfg.run.out_dir`` (refused if it was
            written with a different config).
        progress: show a progress bar with the live meta-loss.
        max_steps: stop after this many meta-steps in this call (for sessions with a time limit);
            the run still ends at ``cfg.meta.meta_steps``.
        log: where messages go.

    Returns:
        :class:`TrainResult`.
    """
    out_dir = cfg.run.out_dir
    family = task_family(cfg)  # loads data: a missing dataset fails here, before any compute
    ctxs = make_contexts(cfg)
    ctx = ctxs[0]
    proto = ctx.protocol
    os.makedirs(out_dir, exist_ok=True)
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    start = 0
    ts = None
    setup_seconds = None
    if resume:
        path = ckpt.latest(out_dir)
        if path is None:
            log(f"no checkpoint in {out_dir!r}: starting fresh")
        else:
            tree, header = ckpt.load(path, init_training_shapes(cfg, ctx))
            saved = header.get("config")
            # compare validated configs: fields added since the checkpoint take their defaults
            if saved is None or parse_config(saved).model_dump(mode="json") != cfg.model_dump(mode="json"):
                raise AgentGraphError(
                    f"Checkpoint {path!r} was written with a different config; resume with the same "
                    "config (or start a new run.out_dir)."
                )
            ts = jax.tree.map(jnp.asarray, tree)
            start = int(header["step"]) + 1
            log(f"resuming from {path} at meta-step {start}")
    if ts is None:
        if ckpt.latest(out_dir) is not None:
            raise AgentGraphError(
                f"{out_dir!r} already holds checkpoints of an earlier run; pass --resume to continue it, or "
                "choose another run.out_dir."
            )
        t0 = time.perf_counter()
        ts = init_training(cfg, ctx, family)
        setup_seconds = time.perf_counter() - t0
        log(f"protocol {proto.name!r} initialised (stats measured) in {setup_seconds:.1f} s")
        if os.path.exists(metrics_path):
            os.remove(metrics_path)
    _trim_metrics(metrics_path, start)
    warm_steps = proto.warm_start.steps if proto.warm_start is not None else 0
    programs: dict[tuple, Callable] = {}  # (warm start, unroll, stage) -> one meta-step for every pool graph

    def meta_step(ts, s):  # graph s mod G, all through one compiled step (one bucket)
        warm = s < warm_steps
        phase = max(s - warm_steps, 0)  # curriculum and protocol stages count meta-loss steps
        k = cfg.meta.unroll_at(phase) if not warm else cfg.meta.inner_steps
        stage = proto.stage(phase)
        if (warm, k, stage) not in programs:
            unroll = k if k < cfg.meta.inner_steps else None
            programs[warm, k, stage] = _release_after_compile(
                make_meta_step(cfg, ctx, family, warm=warm, unroll=unroll, stage=stage))
        return programs[warm, k, stage](ts, s, ctxs[s % len(ctxs)].program)

    evaluate_now = _periodic_eval(cfg, ctx, family) if cfg.run.eval_every else None
    end = cfg.meta.meta_steps if max_steps is None else min(cfg.meta.meta_steps, start + max_steps)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.meta.meta_steps, initial=start, desc="meta-training", unit="step")
    first = last = None
    bad = consecutive_bad = 0
    times = []
    last_ckpt = None
    with open(metrics_path, "a") as mf:
        for s in range(start, end):
            t0 = time.perf_counter()
            new_ts, m, finite = meta_step(ts, s)
            m = {k: float(v) for k, v in m.items()}
            if s < warm_steps:
                m["warm_start"] = True  # meta_loss is the protocol's warm-start objective on this step
            elif cfg.meta.curriculum:
                m["unroll"] = cfg.meta.unroll_at(s - warm_steps)
            dt = time.perf_counter() - t0
            times.append(dt)
            if not bool(finite):
                bad += 1
                consecutive_bad += 1
                log(f"meta-step {s}: non-finite meta-loss or gradient (meta-loss {m['meta_loss']}); update skipped, "
                    "no checkpoint written")
                if consecutive_bad >= MAX_BAD_STEPS:
                    raise AgentGraphError(
                        f"{consecutive_bad} consecutive non-finite meta-steps (last {s}); lower meta.meta_lr or "
                        f"check the data. The last good checkpoint is {last_ckpt or 'none'}."
                    )
            else:
                consecutive_bad = 0
            ts = new_ts
            first = m["meta_loss"] if first is None else first
            last = m["meta_loss"]
            if evaluate_now is not None and ((s + 1) % cfg.run.eval_every == 0 or s == 0):
                m["eval"] = evaluate_now(ts, s)
            if s == 0 and setup_seconds is not None:
                m["setup_seconds"] = setup_seconds  # calibration and initialisation, before meta-step 0
            mf.write(json.dumps({"step": s, **m, "finite": bool(finite), "seconds": dt}) + "\n")
            mf.flush()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(meta_loss=f"{m['meta_loss']:.4f}", cv=f"{m['cv']:.4f}")
            if bool(finite) and ((s + 1) % cfg.run.checkpoint_every == 0 or s == end - 1):
                last_ckpt = ckpt.save_step(out_dir, s, jax.device_get(ts), _metadata(cfg, s), keep=cfg.run.keep)
    if bar is not None:
        bar.close()
    return TrainResult(
        steps=end - start, first_meta_loss=first, last_meta_loss=last,
        seconds_per_step=float(np.median(times[1:])) if len(times) > 1 else (times[0] if times else None),
        first_step_seconds=times[0] if times else None, bad_steps=bad, checkpoint=last_ckpt, out_dir=out_dir,
    )


def _periodic_eval(cfg: TrainConfig, ctx: Context, family: TaskFamily) -> Callable:
    """``(train_state, step) -> float``: the protocol's mean score after the last inner step on
    ``run.eval_runs`` fresh networks (fixed evaluation keys, so the curve is comparable across
    steps); one compiled program."""
    from agentgraph.meta.evaluate import run_protocol

    keys = jax.random.split(jax.random.PRNGKey(2_000_003), cfg.run.eval_runs)

    @jax.jit
    def scores(trainable, stats):
        params = ctx.params(trainable["protocol"], stats)
        prior = trainable.get("prior")
        return jax.vmap(lambda k: run_protocol(ctx, family, params, k, prior)[0][-1])(keys).mean()

    return lambda ts, s: float(scores(ts.trainable, ts.stats))
