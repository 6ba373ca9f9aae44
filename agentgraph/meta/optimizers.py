"""The meta-optimisers ``meta.optimizer.kind`` names, and the one meta-step for any of them.

A meta-optimiser is a pair of functions, like optax's ``(init, update)`` (:class:`MetaOptimizer`):
``init(ctx, trainable, key)`` gives its state, stored in :class:`~agentgraph.meta.state.TrainState`
``.opt_state`` and checkpointed with it; ``make_step(ctx, family, *, warm, unroll, stage, mesh)``
gives the jitted ``(train_state, step, program) -> (train_state, metrics, status)``.
:data:`META_OPTIMIZERS` names them: ``gradient`` (Adam on the gradient through the unroll,
:mod:`agentgraph.meta.gradient`) and ``es`` (evolution strategies from evosax,
:mod:`agentgraph.meta.es`). Both draw the step's tasks the same way, split their batch over the
devices of a mesh and judge an update the same way (:mod:`agentgraph.meta.step`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
from jax.sharding import Mesh

from agentgraph.meta.context import Context
from agentgraph.meta.devices import device_mesh
from agentgraph.meta.es import es_init, make_es_step
from agentgraph.meta.gradient import gradient_init, make_gradient_step
from agentgraph.meta.state import TrainState
from agentgraph.meta.tasks import TaskFamily

__all__ = ["META_OPTIMIZERS", "MetaOptimizer", "init_training_shapes", "make_meta_step", "opt_init"]


class MetaOptimizer(NamedTuple):
    """A meta-optimiser (module docstring): ``init(ctx, trainable, key) -> opt_state`` and
    ``make_step(ctx, family, *, warm, unroll, stage, mesh) -> step_fn``."""

    init: Callable[[Context, dict, jax.Array], Any]
    make_step: Callable[..., Callable]


def _es_init(ctx: Context, trainable: dict, key: jax.Array) -> Any:
    return es_init(ctx.cfg.meta.optimizer, trainable, key)


#: The meta-optimisers ``meta.optimizer.kind`` names.
META_OPTIMIZERS: dict[str, MetaOptimizer] = {
    "gradient": MetaOptimizer(gradient_init, make_gradient_step),
    "es": MetaOptimizer(_es_init, make_es_step),
}


def opt_init(ctx: Context, trainable: dict) -> Any:
    """The meta-optimiser's state for ``trainable`` (its key: one fold of ``run.seed``).

    Example:
        >>> import jax.numpy as jnp
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 2, 1], "loss": "l2"}})
        >>> len(opt_init(make_context(cfg), {"w": jnp.zeros(2)}))
        2
    """
    key = jax.random.fold_in(jax.random.PRNGKey(ctx.cfg.run.seed), 2)
    return META_OPTIMIZERS[ctx.cfg.meta.optimizer.kind].init(ctx, trainable, key)


def init_training_shapes(ctx: Context) -> TrainState:
    """The structure and shapes of a training state, without calibrating (a checkpoint template).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 2, 1], "loss": "l2"}})
        >>> sorted(init_training_shapes(make_context(cfg)).trainable)
        ['protocol']
    """
    key = jax.random.PRNGKey(0)
    trainable: dict[str, Any] = {"protocol": ctx.protocol.init(key, ctx.net.graph)}
    if ctx.cfg.meta.maml:
        trainable["prior"] = ctx.fresh(key)
    return TrainState(trainable, ctx.protocol.init_stats(ctx.net.graph), opt_init(ctx, trainable),
                      ctx.pool(key, ctx.cfg.meta.prior_pool))


def make_meta_step(ctx: Context, family: TaskFamily, *, warm: bool = False,
                   unroll: int | None = None, stage: Hashable = None, mesh: Mesh | None = None) -> Callable:
    """The jitted meta-step ``(train_state, step, program) -> (train_state, metrics, status)`` of
    the meta-optimiser ``meta.optimizer`` names (``program``: the protocol's compiled graph, an
    argument so that the programs of a graph pool share one executable; ``warm``: the protocol's
    warm-start objective at its meta-lr; ``unroll``: meta-train on the first ``unroll`` inner
    steps of each task only (``schedules.unroll``); ``stage``: the protocol's static variant,
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
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd", "lr": 0.1}, "meta": {"inner_steps": 2, "batch": 4, "maml": True,
        ...     "objective": "heldout", "prior_pool": 2}})
        >>> ctx = make_context(cfg)
        >>> step = make_meta_step(ctx, task_family(cfg))
        >>> ts, metrics, status = step(init_training_shapes(ctx), 0, ctx.program)
        >>> int(status), metrics["meta_loss"].shape
        (0, ())
    """
    return META_OPTIMIZERS[ctx.cfg.meta.optimizer.kind].make_step(
        ctx, family, warm=warm, unroll=unroll, stage=stage, mesh=mesh if mesh is not None else device_mesh())
