"""The evolution strategies ``meta.optimizer.strategy`` can name, from evosax (``docs/dependencies.md``).

A table only — what each strategy is, its defaults and its constraints — so that the config can
validate a strategy's settings without importing the meta-optimiser that runs it
(:mod:`agentgraph.meta.es`). evosax is imported when a strategy is built.

Example:
    >>> sorted(ES_STRATEGIES)
    ['cma_es', 'open_es', 'pgpe', 'sep_cma_es', 'snes']
    >>> ES_STRATEGIES["open_es"].antithetic
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["ES_STRATEGIES", "ESStrategy"]


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
