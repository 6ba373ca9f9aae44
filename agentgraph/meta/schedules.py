"""The ``schedules:`` section of a config: how the unroll and the meta-learning rate change over
meta-training (the plateau studies' options, docs/meta.md). All are off by default.

* ``unroll: [[from meta-step, inner steps], ...]`` — meta-train on the first few inner steps of
  each task, lengthened at the given meta-steps (an unroll curriculum);
* ``truncation: T`` — backpropagate through chunks of ``T`` inner steps only (truncated
  backpropagation through the unroll; not with ``unroll``);
* ``meta_lr: [[from meta-step, meta-lr], ...]`` — the meta-learning rate, linear in between, held
  after the last point (replaces ``meta.meta_lr``; gradient meta-training only).

Meta-steps count meta-loss steps, after any warm start.

Example:
    >>> s = SchedulesConfig(unroll=[[0, 5], [100, 20]])
    >>> s.unroll_at(99, inner_steps=20), s.unroll_at(100, inner_steps=20)
    (5, 20)
"""

from __future__ import annotations

from typing import Any

import pydantic

__all__ = ["SchedulesConfig"]


def _points(name: str, points: list | None, example: str) -> None:
    if points is None:
        return
    starts = [s for s, _ in points]
    if not starts or starts[0] != 0 or starts != sorted(set(starts)):
        raise ValueError(f"schedules.{name} must start at meta-step 0 with strictly increasing meta-steps, e.g. {example}")


class SchedulesConfig(pydantic.BaseModel):
    """Schedules over meta-training (module docstring)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    unroll: list[tuple[pydantic.NonNegativeInt, pydantic.PositiveInt]] | None = None
    truncation: pydantic.PositiveInt | None = None
    meta_lr: list[tuple[pydantic.NonNegativeInt, pydantic.PositiveFloat]] | None = None

    @pydantic.model_validator(mode="after")
    def _check(self) -> SchedulesConfig:
        _points("unroll", self.unroll, "[[0, 5], [200, 10], [400, 20]]")
        _points("meta_lr", self.meta_lr, "[[0, 1e-3], [4000, 1e-3], [8000, 1e-5]]")
        if self.unroll is not None and self.truncation is not None:
            raise ValueError("schedules.unroll and schedules.truncation cannot be combined; choose one")
        return self

    def problems(self, inner_steps: int, optimizer: str) -> list[str]:
        """What the schedules contradict in the ``meta:`` section (its ``inner_steps`` and
        ``optimizer.kind``), each naming the fields.

        Example:
            >>> SchedulesConfig(truncation=8).problems(inner_steps=5, optimizer="gradient")
            ['schedules.truncation (8) must not exceed inner_steps (meta.inner_steps = 5)']
        """
        out = []
        if self.truncation is not None and self.truncation > inner_steps:
            out.append(f"schedules.truncation ({self.truncation}) must not exceed inner_steps "
                       f"(meta.inner_steps = {inner_steps})")
        if self.unroll is not None and any(k > inner_steps for _, k in self.unroll):
            out.append(f"schedules.unroll inner steps must not exceed inner_steps (meta.inner_steps = {inner_steps})")
        if self.meta_lr is not None and optimizer != "gradient":
            out.append("schedules.meta_lr sets the gradient meta-optimiser's rate; with meta.optimizer.kind "
                       f"{optimizer!r} remove it (ES: meta.optimizer.lr)")
        return out

    def unroll_at(self, step: int, inner_steps: int) -> int:
        """Inner steps meta-trained on at meta-step ``step`` (``inner_steps`` without an
        ``unroll`` schedule).

        Example:
            >>> SchedulesConfig(unroll=[[0, 5], [100, 20]]).unroll_at(99, 20)
            5
        """
        k = inner_steps
        for start, length in self.unroll or ():
            if step >= start:
                k = length
        return k

    def lr_at(self, step: int | Any, meta_lr: float) -> float | Any:
        """The meta-learning rate at meta-step ``step`` (a Python or a traced integer):
        ``meta_lr`` (``meta.meta_lr``) without a ``meta_lr`` schedule, else the schedule
        interpolated linearly between its points and held after the last.

        Example:
            >>> SchedulesConfig(meta_lr=[[0, 1e-3], [100, 1e-3], [200, 1e-5]]).lr_at(150, 5e-4)
            0.000505
        """
        if not self.meta_lr:
            return meta_lr
        xs = [float(s) for s, _ in self.meta_lr]
        ys = [float(v) for _, v in self.meta_lr]
        if isinstance(step, int):
            import numpy as np

            return float(np.interp(step, xs, ys))
        import jax.numpy as jnp

        return jnp.interp(step, jnp.array(xs), jnp.array(ys))
