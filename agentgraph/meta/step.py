"""One meta-step, for any protocol and any meta-optimiser (config ``meta.optimizer``).

A meta-optimiser is a pair of functions, like optax's ``(init, update)``
(:class:`MetaOptimizer`): ``init(cfg, ctx, trainable, key)`` gives its state, stored in
:class:`TrainState` ``.opt_state`` and checkpointed with it; ``make_step(cfg, ctx, family, *, warm,
unroll, stage, mesh)`` gives the jitted ``(train_state, step, program) -> (train_state, metrics,
status)``. :data:`META_OPTIMIZERS` names them: ``gradient`` (Adam on the gradient through the
unroll, this file) and ``es`` (evolution strategies from evosax, :mod:`agentgraph.meta.es`).
Both draw the step's tasks the same way (:func:`step_tasks`), split their batch over the devices
of a mesh (:mod:`agentgraph.meta.devices`) and judge an update the same way
(:func:`judge_update`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from agentgraph.meta.config import TrainConfig
from agentgraph.meta.context import Context
from agentgraph.meta.devices import check_divisible, device_mesh, mean_over_devices
from agentgraph.meta.loop import batch_meta_loss, task_meta_loss
from agentgraph.meta.objectives import make_objective
from agentgraph.meta.optim import meta_optimizer
from agentgraph.meta.tasks import TaskFamily

__all__ = ["LOSS_BOUND", "META_OPTIMIZERS", "MetaOptimizer", "NON_FINITE", "PARAM_BOUND", "TAKEN", "TrainState",
           "judge_update", "make_meta_step", "step_tasks", "task_loss_fn"]

#: A meta-step's status: its update was taken, or why not.
TAKEN, NON_FINITE, LOSS_BOUND, PARAM_BOUND = 0, 1, 2, 3


class TrainState(NamedTuple):
    """Everything meta-training carries from one meta-step to the next (a pytree).

    Attributes:
        trainable: what the meta-optimiser changes: ``{"protocol": learned}`` and, with
            ``meta.maml``, ``"prior"``: learned initial weights ``{kind: {field: [N, ...]}}``.
        stats: the protocol's measured, frozen quantities (``Protocol.calibrate``).
        opt_state: the meta-optimiser's state (Adam's moments, or the ES strategy's state).
        pool: start weights of the inner runs, ``{kind: {field: [P, N, ...]}}``.
    """

    trainable: dict
    stats: Any
    opt_state: Any
    pool: dict


class MetaOptimizer(NamedTuple):
    """A meta-optimiser (module docstring): ``init(cfg, ctx, trainable, key) -> opt_state`` and
    ``make_step(cfg, ctx, family, *, warm, unroll, stage, mesh) -> step_fn``."""

    init: Callable[..., Any]
    make_step: Callable[..., Callable]


def step_tasks(cfg: TrainConfig, family: TaskFamily, ts: TrainState, step, unroll: int | None):
    """``(tasks, w0s)`` of meta-step ``step``: ``meta.outer_batch`` tasks (stacked on axis 0, cut
    to the first ``unroll`` inner steps when given) and their start weights drawn from the pool;
    a function of ``(run.seed, step)`` only.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.tasks import task_family
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...                     "meta": {"inner_steps": 3, "batch": 5, "outer_batch": 2}})
        >>> ts = TrainState({}, None, None, {"synapse": {"w": jnp.zeros((7, 8))}})  # a pool of 7
        >>> tasks, w0s = step_tasks(cfg, task_family(cfg), ts, 0, unroll=2)
        >>> tasks["train"]["x"].shape, w0s["synapse"]["w"].shape
        ((2, 2, 5, 1), (2, 8))
    """
    data_key = jax.random.fold_in(jax.random.PRNGKey(cfg.run.seed), 1)
    k_tasks, k_prior = jax.random.split(jax.random.fold_in(data_key, step))
    n = cfg.meta.outer_batch
    tasks = jax.vmap(family.sample)(jax.random.split(k_tasks, n))
    if unroll is not None:
        tasks = {**tasks, "train": jax.tree.map(lambda v: v[:, :unroll], tasks["train"])}
    idx = jax.random.randint(k_prior, (n,), 0, jax.tree.leaves(ts.pool)[0].shape[0])
    return tasks, jax.tree.map(lambda v: v[idx], ts.pool)


def task_loss_fn(cfg: TrainConfig, ctx: Context, *, warm: bool, stage: Hashable, phase) -> Callable:
    """``(trainable, stats, program, task, w0) -> (meta_loss, aux)`` of one task: the
    meta-objective (``meta.objective``) after the inner loop, or the protocol's warm-start
    objective when ``warm``.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...                     "protocol": {"rule": "sgd"}, "meta": {"maml": True, "objective": "heldout"}})
        >>> callable(task_loss_fn(cfg, make_context(cfg), warm=False, stage=None, phase=0))
        True
    """
    objective = make_objective(cfg.meta)
    warm_loss = ctx.protocol.warm_start.make(ctx) if warm else None

    def one(trainable, stats, program, task, w0):
        if warm_loss is not None:
            return warm_loss(trainable["protocol"], stats, task, trainable.get("prior", w0))
        return task_meta_loss(trainable, stats, ctx, program, task, w0, objective, stage=stage, phase=phase)

    return one


def judge_update(cfg: TrainConfig, ts: TrainState, loss, finite, new_trainable, new_opt_state):
    """``(train_state, status, sizes)``: the update taken, or — if the meta-loss or gradient was
    not ``finite``, the meta-loss exceeds ``run.max_meta_loss`` or a meta-parameter would pass
    ``run.max_meta_param`` in magnitude — ``ts`` unchanged, with the reason as ``status``.
    ``sizes``: each new trainable tensor's largest magnitude (``jax.tree.leaves`` order).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"run": {"max_meta_param": 10.0}})
        >>> ts = TrainState({"w": jnp.ones(2)}, None, {"m": jnp.zeros(2)}, {})
        >>> out, status, sizes = judge_update(cfg, ts, 0.5, True, {"w": jnp.full(2, 20.0)}, {"m": jnp.ones(2)})
        >>> int(status) == PARAM_BOUND, out.trainable["w"].tolist(), sizes.tolist()
        (True, [1.0, 1.0], [20.0])
    """
    max_loss = jnp.inf if cfg.run.max_meta_loss is None else cfg.run.max_meta_loss
    max_param = jnp.inf if cfg.run.max_meta_param is None else cfg.run.max_meta_param
    sizes = jnp.stack([jnp.max(jnp.abs(v)) for v in jax.tree.leaves(new_trainable)])
    finite = finite & jnp.all(jnp.isfinite(sizes))
    status = jnp.where(~finite, NON_FINITE, jnp.where(loss > max_loss, LOSS_BOUND, jnp.where(
        jnp.any(sizes > max_param), PARAM_BOUND, TAKEN)))
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(status == TAKEN, a, b), new, old)  # noqa: E731
    return ts._replace(trainable=keep(new_trainable, ts.trainable), opt_state=keep(new_opt_state, ts.opt_state)), \
        status, sizes


def _gradient_init(cfg: TrainConfig, ctx: Context, trainable: dict, key) -> Any:
    return meta_optimizer(cfg.meta.meta_lr).init(trainable)


def _gradient_step(cfg: TrainConfig, ctx: Context, family: TaskFamily, *, warm: bool, unroll: int | None,
                   stage: Hashable, mesh: Mesh) -> Callable:
    m = cfg.meta
    w = ctx.protocol.warm_start
    opt = meta_optimizer((w.meta_lr or m.meta_lr) if warm else m.meta_lr)
    warm_steps = w.steps if w is not None else 0
    check_divisible(m.outer_batch, mesh, "tasks", "meta.outer_batch")

    def step_fn(ts: TrainState, step, program):
        tasks, w0s = step_tasks(cfg, family, ts, step, unroll)
        phase = jnp.maximum(step - warm_steps, 0)
        one = task_loss_fn(cfg, ctx, warm=warm, stage=stage, phase=phase)

        def local(rep, batch):  # one device's share of the outer batch
            trainable, stats, prog = rep
            return jax.value_and_grad(batch_meta_loss, has_aux=True)(trainable, stats, ctx, prog, *batch, one)

        (loss, aux), grads = mean_over_devices(local, mesh)((ts.trainable, ts.stats, program), (tasks, w0s))
        finite = jnp.isfinite(loss) & jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        updates, new_opt = opt.update(grads, ts.opt_state, ts.trainable)
        if m.meta_lr_schedule and not warm:  # Adam's update is linear in its rate: rescale it
            updates = jax.tree.map(lambda u: u * (m.lr_at(phase) / m.meta_lr), updates)
        out, status, sizes = judge_update(cfg, ts, loss, finite, optax.apply_updates(ts.trainable, updates), new_opt)
        metrics = {"meta_loss": loss, "cv": aux["cv"], "hint": aux["hint"].mean(),
                   "inner_first": aux["loss"][0], "inner_last": aux["loss"][-1], "param_sizes": sizes}
        return out, metrics, status

    return jax.jit(step_fn)


def _es_init(cfg: TrainConfig, ctx: Context, trainable: dict, key) -> Any:
    from agentgraph.meta.es import es_init

    return es_init(cfg.meta.optimizer, trainable, key)


def _es_step(cfg: TrainConfig, ctx: Context, family: TaskFamily, **kw) -> Callable:
    from agentgraph.meta.es import make_es_step

    return make_es_step(cfg, ctx, family, **kw)


#: The meta-optimisers ``meta.optimizer.kind`` names.
META_OPTIMIZERS: dict[str, MetaOptimizer] = {
    "gradient": MetaOptimizer(_gradient_init, _gradient_step),
    "es": MetaOptimizer(_es_init, _es_step),
}


def make_meta_step(cfg: TrainConfig, ctx: Context, family: TaskFamily, *, warm: bool = False,
                   unroll: int | None = None, stage: Hashable = None, mesh: Mesh | None = None) -> Callable:
    """The jitted meta-step ``(train_state, step, program) -> (train_state, metrics, status)`` of
    the meta-optimiser ``meta.optimizer`` names (``program``: the protocol's compiled graph, an
    argument so that the programs of a graph pool share one executable; ``warm``: the protocol's
    warm-start objective at its meta-lr; ``unroll``: meta-train on the first ``unroll`` inner
    steps of each task only — the curriculum; ``stage``: the protocol's static variant,
    ``Protocol.stage``; ``mesh``: the devices the batch is split over, default all).

    ``status`` is :data:`TAKEN` (0) or why the update was not taken — :data:`NON_FINITE`
    (meta-loss or gradient), :data:`LOSS_BOUND` (meta-loss above ``run.max_meta_loss``),
    :data:`PARAM_BOUND` (a meta-parameter would exceed ``run.max_meta_param`` in magnitude);
    then the state is returned unchanged. ``metrics["param_sizes"]`` holds each trainable
    tensor's largest magnitude after the update (in ``jax.tree.leaves`` order).

    Raises:
        AgentGraphError: the batch (``meta.outer_batch``, or the ES population) does not split
            evenly over the mesh's devices.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> from agentgraph.meta.tasks import task_family
        >>> from agentgraph.meta.train import init_training_shapes
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd", "lr": 0.1}, "meta": {"inner_steps": 2, "batch": 4, "maml": True,
        ...     "objective": "heldout", "prior_pool": 2}})
        >>> ctx = make_context(cfg)
        >>> step = make_meta_step(cfg, ctx, task_family(cfg))
        >>> ts, metrics, status = step(init_training_shapes(cfg, ctx), 0, ctx.program)
        >>> int(status), metrics["meta_loss"].shape
        (0, ())
    """
    return META_OPTIMIZERS[cfg.meta.optimizer.kind].make_step(
        cfg, ctx, family, warm=warm, unroll=unroll, stage=stage, mesh=mesh if mesh is not None else device_mesh())
