"""What every meta-optimiser's step shares, for any protocol: which tasks a meta-step draws
(:func:`step_tasks`), the loss of one task (:func:`task_loss_fn`: the meta-objective after the
inner loop, or the protocol's warm start) and whether an update is taken (:func:`judge_update`).
The meta-optimisers themselves — gradient (:mod:`agentgraph.meta.gradient`) and evolution
strategies (:mod:`agentgraph.meta.es`) — are named in :mod:`agentgraph.meta.optimizers`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import jax
import jax.numpy as jnp

from agentgraph.meta.config import MetaConfig, RunConfig
from agentgraph.meta.context import Context
from agentgraph.meta.loop import task_meta_loss
from agentgraph.meta.objectives import make_objective
from agentgraph.meta.state import LOSS_BOUND, NON_FINITE, PARAM_BOUND, TAKEN, TrainState
from agentgraph.meta.tasks import TaskFamily

__all__ = ["judge_update", "step_tasks", "task_loss_fn"]


def step_tasks(meta: MetaConfig, seed: int, family: TaskFamily, ts: TrainState, step, unroll: int | None):
    """``(tasks, w0s)`` of meta-step ``step``: ``meta.outer_batch`` tasks (stacked on axis 0, cut
    to the first ``unroll`` inner steps when given) and their start weights drawn from the pool;
    a function of ``(seed, step)`` only (``seed``: ``run.seed``).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.tasks import task_family
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...                     "meta": {"inner_steps": 3, "batch": 5, "outer_batch": 2}})
        >>> ts = TrainState({}, None, None, {"synapse": {"w": jnp.zeros((7, 8))}})  # a pool of 7
        >>> tasks, w0s = step_tasks(cfg.meta, cfg.run.seed, task_family(cfg), ts, 0, unroll=2)
        >>> tasks["train"]["x"].shape, w0s["synapse"]["w"].shape
        ((2, 2, 5, 1), (2, 8))
    """
    data_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    k_tasks, k_prior = jax.random.split(jax.random.fold_in(data_key, step))
    n = meta.outer_batch
    tasks = jax.vmap(family.sample)(jax.random.split(k_tasks, n))
    if unroll is not None:
        tasks = {**tasks, "train": jax.tree.map(lambda v: v[:, :unroll], tasks["train"])}
    idx = jax.random.randint(k_prior, (n,), 0, jax.tree.leaves(ts.pool)[0].shape[0])
    return tasks, jax.tree.map(lambda v: v[idx], ts.pool)


def task_loss_fn(ctx: Context, *, warm: bool, stage: Hashable, phase) -> Callable:
    """``(trainable, stats, program, task, w0) -> (meta_loss, aux)`` of one task: the
    meta-objective (``meta.objective``) after the inner loop, or the protocol's warm-start
    objective when ``warm``.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...                     "protocol": {"rule": "sgd"}, "meta": {"maml": True, "objective": "heldout"}})
        >>> callable(task_loss_fn(make_context(cfg), warm=False, stage=None, phase=0))
        True
    """
    objective = make_objective(ctx.cfg.meta)
    warm_loss = ctx.protocol.warm_start.make(ctx.inner, ctx.unroll) if warm else None

    def one(trainable, stats, program, task, w0):
        if warm_loss is not None:
            return warm_loss(trainable["protocol"], stats, task, trainable.get("prior", w0))
        return task_meta_loss(trainable, stats, ctx, program, task, w0, objective, stage=stage, phase=phase)

    return one


def judge_update(run: RunConfig, ts: TrainState, loss, finite, new_trainable, new_opt_state):
    """``(train_state, status, sizes)``: the update taken, or — if the meta-loss or gradient was
    not ``finite``, the meta-loss exceeds ``run.max_meta_loss`` (``run``: the config's ``run:``) or a meta-parameter would pass
    ``run.max_meta_param`` in magnitude — ``ts`` unchanged, with the reason as ``status``.
    ``sizes``: each new trainable tensor's largest magnitude (``jax.tree.leaves`` order).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"run": {"max_meta_param": 10.0}})
        >>> ts = TrainState({"w": jnp.ones(2)}, None, {"m": jnp.zeros(2)}, {})
        >>> out, status, sizes = judge_update(cfg.run, ts, 0.5, True, {"w": jnp.full(2, 20.0)}, {"m": jnp.ones(2)})
        >>> int(status) == PARAM_BOUND, out.trainable["w"].tolist(), sizes.tolist()
        (True, [1.0, 1.0], [20.0])
    """
    max_loss = jnp.inf if run.max_meta_loss is None else run.max_meta_loss
    max_param = jnp.inf if run.max_meta_param is None else run.max_meta_param
    sizes = jnp.stack([jnp.max(jnp.abs(v)) for v in jax.tree.leaves(new_trainable)])
    finite = finite & jnp.all(jnp.isfinite(sizes))
    status = jnp.where(~finite, NON_FINITE, jnp.where(loss > max_loss, LOSS_BOUND, jnp.where(
        jnp.any(sizes > max_param), PARAM_BOUND, TAKEN)))
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(status == TAKEN, a, b), new, old)  # noqa: E731
    return ts._replace(trainable=keep(new_trainable, ts.trainable), opt_state=keep(new_opt_state, ts.opt_state)), \
        status, sizes
