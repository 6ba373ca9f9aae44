"""Evolution strategies as a meta-optimiser (config ``meta.optimizer: {kind: es, ...}``).

The strategies come from evosax (``docs/dependencies.md``); this file chooses them by name,
flattens the learned pytree (``TrainState.trainable``: the protocol's meta-parameters and any
MAML prior) into the strategy's vector and back, and drives one generation inside one jitted
meta-step:

1. ``ask``: ``popsize`` candidates around the strategy's mean, for ``(run.seed, step)``;
2. every candidate scored by the meta-objective on the *same* outer batch of tasks and start
   weights (common random numbers), the population as one batch — ``vmap`` over candidates (or
   ``lax.map`` over chunks of ``meta.optimizer.chunk`` candidates, each chunk vmapped), the
   candidates split over the devices of a mesh (:func:`~agentgraph.meta.devices.split_over_devices`);
   no gradient is taken, so accuracy (``meta.objective: readout_accuracy``) and activations no
   gradient passes through (a step) are fine;
3. a candidate whose fitness is not finite is ranked last (its fitness set just above the
   worst finite one) and counted in the step's metrics (``nan_candidates``); a generation with
   no finite candidate is not taken (``NON_FINITE``), like a gradient step with a NaN;
4. ``tell``, then the new mean becomes ``trainable``: what is evaluated and checkpointed. The
   strategy's whole state is ``TrainState.opt_state``, so a resumed run continues bit for bit.

Fitness is minimised: it is the meta-loss (``1 - accuracy`` for accuracy objectives).

The strategies are named in :data:`~agentgraph.meta.strategies.ES_STRATEGIES`.

Example:
    >>> import jax.numpy as jnp
    >>> from agentgraph.meta.config import ESOptimizerConfig
    >>> es_init(ESOptimizerConfig(kind="es", popsize=4), {"w": jnp.zeros(2)}, jax.random.PRNGKey(0)).mean.shape
    (2,)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import ESOptimizerConfig
from agentgraph.meta.context import Context
from agentgraph.meta.devices import check_divisible, split_over_devices
from agentgraph.meta.loop import batch_meta_loss
from agentgraph.meta.state import TrainState
from agentgraph.meta.step import judge_update, step_tasks, task_loss_fn
from agentgraph.meta.strategies import ES_STRATEGIES
from agentgraph.meta.tasks import TaskFamily

__all__ = ["es_init", "make_es_step", "make_strategy"]


def make_strategy(es: ESOptimizerConfig, solution: Any) -> tuple[Any, Any]:
    """``(evosax algorithm, its params)`` for the config ``es`` over pytrees shaped like
    ``solution`` (flattened to one vector of ``D`` numbers).

    Example:
        >>> import jax.numpy as jnp
        >>> algo, params = make_strategy(ESOptimizerConfig(kind="es", popsize=8), {"w": jnp.zeros(3)})
        >>> algo.population_size, algo.num_dims
        (8, 3)
    """
    spec = ES_STRATEGIES[es.strategy]
    lr = es.lr if es.lr is not None else spec.default_lr
    return spec.build(es.popsize, solution, es.sigma, lr)


def es_init(es: ESOptimizerConfig, trainable: Any, key: jax.Array) -> Any:
    """The strategy's state with its mean at ``trainable`` (what ``TrainState.opt_state`` holds).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> s = es_init(ESOptimizerConfig(kind="es", popsize=8), {"w": jnp.ones(3)}, jax.random.PRNGKey(0))
        >>> s.mean.tolist()
        [1.0, 1.0, 1.0]
    """
    algo, params = make_strategy(es, trainable)
    return algo.init(key, trainable, params)


def _finite_mean(v: jax.Array, ok: jax.Array) -> jax.Array:
    """Mean of ``v [P, ...]`` over the candidates ``ok [P]`` marks (0 if none)."""
    w = ok.astype(v.dtype).reshape((-1,) + (1,) * (v.ndim - 1))
    return jnp.sum(jnp.where(w > 0, v, 0.0) * w, axis=0) / jnp.maximum(jnp.sum(ok), 1)


def make_es_step(ctx: Context, family: TaskFamily, *, warm: bool = False,
                 unroll: int | None = None, stage: Hashable = None, mesh: Mesh) -> Callable:
    """The jitted ES meta-step ``(train_state, step, program) -> (train_state, metrics, status)``:
    one generation (module docstring). ``metrics`` as the gradient step's (means over the finite
    candidates) plus ``best_fitness`` and ``nan_candidates``.

    Raises:
        AgentGraphError: ``popsize`` does not split evenly over the mesh's devices, or ``warm``
            (a warm start follows a gradient).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> from agentgraph.meta.devices import device_mesh
        >>> from agentgraph.meta.tasks import task_family
        >>> from agentgraph.meta.optimizers import init_training_shapes
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd"}, "meta": {"inner_steps": 2, "batch": 4, "maml": True, "prior_pool": 2,
        ...     "objective": "heldout", "optimizer": {"kind": "es", "strategy": "snes", "popsize": 4}}})
        >>> ctx = make_context(cfg)
        >>> step = make_es_step(ctx, task_family(cfg), mesh=device_mesh())
        >>> ts, metrics, status = step(init_training_shapes(ctx), 0, ctx.program)
        >>> int(status), int(metrics["nan_candidates"])
        (0, 0)
    """
    cfg = ctx.cfg
    es = cfg.meta.optimizer
    if warm:
        raise AgentGraphError("A protocol's warm start follows a gradient; it cannot run with meta.optimizer.kind 'es'.")
    check_divisible(es.popsize, mesh, "candidates", "meta.optimizer.popsize")
    es_key = jax.random.fold_in(jax.random.PRNGKey(cfg.run.seed), 3)

    def step_fn(ts: TrainState, step, program):
        algo, params = make_strategy(es, ts.trainable)
        k_ask, k_tell = jax.random.split(jax.random.fold_in(es_key, step))
        tasks, w0s = step_tasks(cfg.meta, cfg.run.seed, family, ts, step, unroll)
        one = task_loss_fn(ctx, warm=False, stage=stage, phase=step)

        def score(population, rep):  # one device's share of the candidates
            stats, prog, tasks, w0s = rep
            fit = lambda tr: batch_meta_loss(tr, stats, ctx, prog, tasks, w0s, one)  # noqa: E731
            if es.chunk is None:
                return jax.vmap(fit)(population)
            return jax.lax.map(fit, population, batch_size=es.chunk)

        # the search distribution's centre, scored on the same tasks: the protocol the run would
        # stop with, comparable with a gradient run's meta-loss (one candidate's cost per generation)
        centre, _ = batch_meta_loss(algo.get_mean(ts.opt_state), ts.stats, ctx, program, tasks, w0s, one)
        population, asked = algo.ask(k_ask, ts.opt_state, params)
        fitness, aux = split_over_devices(score, mesh)(population, (ts.stats, program, tasks, w0s))
        ok = jnp.isfinite(fitness)
        worst = jnp.max(jnp.where(ok, fitness, -jnp.inf))
        ranked = jnp.where(ok, fitness, worst + 1.0 + jnp.abs(worst))  # non-finite: last
        told, _ = algo.tell(k_tell, population, ranked, asked, params)
        loss = _finite_mean(fitness, ok)
        out, status, sizes = judge_update(cfg.run, ts, loss, jnp.any(ok), algo.get_mean(told), told)
        metrics = {"meta_loss": loss, "cv": _finite_mean(aux["cv"], ok), "hint": _finite_mean(aux["hint"], ok).mean(),
                   "inner_first": _finite_mean(aux["loss"][:, 0], ok), "inner_last": _finite_mean(aux["loss"][:, -1], ok),
                   "best_fitness": jnp.min(ranked), "centre_fitness": centre, "nan_candidates": jnp.sum(~ok),
                   "param_sizes": sizes}
        return out, metrics, status

    return jax.jit(step_fn)
