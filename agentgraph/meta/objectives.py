"""Meta-objectives: what an inner run is scored by (config ``meta.objective``).

The ``meta.objective`` section is ``{kind: name, **settings}`` (a bare name is shorthand for
``{kind: name}``), its settings validated by the model the objective declares in
:data:`OBJECTIVES`: ``{kind: hint_cv, hint_weight: 0.7, cv_weight: 0.3}``.

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
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import pydantic

from agentgraph.network import accuracy, prediction_loss

__all__ = ["DEFAULT_OBJECTIVE", "OBJECTIVES", "HintCVSettings", "Objective", "ObjectiveSettings", "ObjectiveSpec", "continual", "heldout",
           "hint_cv", "make_objective", "objective_settings", "online", "readout"]


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
    """Continual learning: after the whole sequence of tasks (``data.continual.tasks`` of them), the
    mean over the tasks of the read-out loss on each task's own held-out examples (the held-out
    set is one equal segment per task, in sequence order) — every task scored at the end, so
    forgetting an early task costs as much as not learning the last. ``aux["cv"]``: the mean
    held-out accuracy over the tasks (classification) or the same loss.

    Example:
        >>> continual().per_step is None
        True
    """

    def final(ctx, program, params, state, task, _):
        tasks = ctx.cfg.data.continual.tasks
        pred, y = ctx.held_out(program, params, state, task["cv"]), task["cv"]["y"]
        per = prediction_loss(pred, y, ctx.readout_kind).reshape(tasks, -1).mean(axis=1)
        cv = accuracy(pred, y).reshape(tasks, -1).mean() if ctx.readout_kind != "values" else per.mean()
        return per.mean(), {"cv": cv, "hint": _zeros_like_steps(None, task)}

    return Objective(None, final)


class ObjectiveSettings(pydantic.BaseModel):
    """The ``meta.objective`` section of an objective with no settings (``{kind: heldout}``);
    objectives with settings subclass it."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    kind: str


class HintCVSettings(ObjectiveSettings):
    """``meta.objective`` of :func:`hint_cv`: ``hint_weight * mean hint loss + cv_weight *
    held-out loss`` (MAML-like with ``hint_weight: 0``)."""

    kind: Literal["hint_cv"] = "hint_cv"
    hint_weight: float = pydantic.Field(0.7, ge=0.0)
    cv_weight: float = pydantic.Field(0.3, ge=0.0)

    @pydantic.model_validator(mode="after")
    def _check(self) -> HintCVSettings:
        if self.hint_weight + self.cv_weight <= 0:
            raise ValueError("hint_weight + cv_weight must be positive")
        return self


class ObjectiveSpec(NamedTuple):
    """An entry of :data:`OBJECTIVES`: the model of the objective's ``meta.objective`` section
    and ``make(settings) -> Objective``."""

    settings: type[ObjectiveSettings]
    make: Callable[[Any], Objective]


#: The objectives ``meta.objective.kind`` names, each with its settings model.
OBJECTIVES: dict[str, ObjectiveSpec] = {
    "hint_cv": ObjectiveSpec(HintCVSettings, lambda s: hint_cv(s.hint_weight, s.cv_weight)),
    "heldout": ObjectiveSpec(ObjectiveSettings, lambda s: heldout()),
    "readout": ObjectiveSpec(ObjectiveSettings, lambda s: readout("loss")),
    "readout_accuracy": ObjectiveSpec(ObjectiveSettings, lambda s: readout("accuracy")),
    "online": ObjectiveSpec(ObjectiveSettings, lambda s: online()),
    "continual": ObjectiveSpec(ObjectiveSettings, lambda s: continual()),
}

#: The objective of a config that names none.
DEFAULT_OBJECTIVE = "hint_cv"


def objective_settings(section: Any) -> ObjectiveSettings:
    """A ``meta.objective`` section validated by its objective's model: a name (shorthand for
    ``{kind: name}``), a mapping ``{kind: name, **settings}`` (``kind`` defaults to ``hint_cv``)
    or settings already validated.

    Raises:
        ValueError: an unknown kind (the field's errors are pydantic's, with their paths).

    Example:
        >>> objective_settings("heldout")
        ObjectiveSettings(kind='heldout')
        >>> objective_settings({"hint_weight": 0.5}).cv_weight
        0.3
    """
    if isinstance(section, ObjectiveSettings):
        return section
    if isinstance(section, str):
        section = {"kind": section}
    if not isinstance(section, dict):
        raise ValueError(f"must be an objective's name or a mapping {{kind: name, ...}}, got {type(section).__name__}")
    section = {"kind": DEFAULT_OBJECTIVE, **section}
    kind = section["kind"]
    spec = OBJECTIVES.get(kind)
    if spec is None:
        raise ValueError(f"objective {kind!r} is not one of {sorted(OBJECTIVES)}")
    elsewhere = [f"meta.objective.{key} is a setting of objective {' or '.join(owners)}, not of {kind!r}"
                 for key in section if key not in spec.settings.model_fields
                 for owners in [[repr(k) for k, o in OBJECTIVES.items() if key in o.settings.model_fields]] if owners]
    if elsewhere:
        raise ValueError("\n".join(elsewhere))
    return spec.settings.model_validate(section)


def make_objective(section: Any) -> Objective:
    """The objective a ``meta.objective`` section describes (also: a name, or the
    :class:`~agentgraph.meta.config.MetaConfig` holding the section).

    Example:
        >>> make_objective("heldout").per_step is None
        True
        >>> from agentgraph.meta.config import MetaConfig
        >>> make_objective(MetaConfig(objective={"kind": "hint_cv", "hint_weight": 0.5})).per_step is not None
        True
    """
    settings = objective_settings(getattr(section, "objective", section))
    return OBJECTIVES[settings.kind].make(settings)
