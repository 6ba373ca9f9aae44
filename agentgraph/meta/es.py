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

Example:
    >>> sorted(ES_STRATEGIES)
    ['cma_es', 'open_es', 'pgpe', 'sep_cma_es', 'snes']
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import ESOptimizerConfig, TrainConfig
from agentgraph.meta.context import Context
from agentgraph.meta.devices import check_divisible, split_over_devices
from agentgraph.meta.loop import batch_meta_loss
from agentgraph.meta.step import TrainState, judge_update, step_tasks, task_loss_fn
from agentgraph.meta.tasks import TaskFamily

__all__ = ["ES_STRATEGIES", "ESStrategy", "es_init", "make_es_step", "make_strategy"]


class ESStrategy(NamedTuple):
    """One strategy ``meta.optimizer.strategy`` can name.

    Attributes:
        build: ``(popsize, solution pytree, sigma, lr or None) -> (evosax algorithm, params)``.
        default_lr: the mean's learning rate when ``lr`` is null (``None``: the strategy adapts its
            own step size and takes none).
        antithetic: candidates come in ``±`` pairs (``popsize`` must be even).
        min_popsize: the smallest population the strategy works with.
        what: one line for the docs.
    """

    build: Callable[[int, Any, float, float | None], tuple[Any, Any]]
    default_lr: float | None
    antithetic: bool
    min_popsize: int
    what: str


def _open_es(n, solution, sigma, lr):
    import optax
    from evosax.algorithms import Open_ES

    algo = Open_ES(n, solution, use_antithetic_sampling=True, optimizer=optax.adam(lr),
                   std_schedule=optax.constant_schedule(sigma))
    return algo, algo.default_params


def _with_std(cls_name: str, optimizer: Callable[[float], Any] | None = None):
    def build(n, solution, sigma, lr):
        import evosax.algorithms as algos

        cls = getattr(algos, cls_name)
        algo = cls(n, solution) if optimizer is None else cls(n, solution, optimizer=optimizer(lr))
        return algo, algo.default_params.replace(std_init=sigma)

    return build


def _sgd(lr):
    import optax

    return optax.sgd(lr)


def _clipup(lr):
    from evosax.core.optimizer import clipup

    return clipup(learning_rate=lr, max_velocity=2 * lr)


#: The strategies ``meta.optimizer.strategy`` names.
ES_STRATEGIES: dict[str, ESStrategy] = {
    "open_es": ESStrategy(_open_es, 1e-2, True, 2,
                          "OpenAI-ES (Salimans et al. 2017): antithetic pairs, centred ranks, Adam(lr) on the "
                          "estimated gradient, fixed sigma"),
    "cma_es": ESStrategy(_with_std("CMA_ES"), None, False, 4,
                         "CMA-ES (Hansen): full covariance; best for up to a few hundred parameters (BLUR's genome)"),
    "sep_cma_es": ESStrategy(_with_std("Sep_CMA_ES"), None, False, 4,
                             "separable (diagonal) CMA-ES: linear in the number of parameters"),
    "snes": ESStrategy(_with_std("SNES", _sgd), 1.0, False, 2,
                       "separable natural ES (Schaul et al. 2011): per-parameter sigma, SGD(lr) on the mean"),
    "pgpe": ESStrategy(_with_std("PGPE", _clipup), 1e-2, True, 2,
                       "PGPE (Sehnke et al. 2010): antithetic, per-parameter sigma, ClipUp(lr) on the mean"),
}


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


def make_es_step(cfg: TrainConfig, ctx: Context, family: TaskFamily, *, warm: bool = False,
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
        >>> from agentgraph.meta.train import init_training_shapes
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd"}, "meta": {"inner_steps": 2, "batch": 4, "maml": True, "prior_pool": 2,
        ...     "objective": "heldout", "optimizer": {"kind": "es", "strategy": "snes", "popsize": 4}}})
        >>> ctx = make_context(cfg)
        >>> step = make_es_step(cfg, ctx, task_family(cfg), mesh=device_mesh())
        >>> ts, metrics, status = step(init_training_shapes(cfg, ctx), 0, ctx.program)
        >>> int(status), int(metrics["nan_candidates"])
        (0, 0)
    """
    es = cfg.meta.optimizer
    if warm:
        raise AgentGraphError("A protocol's warm start follows a gradient; it cannot run with meta.optimizer.kind 'es'.")
    check_divisible(es.popsize, mesh, "candidates", "meta.optimizer.popsize")
    es_key = jax.random.fold_in(jax.random.PRNGKey(cfg.run.seed), 3)

    def step_fn(ts: TrainState, step, program):
        algo, params = make_strategy(es, ts.trainable)
        k_ask, k_tell = jax.random.split(jax.random.fold_in(es_key, step))
        tasks, w0s = step_tasks(cfg, family, ts, step, unroll)
        one = task_loss_fn(cfg, ctx, warm=False, stage=stage, phase=step)

        def score(population, rep):  # one device's share of the candidates
            stats, prog, tasks, w0s = rep
            fit = lambda tr: batch_meta_loss(tr, stats, ctx, prog, tasks, w0s, one)  # noqa: E731
            if es.chunk is None:
                return jax.vmap(fit)(population)
            return jax.lax.map(fit, population, batch_size=es.chunk)

        population, asked = algo.ask(k_ask, ts.opt_state, params)
        fitness, aux = split_over_devices(score, mesh)(population, (ts.stats, program, tasks, w0s))
        ok = jnp.isfinite(fitness)
        worst = jnp.max(jnp.where(ok, fitness, -jnp.inf))
        ranked = jnp.where(ok, fitness, worst + 1.0 + jnp.abs(worst))  # non-finite: last
        told, _ = algo.tell(k_tell, population, ranked, asked, params)
        loss = _finite_mean(fitness, ok)
        out, status, sizes = judge_update(cfg, ts, loss, jnp.any(ok), algo.get_mean(told), told)
        metrics = {"meta_loss": loss, "cv": _finite_mean(aux["cv"], ok), "hint": _finite_mean(aux["hint"], ok).mean(),
                   "inner_first": _finite_mean(aux["loss"][:, 0], ok), "inner_last": _finite_mean(aux["loss"][:, -1], ok),
                   "best_fitness": jnp.min(ranked), "nan_candidates": jnp.sum(~ok), "param_sizes": sizes}
        return out, metrics, status

    return jax.jit(step_fn)
