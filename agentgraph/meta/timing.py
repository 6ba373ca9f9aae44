"""Timing a config's meta-step: compile + first step, then the median of further steps — what
``agentgraph bench`` prints (paired before/after comparisons live in ``benchmarks/``).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import TrainConfig
from agentgraph.meta.context import make_context
from agentgraph.meta.devices import device_mesh, replicate
from agentgraph.meta.optimizers import init_training_shapes, make_meta_step
from agentgraph.meta.tasks import task_family

__all__ = ["time_meta_steps"]


def time_meta_steps(cfg: TrainConfig, steps: int = 5) -> dict[str, Any]:
    """Compile ``cfg``'s meta-step and run it ``1 + steps`` times from an uncalibrated state.

    Returns:
        ``{"device", "first_step_s" (compile + run), "median_step_s", "steps", "step_times_s" [steps],
        "compiles"}`` (``compiles``: how many executables the meta-step built; 1 when no timed
        step recompiled).

    Raises:
        AgentGraphError: ``steps`` is not a positive integer.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd"}, "meta": {"inner_steps": 2, "batch": 4, "maml": True,
        ...     "objective": "heldout", "prior_pool": 2}})
        >>> len(time_meta_steps(cfg, steps=2)["step_times_s"])
        2
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise AgentGraphError(f"steps must be a positive number of meta-steps, got {steps!r}.")
    ctx = make_context(cfg)
    mesh = device_mesh()
    # placed as the meta-step returns it (and as train() places it): an uncommitted first state
    # would compile the step a second time inside the timed steps
    ts, program = replicate(init_training_shapes(ctx), mesh), replicate(ctx.program, mesh)
    step = make_meta_step(ctx, task_family(cfg), mesh=mesh)
    t0 = time.perf_counter()
    ts, m, _ = step(ts, 0, program)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    times = []
    for s in range(1, steps + 1):
        t0 = time.perf_counter()
        ts, m, _ = step(ts, s, program)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    return {"device": str(jax.devices()[0]), "first_step_s": first, "median_step_s": float(np.median(times)),
            "steps": steps, "step_times_s": times, "compiles": _compiles(step)}


def _compiles(step) -> int | None:
    """How many executables a jitted function holds (``None`` where JAX does not say)."""
    size = getattr(step, "_cache_size", None)
    return int(size()) if callable(size) else None
