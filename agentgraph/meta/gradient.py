"""The gradient meta-optimiser (config ``meta.optimizer: {kind: gradient}``, the default): Adam on
the meta-gradient through the unroll, each tensor's gradient divided by its own L2 norm (as MPLP's
authors do).

Example:
    >>> opt = meta_optimizer(1e-3)
    >>> u, _ = opt.update({"w": jnp.array([3.0, 4.0])}, opt.init({"w": jnp.zeros(2)}))
    >>> u["w"].shape
    (2,)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from agentgraph.meta.context import Context
from agentgraph.meta.devices import check_divisible, mean_over_devices
from agentgraph.meta.loop import batch_meta_loss
from agentgraph.meta.state import TrainState
from agentgraph.meta.step import judge_update, step_tasks, task_loss_fn
from agentgraph.meta.tasks import TaskFamily

__all__ = ["gradient_init", "make_gradient_step", "meta_optimizer", "normalize_per_tensor"]


def normalize_per_tensor(eps: float = 1e-8) -> optax.GradientTransformation:
    """Divide every gradient tensor by its own L2 norm (``g / (||g|| + eps)``).

    Example:
        >>> import jax.numpy as jnp
        >>> t = normalize_per_tensor()
        >>> u, _ = t.update({"a": jnp.array([3.0, 4.0])}, t.init(None))
        >>> [round(float(v), 3) for v in u["a"]]
        [0.6, 0.8]
    """

    def update(updates, state, params=None):
        return jax.tree.map(lambda g: g / (jnp.sqrt(jnp.sum(g * g)) + eps), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def meta_optimizer(lr: float) -> optax.GradientTransformation:
    """``chain(normalize_per_tensor(), adam(lr))``. Optimisers of different ``lr`` share one
    state structure, so a run may switch rate between phases (imitation, then meta-loss).

    Example:
        >>> import jax.numpy as jnp
        >>> opt = meta_optimizer(1e-3)
        >>> s = opt.init({"w": jnp.zeros(2)})
        >>> u, s = opt.update({"w": jnp.array([1.0, 0.0])}, s)
        >>> u["w"].shape
        (2,)
    """
    return optax.chain(normalize_per_tensor(), optax.adam(lr))


def gradient_init(ctx: Context, trainable: dict, key: jax.Array) -> Any:
    """Adam's state for ``trainable`` (``key`` unused: the gradient meta-optimiser draws nothing).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 2, 1], "loss": "l2"}})
        >>> len(gradient_init(make_context(cfg), {"w": jnp.zeros(2)}, None))
        2
    """
    return meta_optimizer(ctx.cfg.meta.meta_lr).init(trainable)


def make_gradient_step(ctx: Context, family: TaskFamily, *, warm: bool, unroll: int | None,
                       stage: Hashable, mesh: Mesh) -> Callable:
    """The jitted gradient meta-step ``(train_state, step, program) -> (train_state, metrics,
    status)`` (:func:`~agentgraph.meta.optimizers.make_meta_step` documents the arguments): the
    meta-loss of the outer batch and its gradient through the unroll, each tensor's gradient
    divided by its norm, one Adam step at ``meta.meta_lr`` (the warm start's rate when ``warm``;
    ``schedules.meta_lr`` rescales it), judged by :func:`~agentgraph.meta.step.judge_update`.
    """
    cfg = ctx.cfg
    m, sched = cfg.meta, cfg.schedules
    w = ctx.protocol.warm_start
    opt = meta_optimizer((w.meta_lr or m.meta_lr) if warm else m.meta_lr)
    warm_steps = w.steps if w is not None else 0
    check_divisible(m.outer_batch, mesh, "tasks", "meta.outer_batch")

    def step_fn(ts: TrainState, step, program):
        tasks, w0s = step_tasks(m, cfg.run.seed, family, ts, step, unroll)
        phase = jnp.maximum(step - warm_steps, 0)
        one = task_loss_fn(ctx, warm=warm, stage=stage, phase=phase)

        def local(rep, batch):  # one device's share of the outer batch
            trainable, stats, prog = rep
            return jax.value_and_grad(batch_meta_loss, has_aux=True)(trainable, stats, ctx, prog, *batch, one)

        (loss, aux), grads = mean_over_devices(local, mesh)((ts.trainable, ts.stats, program), (tasks, w0s))
        finite = jnp.isfinite(loss) & jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        updates, new_opt = opt.update(grads, ts.opt_state, ts.trainable)
        if sched.meta_lr and not warm:  # Adam's update is linear in its rate: rescale it
            updates = jax.tree.map(lambda u: u * (sched.lr_at(phase, m.meta_lr) / m.meta_lr), updates)
        out, status, sizes = judge_update(cfg.run, ts, loss, finite, optax.apply_updates(ts.trainable, updates), new_opt)
        metrics = {"meta_loss": loss, "cv": aux["cv"], "hint": aux["hint"].mean(),
                   "inner_first": aux["loss"][0], "inner_last": aux["loss"][-1], "param_sizes": sizes}
        return out, metrics, status

    return jax.jit(step_fn)
