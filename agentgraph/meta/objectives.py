"""Meta-objectives: what an inner run is scored by (config ``meta.objective``).

An :class:`Objective` is a pair of pure functions, like optax's ``(init, update)``:

* ``per_step(ctx, program, params, state, batch) -> pytree`` — computed inside the inner loop
  after every step, on the state *after* the step (its per-example fields still hold what the
  forward sweep computed on ``batch``, i.e. the predictions made before learning from it);
  ``None`` when the objective needs nothing per step;
* ``final(ctx, program, params, state, task, per_step [K, ...]) -> (scalar, aux)`` — the
  meta-loss of one task from the final state; ``aux`` holds ``"cv"`` (a held-out figure) and
  ``"hint"`` (``[K]`` per-step figures, or zeros).

The meta-loss is minimised; accuracy-type objectives return ``1 - accuracy`` (evolution
strategies need no gradient through them).

Example:
    >>> sorted(OBJECTIVES)
    ['continual', 'heldout', 'hint_cv', 'online', 'readout', 'readout_accuracy']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from agentgraph.network import accuracy, prediction_loss

__all__ = ["OBJECTIVES", "Objective", "continual", "heldout", "hint_cv", "make_objective", "online", "readout"]


class Objective(NamedTuple):
    """A meta-objective (module docstring)."""

    per_step: Callable[..., Any] | None
    final: Callable[..., tuple[jax.Array, dict]]


def _heldout(ctx, program, params, state, task) -> tuple[dict, jax.Array]:
    """The forward sweep on the task's held-out set from ``state``'s weights."""
    cv_state = program.resize(state, task["cv"]["x"].shape[0])
    return program.forward(params, cv_state, task["cv"])


def _zeros_like_steps(per_step, task) -> jax.Array:
    return jnp.zeros(task["train"]["x"].shape[0]) if per_step is None else per_step


def hint_cv(hint_weight: float = 0.7, cv_weight: float = 0.3) -> Objective:
    """MPLP's meta-loss (paper §3.1.1): ``hint_weight * mean over steps of the loss on the batch
    just learned from (after the update) + cv_weight * the held-out loss after the last step``.

    Example:
        >>> hint_cv(0.5, 0.5).per_step is not None
        True
    """

    def per_step(ctx, program, params, state, batch):
        return program.forward(params, state, batch)[1]

    def final(ctx, program, params, state, task, hints):
        _, cv = _heldout(ctx, program, params, state, task)
        return hint_weight * hints.mean() + cv_weight * cv, {"cv": cv, "hint": hints}

    return Objective(per_step, final)


def heldout() -> Objective:
    """The loss agents' held-out loss after the last step (MAML's objective).

    Example:
        >>> heldout().per_step is None
        True
    """

    def final(ctx, program, params, state, task, _):
        _, cv = _heldout(ctx, program, params, state, task)
        return cv, {"cv": cv, "hint": _zeros_like_steps(None, task)}

    return Objective(None, final)


def readout(metric: str = "loss") -> Objective:
    """The read-out predictions' held-out loss (cross-entropy for class outputs, half squared
    error for values) or, with ``metric="accuracy"``, ``1 - accuracy``: for rules with no loss
    agent in the inner loop (BLUR). ``aux["cv"]`` is the loss or the accuracy.

    Example:
        >>> readout("accuracy").per_step is None
        True
    """

    def final(ctx, program, params, state, task, _):
        pred = ctx.held_out(program, params, state, task["cv"])
        y = task["cv"]["y"]
        if metric == "accuracy":
            acc = accuracy(pred, y).mean()
            return 1.0 - acc, {"cv": acc, "hint": _zeros_like_steps(None, task)}
        loss = prediction_loss(pred, y, ctx.readout_kind).mean()
        return loss, {"cv": loss, "hint": _zeros_like_steps(None, task)}

    return Objective(None, final)


def online() -> Objective:
    """Cumulative online loss: the mean over steps of the loss of each batch's read-out
    predictions, made before learning from it (online learning, VSML). ``aux["cv"]`` is the
    held-out read-out loss after the last step, for reference.

    Example:
        >>> online().per_step is not None
        True
    """

    def per_step(ctx, program, params, state, batch):
        return prediction_loss(ctx.predict(state, program), batch["y"], ctx.readout_kind).mean()

    def final(ctx, program, params, state, task, losses):
        cv = prediction_loss(ctx.held_out(program, params, state, task["cv"]), task["cv"]["y"], ctx.readout_kind).mean()
        return losses.mean(), {"cv": cv, "hint": losses}

    return Objective(per_step, final)


def continual() -> Objective:
    """Continual learning: after the whole sequence of tasks (``data.sequence`` of them), the
    mean over the tasks of the read-out loss on each task's own held-out examples (the held-out
    set is one equal segment per task, in sequence order) — every task scored at the end, so
    forgetting an early task costs as much as not learning the last. ``aux["cv"]``: the mean
    held-out accuracy over the tasks (classification) or the same loss.

    Example:
        >>> continual().per_step is None
        True
    """

    def final(ctx, program, params, state, task, _):
        tasks = ctx.cfg.data.sequence
        pred, y = ctx.held_out(program, params, state, task["cv"]), task["cv"]["y"]
        per = prediction_loss(pred, y, ctx.readout_kind).reshape(tasks, -1).mean(axis=1)
        cv = accuracy(pred, y).reshape(tasks, -1).mean() if ctx.readout_kind != "values" else per.mean()
        return per.mean(), {"cv": cv, "hint": _zeros_like_steps(None, task)}

    return Objective(None, final)


#: The objectives ``meta.objective`` names: ``name -> (meta config) -> Objective``.
OBJECTIVES: dict[str, Callable[[Any], Objective]] = {
    "hint_cv": lambda m: hint_cv(m.hint_weight, m.cv_weight),
    "heldout": lambda m: heldout(),
    "readout": lambda m: readout("loss"),
    "readout_accuracy": lambda m: readout("accuracy"),
    "online": lambda m: online(),
    "continual": lambda m: continual(),
}


def make_objective(meta_cfg: Any) -> Objective:
    """The objective a :class:`~agentgraph.meta.config.MetaConfig` names.

    Example:
        >>> from agentgraph.meta.config import MetaConfig
        >>> make_objective(MetaConfig(objective="heldout")).per_step is None
        True
    """
    return OBJECTIVES[meta_cfg.objective](meta_cfg)
