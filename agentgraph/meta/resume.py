"""Where a meta-training run starts: fresh, or resumed from the newest checkpoint of
``run.out_dir`` — refused, naming every differing field, when the checkpoint was written with a
config that differs in a field a resumed run may not change (:data:`agentgraph.rundir.RESUMABLE`;
the config is compared *before* the arrays, so a changed meta-optimiser is named by its field,
not reported as a mismatch of arrays). In a multi-process run process 0 alone reads the
directory and sends every process the state of its newest checkpoint: a restarted job resumes
everywhere from the last checkpoint process 0 wrote, even where the other processes do not share
its disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph import checkpoint as ckpt
from agentgraph import rundir
from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import TrainConfig, parse_config, upgrade_config
from agentgraph.meta.context import Context
from agentgraph.meta.start import init_training
from agentgraph.meta.state import TrainState
from agentgraph.meta.tasks import TaskFamily

__all__ = ["TrainResult", "begin"]


class TrainResult(dict):
    """Summary of a run: ``steps``, ``first_meta_loss``, ``last_meta_loss``, ``seconds_per_step``,
    ``bad_steps``, ``checkpoint``, ``out_dir``."""


def _resume_point(cfg: TrainConfig, template: Any, log: Callable[[str], None]) -> tuple[TrainState, int, str] | None:
    """``(state, next step, checkpoint)`` of the newest checkpoint in ``run.out_dir``, or ``None``.

    Raises:
        AgentGraphError: it was written with a config that differs in a field a resumed run may
            not change (all such fields are named, with both values).
    """
    path = ckpt.latest(cfg.run.out_dir)
    if path is None:
        return None
    _, header = ckpt.load(path)  # the config first: a changed optimiser or protocol is named, not a tree mismatch
    saved = header.get("config")
    if saved is None:
        raise AgentGraphError(f"Checkpoint {path!r} holds no config, so it cannot be resumed; start a new run.out_dir.")
    # compare validated configs (an earlier layout's in today's): fields added since take their defaults
    changes = rundir.config_changes(parse_config(upgrade_config(saved), f"(saved in {path!r})").model_dump(mode="json"),
                                    cfg.model_dump(mode="json"))
    blocking = [c for c in changes if c[0] not in rundir.RESUMABLE]
    if blocking:
        lines = "\n".join(f"  {k}: checkpoint {a!r}, now {b!r}" for k, a, b in blocking)
        raise AgentGraphError(
            f"Checkpoint {path!r} was written with a different config; these fields differ and change what the "
            f"run computes:\n{lines}\nResume with the checkpoint's values, or start a new run.out_dir. (A resumed "
            f"run may change only {', '.join(rundir.RESUMABLE)}.)")
    tree, _ = ckpt.load(path, template)
    for k, a, b in changes:
        log(f"resuming with {k} changed: {a!r} -> {b!r}")
    return jax.tree.map(jnp.asarray, tree), int(header["step"]) + 1, path


def begin(cfg: TrainConfig, ctx: Context, family: TaskFamily, template: Any, resume: bool,
           log: Callable[[str], None]) -> TrainResult | tuple[TrainState, int, str | None, tuple | None]:
    """Where the run starts: ``(state, first meta-step, last checkpoint, (setup wall s, setup CPU s)
    or None)`` — resumed from the newest checkpoint, or fresh (:func:`init_training`) — or, for a
    run that already reached ``meta.meta_steps``, its (empty) :class:`TrainResult`.

    Example:
        >>> import tempfile
        >>> from agentgraph.meta.context import make_context
        >>> from agentgraph.meta.optimizers import init_training_shapes
        >>> from agentgraph.meta.tasks import task_family
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd"}, "meta": {"maml": True, "prior_pool": 2}, "run": {"out_dir": tempfile.mkdtemp()}})
        >>> ctx = make_context(cfg)
        >>> template = jax.eval_shape(lambda: init_training_shapes(ctx))
        >>> begin(cfg, ctx, task_family(cfg), template, True, lambda s: None)[1]  # no checkpoint: a fresh start
        0
    """
    if jax.process_count() > 1:
        return _begin_shared(cfg, ctx, family, template, resume, log)
    return _begin_here(cfg, ctx, family, template, resume, log)


def _begin_shared(cfg: TrainConfig, ctx: Context, family: TaskFamily, template: Any, resume: bool,
                  log: Callable[[str], None]) -> TrainResult | tuple[TrainState, int, str | None, tuple | None]:
    """:func:`_begin` of a multi-process run: process 0 alone reads ``run.out_dir`` (the others
    may not share its disk) and sends every process what it found — a fresh start, a finished
    run, or the state and step of its newest checkpoint — so a restarted job resumes, in every
    process, from the last checkpoint process 0 wrote."""
    from jax.experimental import multihost_utils as mu

    writer = jax.process_index() == 0
    begun = _begin_here(cfg, ctx, family, template, resume, log, fresh=False) if writer else None
    how = 0 if begun is None else 2 if isinstance(begun, TrainResult) else 1  # fresh, resumed, finished
    code = np.asarray(mu.broadcast_one_to_all(np.array([how, 0 if how != 1 else begun[1]], np.int64)))
    if int(code[0]) == 2:
        return begun if writer else TrainResult(steps=0, first_meta_loss=None, last_meta_loss=None, seconds_per_step=None,
                                                first_step_seconds=None, bad_steps=0, checkpoint=None, out_dir=cfg.run.out_dir)
    if int(code[0]) == 1:
        local = begun[0] if writer else jax.tree.map(lambda v: np.zeros(v.shape, v.dtype), template)
        ts = jax.tree.map(jnp.asarray, mu.broadcast_one_to_all(jax.tree.map(np.asarray, local)))
        return ts, int(code[1]), begun[2] if writer else None, None
    return _begin_here(cfg, ctx, family, template, False, log, check_dir=writer)


def _begin_here(cfg: TrainConfig, ctx: Context, family: TaskFamily, template: Any, resume: bool,
                log: Callable[[str], None], fresh: bool = True,
                check_dir: bool = True) -> TrainResult | tuple[TrainState, int, str | None, tuple | None] | None:
    """:func:`_begin` in this process; ``fresh=False``: ``None`` instead of a fresh start."""
    out_dir = cfg.run.out_dir
    point = _resume_point(cfg, template, log) if resume else None
    if resume and point is None:
        log(f"no checkpoint in {out_dir!r}: starting fresh")
    if point is not None:
        ts, start, last_ckpt = point
        if start >= cfg.meta.meta_steps:
            log(f"run {out_dir!r} already finished: its last checkpoint {last_ckpt!r} is meta-step {start - 1} and "
                f"meta.meta_steps is {cfg.meta.meta_steps}; nothing to do. To train longer, resume with a larger "
                "meta.meta_steps (--meta-steps).")
            return TrainResult(steps=0, first_meta_loss=None, last_meta_loss=None, seconds_per_step=None,
                               first_step_seconds=None, bad_steps=0, checkpoint=last_ckpt, out_dir=out_dir)
        log(f"resuming from {last_ckpt} at meta-step {start}")
        return ts, start, last_ckpt, None
    if check_dir and ckpt.latest(out_dir) is not None:
        raise AgentGraphError(
            f"{out_dir!r} already holds checkpoints of an earlier run; pass --resume to continue it, or "
            "choose another run.out_dir."
        )
    if not fresh:
        return None
    t0, c0 = time.perf_counter(), time.process_time()
    ts = init_training(ctx, family)
    setup = (time.perf_counter() - t0, time.process_time() - c0)
    how = f"from {cfg.meta.init_from!r}" if cfg.meta.init_from else "(stats measured)"
    log(f"protocol {ctx.protocol.name!r} initialised {how} in {setup[0]:.1f} s")
    return ts, 0, None, setup
