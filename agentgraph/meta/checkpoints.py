"""Evaluating a saved protocol: the config a checkpoint (or exported protocol) implies, its learned
protocol and prior loaded onto that network, the measured stats optionally re-measured there, and
:func:`~agentgraph.meta.evaluate.evaluate` against SGD and Adam — what ``agentgraph eval`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import TrainConfig, apply_overrides, load_config, parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.evaluate import evaluate
from agentgraph.meta.protocol_io import load_prior, load_protocol, read_checkpoint
from agentgraph.meta.preflight import check_phase_runs
from agentgraph.meta.start import measure_stats
from agentgraph.meta.task_check import check_task_shapes
from agentgraph.meta.tasks import task_family
from agentgraph.errors_user import blame_user_code

__all__ = ["checkpoint_eval_config", "evaluate_checkpoint"]


def checkpoint_eval_config(path: str, config: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config to evaluate the protocol in ``path`` with: the file ``config`` (transfer to its
    network and task) or the checkpoint's own, with dotted ``overrides`` applied.

    Raises:
        AgentGraphError: no ``config`` given and the checkpoint holds none.

    Example:
        >>> from agentgraph import pretrained
        >>> checkpoint_eval_config(pretrained.path("digits"), overrides={"run.seed": 3}).run.seed
        3
    """
    if config:
        return load_config(config, overrides)
    _, header = read_checkpoint(path)
    if "config" not in header:
        raise AgentGraphError(f"{path!r} holds no config; pass --config.")
    return parse_config(apply_overrides(header["config"], overrides), f"(from checkpoint {path!r})")


def evaluate_checkpoint(path: str, *, config: str | None = None, overrides: dict[str, Any] | None = None,
                        runs: int = 100, sgd_lr: float | None = None, adam_lr: float | None = None,
                        remeasure: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The protocol saved in ``path`` (a training checkpoint or an exported protocol) against SGD
    and Adam on ``runs`` fresh networks of :func:`checkpoint_eval_config`'s config.

    Args:
        path: the checkpoint.
        config, overrides: the config to evaluate on (default the checkpoint's own).
        runs, sgd_lr, adam_lr: as :func:`~agentgraph.meta.evaluate.evaluate`.
        remeasure: re-measure the protocol's measured stats on this network as meta-training
            measured them on its own (the untrained protocol of ``run.seed``), keeping what the
            protocol's :attr:`~agentgraph.protocols.base.Calibration.transfer` keeps — for
            transfer to networks of other sizes; nothing is learned.
        log: where notes go.

    Returns:
        :func:`~agentgraph.meta.evaluate.evaluate`'s dict, plus ``"gradient_free"`` (the rule
        never receives a gradient).

    Example:
        >>> from agentgraph import pretrained
        >>> res = evaluate_checkpoint(pretrained.path("digits"), runs=2, sgd_lr=0.1, adam_lr=0.01,
        ...                           overrides={"meta.inner_steps": 2}, log=lambda s: None)
        >>> res["metric"], len(res["protocol"]["mean"])
        ('accuracy', 3)
    """
    cfg = checkpoint_eval_config(path, config, overrides)
    with blame_user_code(cfg, "evaluating"):  # the user's factories, hooks and samplers: errors name them
        return _evaluate(path, cfg, runs, sgd_lr, adam_lr, remeasure, log)


def _evaluate(path: str, cfg: TrainConfig, runs: int, sgd_lr: float | None, adam_lr: float | None, remeasure: bool,
              log: Callable[[str], None]) -> dict[str, Any]:
    ctx = make_context(cfg)
    check_phase_runs(ctx.net.graph, cfg.run.max_phase_runs, f"the network of net.kind {cfg.net.kind!r}")
    check_task_shapes(ctx, task_family(cfg))
    learned, stats = load_protocol(path, ctx)
    if remeasure:
        _, measured, _ = measure_stats(ctx, task_family(cfg))
        stats = ctx.protocol.transfer_stats(stats, measured)
        log(f"the protocol's measured stats re-measured on this network as meta-training measured them "
            f"(untrained protocol of seed {cfg.run.seed})")
    prior = load_prior(path, ctx) if cfg.meta.maml else None
    res = evaluate(cfg, learned, stats, runs=runs, sgd_lr=sgd_lr, adam_lr=adam_lr, ctx=ctx, prior=prior)
    return {**res, "gradient_free": ctx.protocol.gradient_free}
