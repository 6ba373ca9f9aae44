"""Meta-training driver: calibrate, then meta-train with checkpoints, metrics and resume.

``train(cfg)`` writes into ``cfg.run.out_dir``: ``metrics.jsonl`` (one line per meta-step:
meta-loss, held-out loss, mean hint loss, first/last inner loss, seconds) and checkpoints
``ckpt_<step>.npz`` holding the learned protocol, its normalisation, the optimiser state, the
prior pool and the step. Randomness is derived from ``(run.seed, step)``, so ``resume=True``
continues exactly as an uninterrupted run would (same numbers on CPU). A non-finite meta-loss or
gradient skips that update, is reported with its step, and is never written to a checkpoint.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentgraph.errors import AgentGraphError
from agentgraph.meta import checkpoint as ckpt
from agentgraph.meta.config import TrainConfig, parse_config
from agentgraph.meta.imitation import make_imitation, matched_out_scale, task_imitation_loss
from agentgraph.meta.gradient_input import train_scale
from agentgraph.meta.loop import batch_meta_loss, task_meta_loss
from agentgraph.meta.normalisation import initial_norm
from agentgraph.meta.optim import meta_optimizer
from agentgraph.meta.setup import Setup, build_graph, make_setup, prior_pool
from agentgraph.meta.tasks import TaskFamily, task_family
from agentgraph.protocols import mplp
from agentgraph.runtime import release_freed_memory

__all__ = ["TrainResult", "init_training", "make_meta_step", "make_setups", "train"]

FORMAT = "agentgraph-train-1"
MAX_BAD_STEPS = 20


class TrainResult(dict):
    """Summary of a run: ``steps``, ``first_meta_loss``, ``last_meta_loss``, ``seconds_per_step``,
    ``bad_steps``, ``checkpoint``, ``out_dir``."""


def make_setups(cfg: TrainConfig) -> list[Setup]:
    """The inner networks meta-training cycles through: one, or ``meta.graph_pool`` seeded
    random DAGs (seeds ``run.seed + i``)."""
    if cfg.meta.graph_pool == 1:
        return [make_setup(cfg)]
    return [make_setup(cfg, build_graph(cfg, seed=cfg.run.seed + i)) for i in range(cfg.meta.graph_pool)]


def _extra_pools(cfg: TrainConfig, setups: list[Setup], key: jax.Array) -> dict[str, Any]:
    return {str(i): prior_pool(s, jax.random.fold_in(key, i), cfg.meta.prior_pool) for i, s in enumerate(setups)
            if i > 0}


def init_training(cfg: TrainConfig, setup: Setup, family: TaskFamily,
                  setups: list[Setup] | None = None) -> dict[str, Any]:
    """A fresh training state: protocol, measured normalisation, prior pool (``pool_extra``: the
    pools of the other graphs of a graph pool), optimiser state."""
    _, k_pool, k_cal, k_prior = jax.random.split(jax.random.PRNGKey(cfg.run.seed), 4)  # as initial_norm's
    meta, norm, pool = initial_norm(cfg, setup, family.sample)
    trainable: dict[str, Any] = {}
    if cfg.protocol.rule == "mplp":
        trainable["protocol"] = meta
        if cfg.meta.imitation_steps:  # warm start: begin with updates the size of SGD's
            imit = make_imitation(setup)
            task = family.sample(jax.random.fold_in(k_cal, 1))
            trainable = matched_out_scale(trainable, norm, setup, imit, task, pool["w"][0], pool["b"][0])
    if cfg.meta.maml:
        trainable["prior"] = {"w": cfg.net.init_std * jax.random.normal(k_prior, (setup.n_synapses,)),
                              "b": jnp.zeros((setup.n_biases,))}
    opt_state = meta_optimizer(cfg.meta.meta_lr).init(trainable)
    out = {"trainable": trainable, "opt_state": opt_state, "norm": norm, "pool": pool}
    if setups and len(setups) > 1:
        out["pool_extra"] = _extra_pools(cfg, setups, k_pool)
    return out


def make_meta_step(cfg: TrainConfig, setup: Setup, family: TaskFamily, *, imitation: bool = False,
                   unroll: int | None = None, grad_feed: bool = True) -> Callable:
    """The jitted meta-step ``(train_state, step) -> (train_state, metrics, finite)``
    (``imitation``: the warm-start objective of :mod:`agentgraph.meta.imitation`, at
    ``meta.imitation_meta_lr``; ``unroll``: meta-train on the first ``unroll`` inner steps of
    each task only — the curriculum; ``grad_feed``: run the gradient protocol for a
    ``protocol.grad_input`` — false once a ``train`` input has faded out).

    A step whose meta-loss or gradients are not finite leaves the state unchanged and returns
    ``finite = False``.
    """
    m = cfg.meta
    opt = meta_optimizer(m.imitation_meta_lr or m.meta_lr if imitation else m.meta_lr)
    data_key = jax.random.fold_in(jax.random.PRNGKey(cfg.run.seed), 1)
    n_tasks = cfg.meta.outer_batch
    objective = functools.partial(task_imitation_loss, imit=make_imitation(setup)) if imitation else task_meta_loss

    def step_fn(ts, step):
        k = jax.random.fold_in(data_key, step)
        k_tasks, k_prior = jax.random.split(k)
        tasks = jax.vmap(family.sample)(jax.random.split(k_tasks, n_tasks))
        if unroll is not None:
            tasks = {**tasks, "train": jax.tree.map(lambda v: v[:, :unroll], tasks["train"])}
        idx = jax.random.randint(k_prior, (n_tasks,), 0, ts["pool"]["w"].shape[0])
        w0s, b0s = ts["pool"]["w"][idx], ts["pool"]["b"][idx]
        scale = train_scale(setup, jnp.maximum(step - m.imitation_steps, 0)) if grad_feed else None
        obj = functools.partial(objective, grad_scale=scale)
        (loss, aux), grads = jax.value_and_grad(batch_meta_loss, has_aux=True)(
            ts["trainable"], ts["norm"], setup, tasks, w0s, b0s, obj)
        finite = jnp.isfinite(loss) & jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        updates, new_opt = opt.update(grads, ts["opt_state"], ts["trainable"])
        new_tr = optax.apply_updates(ts["trainable"], updates)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        out = {**ts, "trainable": keep(new_tr, ts["trainable"]), "opt_state": keep(new_opt, ts["opt_state"])}
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
    setups = make_setups(cfg)
    setup = setups[0]
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
            template = init_training_shapes(cfg, setup, setups)
            tree, meta = ckpt.load(path, template)
            saved = meta.get("config")
            # compare validated configs: fields added since the checkpoint take their defaults
            if saved is None or parse_config(saved).model_dump(mode="json") != cfg.model_dump(mode="json"):
                raise AgentGraphError(
                    f"Checkpoint {path!r} was written with a different config; resume with the same "
                    "config (or start a new run.out_dir)."
                )
            ts = jax.tree.map(jnp.asarray, tree)
            start = int(meta["step"]) + 1
            log(f"resuming from {path} at meta-step {start}")
    if ts is None:
        if ckpt.latest(out_dir) is not None:
            raise AgentGraphError(
                f"{out_dir!r} already holds checkpoints of an earlier run; pass --resume to continue it, or "
                "choose another run.out_dir."
            )
        t0 = time.perf_counter()
        ts = init_training(cfg, setup, family, setups)
        setup_seconds = time.perf_counter() - t0
        if cfg.protocol.rule == "mplp":
            log(f"normalisation measured over {cfg.meta.calibration_rounds} inner loops in {setup_seconds:.1f} s")
        if os.path.exists(metrics_path):
            os.remove(metrics_path)
    _trim_metrics(metrics_path, start)
    programs: dict[tuple, list[Callable]] = {}  # (imitation, unroll, gradient fed) -> a meta-step per graph

    def pick(s: int, i: int) -> Callable:
        imitation = s < cfg.meta.imitation_steps
        phase = max(s - cfg.meta.imitation_steps, 0)  # curriculum and gradient fade count meta-loss steps
        k = cfg.meta.unroll_at(phase) if not imitation else cfg.meta.inner_steps
        feed = train_scale(setup, phase) is not None
        if (imitation, k, feed) not in programs:
            unroll = k if k < cfg.meta.inner_steps else None
            programs[imitation, k, feed] = [_release_after_compile(make_meta_step(
                cfg, su, family, imitation=imitation, unroll=unroll, grad_feed=feed)) for su in setups]
        return programs[imitation, k, feed][i]

    def meta_step(ts, s):  # graph s mod G; the other graphs' prior pools ride along untouched
        i = s % len(setups)
        fn = pick(s, i)
        if i == 0:
            return fn(ts, s)
        new, m, f = fn({**ts, "pool": ts["pool_extra"][str(i)]}, s)
        return {**new, "pool": ts["pool"]}, m, f

    evaluate_now = _periodic_eval(cfg, setup, family) if cfg.run.eval_every else None
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
            if s < cfg.meta.imitation_steps:
                m["imitation"] = True  # meta_loss is the warm-start objective on this step
            elif cfg.meta.curriculum:
                m["unroll"] = cfg.meta.unroll_at(s - cfg.meta.imitation_steps)
            if cfg.protocol.grad_input == "train" and s >= cfg.meta.imitation_steps:
                sc = train_scale(setup, s - cfg.meta.imitation_steps)
                m["grad_scale"] = 0.0 if sc is None else float(sc)
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


def _periodic_eval(cfg: TrainConfig, setup: Setup, family: TaskFamily) -> Callable:
    """``(train_state, step) -> float``: the protocol's mean score after the last inner step on
    ``run.eval_runs`` fresh networks (fixed evaluation keys, so the curve is comparable across
    steps); one compiled program."""
    from agentgraph.meta.evaluate import run_mplp
    from agentgraph.meta.loop import protocol_params

    keys = jax.random.split(jax.random.PRNGKey(2_000_003), cfg.run.eval_runs)

    @jax.jit
    def scores(trainable, norm):
        params, prog = protocol_params(setup, trainable, norm)
        prior = trainable.get("prior")
        return jax.vmap(lambda k: run_mplp(setup, family, params, k, prior, prog)[0][-1])(keys).mean()

    return lambda ts, s: float(scores(ts["trainable"], ts["norm"]))


def init_training_shapes(cfg: TrainConfig, setup: Setup, setups: list[Setup] | None = None) -> dict[str, Any]:
    """The structure and shapes of a training state, without calibrating (a checkpoint template)."""
    key = jax.random.PRNGKey(0)
    sharing = cfg.protocol.sharing
    trainable: dict[str, Any] = {}
    if cfg.protocol.rule == "mplp":
        trainable["protocol"] = mplp.init_meta(setup.graph, key, setup.config, sharing)
    if cfg.meta.maml:
        trainable["prior"] = {"w": jnp.zeros((setup.n_synapses,)), "b": jnp.zeros((setup.n_biases,))}
    return {"trainable": trainable, "opt_state": meta_optimizer(cfg.meta.meta_lr).init(trainable),
            "norm": mplp.init_norm(setup.graph, setup.config, sharing),
            "pool": prior_pool(setup, key, cfg.meta.prior_pool),
            **({"pool_extra": _extra_pools(cfg, setups, key)} if setups and len(setups) > 1 else {})}
