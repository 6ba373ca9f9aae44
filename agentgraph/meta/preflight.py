"""Costs and settings checked before anything is compiled: limits stated up front, estimates
instead of out-of-memory tracebacks.

* **Phase runs per step.** A graph's schedule unrolls every phase ``repeat`` times into the
  compiled step (docs/compiler.md); a huge ``repeat`` traces for minutes. A step of more than
  ``run.max_phase_runs`` phase runs (default :data:`MAX_PHASE_RUNS`) is refused, naming the
  phase and how to raise the limit.
* **Evolution strategies.** The population × the network's memory is estimated
  (:func:`es_memory_bytes`) and compared with the memory available (:func:`available_memory`);
  a run that cannot fit is refused with the estimate and the fix (a smaller
  ``meta.optimizer.popsize``, or ``meta.optimizer.chunk``). A ``sigma`` at or past
  ``run.max_meta_param`` (every candidate would be out of bounds: every generation skipped) or
  below float32's resolution of the meta-parameters (every candidate equal to the mean: no
  signal) is refused (:func:`check_es_sigma`).

Example:
    >>> MAX_PHASE_RUNS
    256
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from agentgraph.errors import AgentGraphError

__all__ = ["MAX_PHASE_RUNS", "available_memory", "check_es_memory", "check_es_sigma", "check_phase_runs",
           "es_memory_bytes"]

#: Phase runs per inner step (the sum of the schedule's ``repeat``s) above which a run is refused
#: unless ``run.max_phase_runs`` is raised.
MAX_PHASE_RUNS = 256


def check_phase_runs(graph: Any, limit: int, what: str = "the network") -> None:
    """Refuse a graph whose schedule unrolls more than ``limit`` phase runs per step.

    Raises:
        AgentGraphError: naming the largest phase, its ``repeat``, the limit and
            ``run.max_phase_runs``.

    Example:
        >>> from agentgraph import mlp
        >>> check_phase_runs(mlp([2, 1], loss="l2"), 256)
    """
    phases = graph.schedule.phases
    runs = sum(p.repeat for p in phases)
    if runs > limit:
        big = max(phases, key=lambda p: p.repeat)
        raise AgentGraphError(
            f"The schedule of {what} runs {runs} phases per inner step (phase {big.type!r} repeats {big.repeat} "
            f"times); each run is unrolled into the compiled step, so this would compile for minutes or more. The "
            f"limit is run.max_phase_runs = {limit}: lower the phase's repeat (e.g. the builder's ticks), or raise "
            f"run.max_phase_runs to at least {runs} if you mean it.")


def available_memory(device: Any = None) -> tuple[int | None, str]:
    """``(bytes available, where it was read)`` on ``device`` (default the first): an
    accelerator's free memory from ``memory_stats``, a CPU's from psutil or ``/proc/meminfo``
    (``MemAvailable``); ``(None, reason)`` when nothing tells.

    Example:
        >>> n, source = available_memory()
        >>> n is None or n > 0
        True
    """
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.platform} memory_stats"
    try:
        import psutil

        return int(psutil.virtual_memory().available), "psutil"
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "/proc/meminfo"
    except OSError:
        pass
    return None, "unknown"


def _bytes(tree: Any) -> int:
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in jax.tree.leaves(tree))


def es_memory_bytes(cfg: Any, ctx: Any, trainable: Any, devices: int = 1) -> int:
    """A lower estimate of one device's memory for an ES generation: the population's vectors
    (``popsize / devices`` candidates × the ``D`` meta-parameters, with the noise and the
    strategy's copies: 4 of each) plus, for the candidates scored at once (``chunk`` or all of a
    device's), one outer batch of inner networks each (state per example × ``meta.batch`` ×
    ``meta.outer_batch``, with 4 temporaries).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd"}, "meta": {"maml": True, "optimizer": {"kind": "es", "popsize": 8}}})
        >>> ctx = make_context(cfg)
        >>> es_memory_bytes(cfg, ctx, {"prior": ctx.template()}) > 0
        True
    """
    es, m = cfg.meta.optimizer, cfg.meta
    per_device = -(-es.popsize // max(devices, 1))
    at_once = min(per_device, es.chunk or per_device)
    vectors = 4 * per_device * _bytes(trainable)
    agents = ctx.net.graph.number_of_agents()
    state = max(_bytes(ctx.template()), 4 * agents) * m.batch * m.outer_batch * 4
    return vectors + at_once * (state + 4 * _bytes(trainable))


def check_es_memory(cfg: Any, ctx: Any, trainable: Any, devices: int = 1) -> None:
    """Refuse an ES run whose estimate (:func:`es_memory_bytes`) exceeds the memory available.

    Raises:
        AgentGraphError: with the estimate, what is available, and the fix.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd"}, "meta": {"maml": True, "optimizer": {"kind": "es", "popsize": 8}}})
        >>> ctx = make_context(cfg)
        >>> check_es_memory(cfg, ctx, {"prior": ctx.template()})
    """
    need = es_memory_bytes(cfg, ctx, trainable, devices)
    have, source = available_memory()
    if have is None or need <= have:
        return
    es = cfg.meta.optimizer
    fit = max(1, int(es.popsize * have / need))
    raise AgentGraphError(
        f"meta.optimizer.popsize = {es.popsize} candidates of {sum(int(np.prod(v.shape)) for v in jax.tree.leaves(trainable))} "
        f"meta-parameters would need about {need / 2**30:.3g} GiB per device (estimated before compiling), but "
        f"{have / 2**30:.3g} GiB is available ({source}). Lower meta.optimizer.popsize (about {fit} fits), set "
        "meta.optimizer.chunk to score fewer candidates at once, or run on more devices.")


def check_es_sigma(cfg: Any, trainable: Any) -> None:
    """Refuse an ES ``sigma`` no generation can work with: at or past ``run.max_meta_param``
    (every candidate out of bounds: every generation skipped) or under float32's resolution of the
    largest meta-parameter (every candidate equal to the mean).

    Raises:
        AgentGraphError: naming ``meta.optimizer.sigma``, the bound it meets, and the fix.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"meta": {"optimizer": {"kind": "es", "sigma": 0.1}}})
        >>> check_es_sigma(cfg, {"w": np.ones(3, np.float32)})
    """
    sigma = cfg.meta.optimizer.sigma
    bound = cfg.run.max_meta_param
    if bound is not None and sigma >= bound:
        raise AgentGraphError(
            f"meta.optimizer.sigma = {sigma:g} is at or past run.max_meta_param = {bound:g}: nearly every candidate "
            "would be out of bounds and every generation skipped. Use a sigma well below it (0.01 .. 0.1 is usual), "
            "or raise run.max_meta_param.")
    leaves = [np.asarray(v) for v in jax.tree.leaves(trainable)]
    largest = max((float(np.max(np.abs(v))) for v in leaves if v.size), default=0.0)
    eps = float(np.finfo(np.float32).eps)
    if largest > 0 and sigma < eps * largest:
        raise AgentGraphError(
            f"meta.optimizer.sigma = {sigma:g} is below float32's resolution of the meta-parameters (largest "
            f"magnitude {largest:.3g}: steps under {eps * largest:.3g} vanish): every candidate would equal the mean "
            "and the search would never move. Use a sigma of at least "
            f"{10 * eps * largest:.3g} (0.01 .. 0.1 is usual).")
