"""Meta-training driver: calibrate, then meta-train with checkpoints, metrics and resume.

``train(cfg)`` writes into ``cfg.run.out_dir``: ``metrics.jsonl`` (one line per meta-step:
meta-loss, held-out loss, mean hint loss, first/last inner loss, wall and process CPU seconds) and checkpoints
``ckpt_<step>.npz`` holding the :class:`TrainState` (the protocol's meta-parameters and any
learned prior, its measured stats, the optimiser state, the prior pool) and the step. Randomness is derived from ``(run.seed, step)``, so ``resume=True``
continues exactly as an uninterrupted run would (same numbers on CPU). A meta-step whose meta-loss
or gradient is not finite, or whose meta-loss or meta-parameters pass the configured bounds
(``run.max_meta_loss``, ``run.max_meta_param``), is not taken, is reported with its step, and is
never written to a checkpoint. One process writes a run directory at a time (a lock), and the
directory is checked before any compute (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from agentgraph import checkpoint as ckpt
from agentgraph import rundir
from agentgraph.errors import AgentGraphError, io_error
from agentgraph.meta.config import TrainConfig
from agentgraph.meta.context import Context, make_contexts
from agentgraph.meta.devices import device_mesh, replicate, to_host
from agentgraph.meta.optimizers import init_training_shapes, make_meta_step
from agentgraph.meta.preflight import check_es_memory, check_es_sigma, check_phase_runs
from agentgraph.meta.resume import TrainResult, begin
from agentgraph.meta.start import init_training, measure_stats, warm_steps_of
from agentgraph.meta.state import (
    FORMAT,
    LOSS_BOUND,
    NON_FINITE,
    PARAM_BOUND,
    TAKEN,
    TrainState,
)
from agentgraph.meta.task_check import check_task_shapes
from agentgraph.meta.tasks import TaskFamily, task_family
from agentgraph.runtime import release_freed_memory

__all__ = ["LOSS_BOUND", "NON_FINITE", "PARAM_BOUND", "TAKEN", "TrainResult", "TrainState", "init_training", "init_training_shapes", "make_meta_step", "measure_stats",
           "train"]


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


def _checkpoint_bytes(template: Any, keep: int) -> int:
    """Disk a run needs: ``keep`` checkpoints, one being written, and room for the metrics."""
    one = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in jax.tree.leaves(template))
    return (keep + 1) * (one + 65536) + 2**20


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, max_steps: int | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Meta-train the protocol ``cfg`` describes.

    The run directory ``run.out_dir`` is locked for the whole call (one writer per directory,
    :func:`agentgraph.rundir.locked`) and checked for space and permissions before any compute.

    Args:
        cfg: the validated config.
        resume: continue from the newest checkpoint in ``cfg.run.out_dir``: refused if it was
            written with a config that differs in a field other than
            :data:`agentgraph.rundir.RESUMABLE` (the message names them); a run that has
            already reached ``meta.meta_steps`` says so and does nothing.
        progress: show a progress bar with the live meta-loss.
        max_steps: stop after this many meta-steps in this call (for sessions with a time limit);
            the run still ends at ``cfg.meta.meta_steps``.
        log: where messages go.

    Returns:
        :class:`TrainResult` (``steps`` 0 for a finished run).

    Raises:
        AgentGraphError: bad input (data, directory, ``max_steps``), another process writing
            the directory, ``run.max_bad_steps`` skipped meta-steps in a row.

    Example:
        >>> import tempfile
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd", "lr": 0.1}, "meta": {"inner_steps": 2, "batch": 4, "meta_steps": 2,
        ...     "maml": True, "objective": "heldout"}, "run": {"out_dir": tempfile.mkdtemp()}})
        >>> train(cfg, progress=False, log=lambda s: None)["steps"]
        2
        >>> train(cfg, resume=True, progress=False, log=print)["steps"]  # doctest: +ELLIPSIS
        run ... already finished: ...
        0
    """
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise AgentGraphError(f"max_steps (--max-steps) must be a positive number of meta-steps, got {max_steps!r}.")
    from agentgraph.errors_user import blame_user_code

    with blame_user_code(cfg, "meta-training"):  # the user's factories, hooks and samplers: errors name them
        return _train(cfg, resume, progress, max_steps, log)


def _train(cfg: TrainConfig, resume: bool, progress: bool, max_steps: int | None,
           log: Callable[[str], None]) -> TrainResult:
    family = task_family(cfg)  # loads data: a missing dataset fails here, before any compute
    proto = cfg.make_protocol()
    warm_steps = warm_steps_of(cfg, proto)
    if warm_steps and cfg.meta.optimizer.kind != "gradient":
        raise AgentGraphError(
            f"The protocol {proto.name!r} starts with {warm_steps} warm-start meta-steps, which follow a gradient, "
            f"but meta.optimizer.kind is {cfg.meta.optimizer.kind!r}: set the protocol's warm start to 0 steps "
            "(MPLP: protocol.imitation_steps: 0), or warm-start in a gradient run and evaluate its checkpoint.")
    ctxs = make_contexts(cfg)
    for c in ctxs:
        check_phase_runs(c.net.graph, cfg.run.max_phase_runs, f"the network of net.kind {cfg.net.kind!r}")
        check_task_shapes(c, family)  # the task's layout, batches and columns against the config and network
        c.check_task(family.sample)
    template = jax.eval_shape(lambda: init_training_shapes(ctxs[0]))
    if cfg.meta.optimizer.kind == "es":  # the population's memory, estimated before compiling
        check_es_memory(cfg, ctxs[0], template.trainable, len(jax.devices()))
    if jax.process_index() != 0:  # multi-host: process 0 writes the run directory, the others compute
        return _train_locked(cfg, family, ctxs, template, resume, False, max_steps, lambda s: None, writer=False)
    with rundir.locked(cfg.run.out_dir, need_bytes=_checkpoint_bytes(template, cfg.run.keep)):
        return _train_locked(cfg, family, ctxs, template, resume, progress, max_steps, log)


def _train_locked(cfg: TrainConfig, family: TaskFamily, ctxs: list[Context], template: Any, resume: bool,
                  progress: bool, max_steps: int | None, log: Callable[[str], None], writer: bool = True) -> TrainResult:
    out_dir = cfg.run.out_dir
    metrics_path = os.path.join(out_dir, rundir.METRICS)
    begun = begin(cfg, ctxs[0], family, template, resume, log)
    if isinstance(begun, TrainResult):
        return begun
    ts, start, last_ckpt, setup = begun
    if cfg.meta.optimizer.kind == "es":
        check_es_sigma(cfg, ts.trainable)
    if writer:
        rundir.rewrite_metrics(metrics_path, [r for r in rundir.read_metrics(metrics_path) if r["step"] < start])
    warm_steps = warm_steps_of(cfg, ctxs[0].protocol)
    mesh = device_mesh()
    ts = replicate(ts, mesh)  # the state replicated over the mesh, as the meta-step returns it: one compile
    meta_step = _meta_stepper(ctxs, family, mesh, warm_steps)
    evaluate_now = _periodic_eval(ctxs[0], family) if cfg.run.eval_every else None
    end = cfg.meta.meta_steps if max_steps is None else min(cfg.meta.meta_steps, start + max_steps)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.meta.meta_steps, initial=start, desc="meta-training", unit="step")
    first = last = None
    bad = consecutive_bad = 0
    unsaved = False  # a step was taken since the last checkpoint
    times = []
    last_log = time.perf_counter()
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(ts.trainable)[0]]
    try:
        mf = open(metrics_path if writer else os.devnull, "a")
    except OSError as e:
        raise io_error(metrics_path, e, "open the metrics file", "run.out_dir") from None
    with mf:
        for s in range(start, end):
            t0, c0 = time.perf_counter(), time.process_time()
            new_ts, m, status = meta_step(ts, s)
            m, status = to_host((m, status))
            sizes = m.pop("param_sizes")
            m = _step_figures(cfg, s, warm_steps, m, log)
            status = int(status)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            times.append(dt)
            if status != TAKEN:
                bad += 1
                consecutive_bad += 1
                why = _skip_reason(cfg, s, status, m["meta_loss"], sizes, names)
                log(why)
                if consecutive_bad >= cfg.run.max_bad_steps:
                    if unsaved and writer:  # keep the steps taken since the last checkpoint (the state is the last good one)
                        last_ckpt = _save(cfg, s, ts, last_ckpt)
                    raise AgentGraphError(
                        f"{consecutive_bad} meta-steps in a row were not taken (run.max_bad_steps); the last: {why} "
                        f"The last good checkpoint is {last_ckpt or 'none (no step was taken)'}.")
            else:
                consecutive_bad = 0
                unsaved = True
            ts = new_ts
            first = m["meta_loss"] if first is None else first
            last = m["meta_loss"]
            if evaluate_now is not None and ((s + 1) % cfg.run.eval_every == 0 or s == 0):
                m["eval"] = evaluate_now(ts, s)
            if s == 0 and setup is not None:  # calibration and initialisation, before meta-step 0
                m["setup_seconds"], m["setup_cpu_seconds"] = setup
            row = {"step": s, **m, "finite": status != NON_FINITE, "taken": status == TAKEN, "seconds": dt,
                   "cpu_seconds": cpu}
            _append_row(mf, metrics_path, row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(meta_loss=f"{m['meta_loss']:.4f}", cv=f"{m['cv']:.4f}")
                if s == start:  # the rate and ETA from here on: the first step's compilation does not count
                    bar.initial = bar.n
                    bar.start_t = bar.last_print_t = bar._time()
            elif time.perf_counter() - last_log >= LOG_EVERY_S or s == end - 1:
                last_log = time.perf_counter()
                log(_progress_line(cfg, s, start, m, times))
            # a rejected step leaves the state as it was: the checkpoint still holds every step taken before it
            if unsaved and ((s + 1) % cfg.run.checkpoint_every == 0 or s == end - 1) and writer:
                last_ckpt = _save(cfg, s, ts, last_ckpt)
                unsaved = False
    if bar is not None:
        bar.close()
    return TrainResult(
        steps=end - start, first_meta_loss=first, last_meta_loss=last,
        seconds_per_step=float(np.median(times[1:])) if len(times) > 1 else (times[0] if times else None),
        first_step_seconds=times[0] if times else None, bad_steps=bad, checkpoint=last_ckpt, out_dir=out_dir,
    )


def _meta_stepper(ctxs: list[Context], family: TaskFamily, mesh: Any, warm_steps: int) -> Callable:
    """``(train_state, s) -> (train_state, metrics, status)``: meta-step ``s`` on graph ``s mod G``
    of the pool, each (warm start, unroll, stage) variant compiled once for every pool graph (one
    bucket); the programs replicated over ``mesh``."""
    ctx = ctxs[0]
    cfg, proto = ctx.cfg, ctx.protocol
    progs = [replicate(c.program, mesh) for c in ctxs]
    programs: dict[tuple, Callable] = {}  # (warm start, unroll, stage) -> one meta-step for every pool graph

    def meta_step(ts, s):
        warm = s < warm_steps
        phase = max(s - warm_steps, 0)  # schedules and protocol stages count meta-loss steps
        k = cfg.schedules.unroll_at(phase, cfg.meta.inner_steps) if not warm else cfg.meta.inner_steps
        stage = proto.stage(phase)
        if (warm, k, stage) not in programs:
            unroll = k if k < cfg.meta.inner_steps else None
            programs[warm, k, stage] = _release_after_compile(
                make_meta_step(ctx, family, warm=warm, unroll=unroll, stage=stage, mesh=mesh))
        return programs[warm, k, stage](ts, s, progs[s % len(progs)])

    return meta_step


#: Without a progress bar (``progress=False``, ``agentgraph train --no-progress``) a log line is
#: printed at most this often (seconds), and after the last meta-step.
LOG_EVERY_S = 30.0


def _progress_line(cfg: TrainConfig, s: int, start: int, m: dict, times: list[float]) -> str:
    """``meta-step 120/1600: meta-loss 1.2345, held-out 1.3, 0.52 s/step, ETA 12.8 min`` (the
    ETA from the steps after the first, whose time includes compilation)."""
    per = float(np.median(times[1:])) if len(times) > 1 else times[0]
    left = cfg.meta.meta_steps - (s + 1)
    eval_part = f", eval {m['eval']:.4f}" if "eval" in m else ""
    return (f"meta-step {s + 1}/{cfg.meta.meta_steps}: meta-loss {m['meta_loss']:.4f}, held-out {m.get('cv', float('nan')):.4f}"
            f"{eval_part}, {per:.3g} s/step, ETA {left * per / 60:.1f} min")


def _step_figures(cfg: TrainConfig, s: int, warm_steps: int, m: dict, log: Callable[[str], None]) -> dict:
    """A meta-step's metrics as floats, with what the step was (warm start, unroll, meta-lr)."""
    m = {k: float(v) for k, v in m.items()}
    if s < warm_steps:
        m["warm_start"] = True  # meta_loss is the protocol's warm-start objective on this step
    else:
        if cfg.schedules.unroll:
            m["unroll"] = cfg.schedules.unroll_at(s - warm_steps, cfg.meta.inner_steps)
        if cfg.schedules.meta_lr:
            m["meta_lr"] = cfg.schedules.lr_at(s - warm_steps, cfg.meta.meta_lr)
    if m.get("nan_candidates"):
        log(f"meta-step {s}: {int(m['nan_candidates'])} ES candidate(s) had a non-finite fitness; ranked "
            "last, the generation went on")
    return m


def _append_row(mf: Any, metrics_path: str, row: dict) -> None:
    try:
        mf.write(json.dumps(row) + "\n")
        mf.flush()
    except OSError as e:
        raise io_error(metrics_path, e, f"append meta-step {row['step']} to the metrics file", "run.out_dir") from None


def _save(cfg: TrainConfig, s: int, ts: TrainState, last_ckpt: str | None) -> str:
    """Checkpoint meta-step ``s``; returns its path. A failed save names the last good checkpoint."""
    try:
        return ckpt.save_step(cfg.run.out_dir, s, to_host(ts), _metadata(cfg, s), keep=cfg.run.keep)
    except AgentGraphError as e:
        raise AgentGraphError(f"{e} Meta-step {s} was not saved; the last good checkpoint is "
                              f"{last_ckpt or 'none'}: fix the cause, then continue with --resume.") from None


def _skip_reason(cfg: TrainConfig, s: int, status: int, loss: float, sizes: np.ndarray, names: list[str]) -> str:
    """The message for a meta-step whose update was not taken: the step, the quantity, the field."""
    tail = "update skipped, no checkpoint written"
    if status == NON_FINITE:
        return (f"meta-step {s}: non-finite meta-loss or gradient (meta-loss {loss}); {tail}. If this repeats, lower "
                "meta.meta_lr or check the data.")
    if status == LOSS_BOUND:
        return (f"meta-step {s}: meta-loss {loss:.4g} exceeds run.max_meta_loss = {cfg.run.max_meta_loss:g}; {tail}. "
                "Lower meta.meta_lr, or raise run.max_meta_loss if losses this large are expected.")
    i = int(np.argmax(sizes))
    return (f"meta-step {s}: the update would take meta-parameter {names[i]} to magnitude {sizes[i]:.4g}, past "
            f"run.max_meta_param = {cfg.run.max_meta_param:g}; {tail}. Lower meta.meta_lr (now "
            f"{cfg.meta.meta_lr:g}), or raise run.max_meta_param if such values are expected.")


def _periodic_eval(ctx: Context, family: TaskFamily) -> Callable:
    """``(train_state, step) -> float``: the protocol's mean score after the last inner step on
    ``run.eval_runs`` fresh networks (fixed evaluation keys, so the curve is comparable across
    steps); one compiled program."""
    from agentgraph.meta.evaluate import run_protocol

    keys = jax.random.split(jax.random.PRNGKey(2_000_003), ctx.cfg.run.eval_runs)

    @jax.jit
    def scores(trainable, stats):
        params = ctx.params(trainable["protocol"], stats)
        prior = trainable.get("prior")
        return jax.vmap(lambda k: run_protocol(ctx, family, params, k, prior)[0][-1])(keys).mean()

    return lambda ts, s: float(to_host(scores(ts.trainable, ts.stats)))
