"""How a meta-training run starts: its keys, the protocol's fresh meta-parameters and measured
stats, the prior pool, the warm start's adjustment and the meta-optimiser's state — one
:class:`~agentgraph.meta.state.TrainState` (:func:`init_training`).
"""

from __future__ import annotations

from typing import Any

import jax

from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import TrainConfig
from agentgraph.meta.context import Context
from agentgraph.meta.optimizers import opt_init
from agentgraph.meta.protocol_io import load_protocol
from agentgraph.meta.state import TrainState
from agentgraph.meta.tasks import TaskFamily
from agentgraph.protocols.base import Protocol, WarmStart

__all__ = ["init_training", "measure_stats", "warm_start_of", "warm_steps_of"]


def _keys(cfg: TrainConfig) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(protocol, pool, calibration, prior)`` keys of a run: one split of ``run.seed``."""
    k = jax.random.split(jax.random.PRNGKey(cfg.run.seed), 4)
    return k[0], k[1], k[2], k[3]


def measure_stats(ctx: Context, family: TaskFamily, learned: Any = None) -> tuple[Any, Any, dict]:
    """``(learned, stats, pool)`` as meta-training starts on ``ctx``'s network: the protocol's
    fresh meta-parameters for ``run.seed`` (or ``learned``), its stats calibrated over inner loops
    on the seed's prior pool (``Protocol.calibrate``), and the pool. ``agentgraph eval
    --remeasure`` calls it on a transfer target with the *untrained* protocol, as training did.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> from agentgraph.meta.tasks import task_family
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...                     "protocol": {"calibration_rounds": 1}, "meta": {"inner_steps": 2}})
        >>> learned, stats, pool = measure_stats(make_context(cfg), task_family(cfg))
        >>> sorted(stats["synapse:0"])
        ['in_inv_std', 'in_mean', 'out_mean']
    """
    cfg, proto = ctx.cfg, ctx.protocol
    k_meta, k_pool, k_cal, _ = _keys(cfg)
    if learned is None:
        learned = proto.init(k_meta, ctx.net.graph)
    pool = ctx.pool(k_pool, cfg.meta.prior_pool)
    stats = proto.calibrate(learned, proto.init_stats(ctx.net.graph), ctx.inner, family.sample, k_cal, pool)
    return learned, stats, pool


def init_training(ctx: Context, family: TaskFamily) -> TrainState:
    """A fresh training state: the protocol's meta-parameters (adjusted by its warm start's
    ``prepare``), measured stats, prior pool, a learned prior with ``meta.maml``, optimiser state.
    With ``meta.init_from`` the meta-parameters and stats are that file's instead.

    Raises:
        AgentGraphError: there is nothing to meta-train (a protocol with no meta-parameters and no
            ``meta.maml``).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> from agentgraph.meta.tasks import task_family
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd"}, "meta": {"maml": True, "prior_pool": 2}})
        >>> ts = init_training(make_context(cfg), task_family(cfg))
        >>> sorted(ts.trainable), ts.pool["synapse"]["w"].shape
        (['prior', 'protocol'], (2, 8))
    """
    cfg = ctx.cfg
    _, k_pool, k_cal, k_prior = _keys(cfg)
    warm = warm_start_of(cfg, ctx.protocol)
    if cfg.meta.init_from is not None:
        try:
            learned, stats = load_protocol(cfg.meta.init_from, ctx)
        except AgentGraphError as e:
            raise AgentGraphError(f"meta.init_from: {e} Point it at a checkpoint or an exported protocol of "
                                  "this protocol and network (its layer groups and learner sizes).") from None
        pool = ctx.pool(k_pool, cfg.meta.prior_pool)
    else:
        learned, stats, pool = measure_stats(ctx, family)
    if warm is not None and warm.prepare is not None:
        task = family.sample(jax.random.fold_in(k_cal, 1))
        learned = warm.prepare(learned, stats, ctx.inner, task, jax.tree.map(lambda v: v[0], pool))
    trainable: dict[str, Any] = {"protocol": learned}
    if cfg.meta.maml:
        trainable["prior"] = ctx.fresh(k_prior)
    if not jax.tree.leaves(trainable):
        raise AgentGraphError(f"The protocol {ctx.protocol.name!r} has no meta-parameters: there is nothing to "
                              "meta-train. Set meta.maml to true to learn the initial weights (MAML).")
    return TrainState(trainable, stats, opt_init(ctx, trainable), pool)


def warm_start_of(cfg: TrainConfig, proto: Protocol) -> WarmStart | None:
    """The protocol's warm start, or ``None``: none when ``meta.init_from`` starts from a trained
    protocol.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"protocol": {"rule": "mplp", "imitation_steps": 5}})
        >>> warm_start_of(cfg, cfg.make_protocol()).steps
        5
    """
    return proto.warm_start if cfg.meta.init_from is None else None


def warm_steps_of(cfg: TrainConfig, proto: Protocol) -> int:
    """The warm start's meta-steps (0 without one).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"protocol": {"rule": "sgd"}})
        >>> warm_steps_of(cfg, cfg.make_protocol())
        0
    """
    warm = warm_start_of(cfg, proto)
    return warm.steps if warm is not None else 0
