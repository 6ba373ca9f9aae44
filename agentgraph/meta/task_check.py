"""What a task family yields, checked against the config and the network before any compute.

A task sampler (``TaskFamily.sample``, a registered task or the user's ``data.task:
"pkg.mod:function"``) is traced once, abstractly (:func:`jax.eval_shape`: no data is drawn), and
what it returns is compared with what meta-training will read:

* the layout ``{"train": {"x": [K, B, n_in], "y": [K, B, n_out]}, "cv": {"x": [C, n_in], "y": [C, n_out]}}``;
* ``K >= meta.inner_steps`` — a task with fewer batches than inner steps would otherwise be
  indexed past its end, which XLA clamps: the last batch silently repeated;
* the columns of ``x`` and ``y`` equal the family's ``n_in`` / ``n_out`` *and* the columns the
  network reads (its input and target agents' slots): a network reading fewer columns than the
  task gives would silently ignore the rest, one reading more is refused by
  :meth:`~agentgraph.compiler.Program.check_columns` with an agent's name only.

Errors name ``data.task``, ``net.kind``/``net.sizes`` and ``meta.inner_steps``, and the fix.

Example:
    >>> from agentgraph.meta.config import parse_config
    >>> from agentgraph.meta.context import make_context
    >>> from agentgraph.meta.tasks import task_family
    >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
    >>> check_task_shapes(make_context(cfg), task_family(cfg))
"""

from __future__ import annotations

from typing import Any

import jax

from agentgraph.errors import AgentGraphError
from agentgraph.meta.tasks import TaskFamily

__all__ = ["check_task_shapes", "network_columns"]


def network_columns(ctx: Any) -> dict[str, int]:
    """``{batch key: columns the network reads}`` of ``ctx``'s library (plain) network: one more
    than the largest ``slot`` of the agents reading that key.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> network_columns(make_context(parse_config({"data": {"task": "sinusoid"},
        ...                                            "net": {"sizes": [1, 4, 1], "loss": "l2"}})))
        {'x': 1, 'y': 1}
    """
    reads = getattr(getattr(ctx.plain, "_host", None), "reads", None) or {}
    return {key: int(slot) + 1 for key, (slot, _) in sorted(reads.items())}


def _culprit(cfg: Any) -> str:
    return (f"net.kind {cfg.net.kind!r} (your builder)" if not cfg.net.library
            else f"net.sizes {list(cfg.net.sizes)}")


def check_task_shapes(ctx: Any, family: TaskFamily) -> None:
    """Check what ``family.sample`` yields against ``ctx``'s config and network (module docstring).

    Raises:
        AgentGraphError: a wrong layout, fewer batches than ``meta.inner_steps``, or columns that
            differ from the family's declared sizes or from what the network reads.
    """
    cfg = ctx.cfg
    task = cfg.data.task
    shapes = jax.eval_shape(family.sample, jax.random.PRNGKey(0))
    layout = ('{"train": {"x": [K, B, n_in], "y": [K, B, n_out]}, "cv": {"x": [C, n_in], "y": [C, n_out]}} '
              "(agentgraph.meta.tasks module docstring)")
    problems = []
    if not isinstance(shapes, dict) or not isinstance(shapes.get("train"), dict) or not isinstance(shapes.get("cv"), dict):
        got = sorted(shapes) if isinstance(shapes, dict) else type(shapes).__name__
        raise AgentGraphError(f"data.task {task!r}: its sampler returned {got}, not {layout}; make it return that layout.")
    for part, ndim in (("train", 3), ("cv", 2)):
        for key in ("x", "y"):
            v = shapes[part].get(key)
            if v is None or len(getattr(v, "shape", ())) != ndim:
                got = "nothing" if v is None else f"shape {tuple(getattr(v, 'shape', ()))}"
                problems.append(f"task[{part!r}][{key!r}] is {got}, it must be {ndim}-d")
    if problems:
        raise AgentGraphError(f"data.task {task!r}: its sampler's task has the wrong layout: {'; '.join(problems)}. "
                              f"It must return {layout}.")
    K = shapes["train"]["x"].shape[0]
    if K < cfg.meta.inner_steps or shapes["train"]["y"].shape[0] < cfg.meta.inner_steps:
        raise AgentGraphError(
            f"data.task {task!r} yields {K} batches per task, fewer than meta.inner_steps = {cfg.meta.inner_steps} "
            "(the missing steps would silently repeat the last batch): lower meta.inner_steps to at most "
            f"{K}, or make the task yield meta.inner_steps batches (its train arrays [K, B, n] with K = "
            "cfg.meta.inner_steps).")
    declared = {"x": ("n_in", family.n_in), "y": ("n_out", family.n_out)}
    reads = network_columns(ctx)
    for key, (name, n) in declared.items():
        cols = {shapes[p][key].shape[-1] for p in ("train", "cv")}
        if cols != {n}:
            problems.append(f"data.task {task!r} declares {name} = {n} but its {key} has {sorted(cols)} columns; "
                            f"make TaskFamily.{name} match the arrays it samples")
        elif key in reads and reads[key] != n:
            more = "ignore some of" if reads[key] < n else "read past"
            problems.append(f"{_culprit(cfg)} reads {reads[key]} columns of {key} but data.task {task!r} gives "
                            f"{n}: the network would {more} them; build the network with {n} "
                            f"{'inputs' if key == 'x' else 'outputs'}, or choose the task it was built for")
    if problems:
        raise AgentGraphError("The task and the network do not fit:\n  " + "\n  ".join(problems))
