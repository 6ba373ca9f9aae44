"""The inner loop and the meta-loss of one task, for any protocol and any objective.

For one task: start from a network's weights, run ``K`` inner steps of the protocol (its ``step``
hook, or the program's step), computing the objective's per-step figures after each step; then
the objective's final figure is the task's meta-loss. Gradients flow through the whole unroll
(``jax.checkpoint`` on each step, config ``meta.remat``), or through chunks of
``schedules.truncation`` steps only.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp

from agentgraph.meta.context import Context
from agentgraph.meta.objectives import Objective
from agentgraph.unroll import remat, run_steps

__all__ = ["batch_meta_loss", "inner_loop", "task_meta_loss"]

def inner_loop(ctx: Context, program, params: Any, state: dict, train: dict, objective: Objective, *,
               stage: Hashable = None, phase: Any = None):
    """Run the protocol over the batches ``train`` (``{"x": [K, B, ...], ...}``) from ``state``.

    Returns:
        ``(final_state, losses [K], per_step)``: ``losses[i]`` is the loss agents' loss at step
        ``i`` before its update (0 without loss agents), ``per_step`` the objective's per-step
        figures stacked (``None`` if it has none).
    """
    m, T = ctx.cfg.meta, ctx.cfg.schedules.truncation

    def body(s, batch):
        s, loss = ctx.step(program, params, s, batch, stage, phase)
        extra = objective.per_step(ctx, program, params, s, batch) if objective.per_step else None
        return s, (loss, extra)

    body = remat(body, m.remat)
    K = train["x"].shape[0]
    unrolled = ctx.unroll.unrolled
    if T is None or T >= K:
        state, (losses, extra) = run_steps(body, state, train, unrolled)
        return state, losses, extra
    # truncated backprop: no gradient flows into the state across chunk boundaries
    parts = []
    for start in range(0, K, T):
        state = jax.lax.stop_gradient(state)
        chunk = jax.tree.map(lambda v: v[start:start + T], train)
        state, out = run_steps(body, state, chunk, unrolled)
        parts.append(out)
    losses, extra = jax.tree.map(lambda *v: jnp.concatenate(v), *parts)
    return state, losses, extra


def task_meta_loss(trainable: dict, stats: Any, ctx: Context, program, task: dict, w0: dict,
                   objective: Objective, *, stage: Hashable = None, phase: Any = None):
    """Meta-loss of one task from weights ``w0``; returns ``(meta_loss, aux)`` with aux
    ``{"loss": [K], "hint": [K], "cv": ()}``. With a learned prior (``trainable["prior"]``,
    config ``meta.maml``) the prior replaces ``w0``."""
    params = ctx.protocol.params(trainable["protocol"], stats, ctx.net.graph)
    if "prior" in trainable:
        w0 = trainable["prior"]
    state = ctx.start(w0, task["train"]["x"].shape[1], program)
    state, losses, extra = inner_loop(ctx, program, params, state, task["train"], objective, stage=stage, phase=phase)
    meta, aux = objective.final(ctx, program, params, state, task, extra)
    return meta, {"loss": losses, **aux}


def batch_meta_loss(trainable: dict, stats: Any, ctx: Context, program, tasks: dict, w0s: dict, task_loss):
    """Mean meta-loss over an outer batch (tasks and start weights stacked on axis 0), the
    tasks vmapped or run one after another (``meta.outer_map``); ``task_loss(trainable, stats,
    program, task, w0) -> (loss, aux)`` is the per-task loss."""
    if jax.tree.leaves(tasks)[0].shape[0] == 1:  # one task: no vmap (its unit axis makes XLA:CPU copy)
        one = lambda v: v[0]  # noqa: E731
        return task_loss(trainable, stats, program, jax.tree.map(one, tasks), jax.tree.map(one, w0s))
    how = ctx.cfg.meta.outer_map
    if how == "auto":
        how = "map" if jax.default_backend() == "cpu" else "vmap"
    one_task = lambda t, w: task_loss(trainable, stats, program, t, w)  # noqa: E731
    if how == "map":
        metas, aux = jax.lax.map(lambda a: one_task(*a), (tasks, w0s))
    else:
        metas, aux = jax.vmap(one_task)(tasks, w0s)
    return metas.mean(), jax.tree.map(lambda v: v.mean(0), aux)
