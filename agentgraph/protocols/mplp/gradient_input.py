"""The gradient as an extra learner input (config ``protocol.grad_input``; the paper's §5).

With ``grad_input`` the learners of weights and biases see one more input: the agent's own
per-example SGD step ``-dL/dw`` (``-dL/db``) on the current example, written into the MPLP
state's per-example field ``grad`` before every inner step. It comes from the gradient protocol
run on the same weights and batch (:func:`teacher`) and is never
differentiated through.

* ``always``: in meta-training and at evaluation. Such a protocol uses the gradient; its
  results are reported apart from the gradient-free protocol's.
* ``train``: scaled by ``max(0, 1 - step / protocol.grad_input_anneal)`` during meta-training
  (``step`` counts meta-loss steps, after any imitation steps), zero afterwards and at
  evaluation: the gradient is scaffolding that is taken away, and the final protocol is
  gradient-free. Once the scale is zero the gradient protocol is not run at all.

Example:
    >>> import numpy as np
    >>> from agentgraph.meta.config import parse_config
    >>> from agentgraph.meta.context import make_context
    >>> cfg = parse_config({"data": {"task": "digits", "image_size": 8}, "net": {"sizes": [64, 10]},
    ...                     "protocol": {"k": 2, "hidden": 2, "grad_input": "always"}})
    >>> ctx = make_context(cfg)
    >>> batch = {"x": np.ones((3, 64), np.float32), "y": np.eye(10, dtype=np.float32)[:3]}
    >>> s = with_gradient(ctx.inner, ctx.program.init(3), batch, 1.0)
    >>> s["synapse"]["grad"].shape
    (640, 3)
"""

from __future__ import annotations

from collections.abc import Mapping

import jax

from agentgraph.compiler import Program, compile
from agentgraph.inner import Inner
from agentgraph.protocols.mplp.agents import PARAM_FIELDS

__all__ = ["eval_scale", "teacher", "train_scale", "with_gradient"]


def teacher(inner: Inner) -> Program:
    """The gradient protocol on ``inner``'s library network with recording kinds
    (:mod:`agentgraph.protocols.recording`): its per-example messages and updates, for imitation
    and for the gradient input. Compiled once per context."""
    from agentgraph.nodes.registry import default_kinds
    from agentgraph.protocols.recording import recording_kinds

    return inner.memo("mplp.teacher", lambda: compile(inner.base.graph.with_kinds(recording_kinds(default_kinds()))))


def with_gradient(inner: Inner, state: Mapping, batch: Mapping, scale) -> dict:
    """``state`` (the MPLP program's) with ``grad`` of every weight and bias set to ``scale``
    times its per-example SGD step on ``batch`` (``[B, ...]`` arrays) at the state's current
    weights. A no-op when the state has no gradient input or ``scale`` is ``None`` (the ``grad``
    fields keep their value, zero from ``init``). See the module example."""
    if scale is None or any("grad" not in state.get(kind, {}) for kind in PARAM_FIELDS):
        return dict(state)
    t_prog = teacher(inner)
    B = jax.tree.leaves(batch)[0].shape[0]
    w = jax.lax.stop_gradient(inner.weights(state))
    lr = {g: {"lr": 1.0} for g in inner.base.graph.groups()}
    t, _ = t_prog.step(lr, inner.start(w, B, t_prog, plain=True), batch)
    out = dict(state)
    for kind, field in PARAM_FIELDS.items():
        g = jax.lax.stop_gradient(t[kind]["upd_" + field]).astype(state[kind]["grad"].dtype)
        out[kind] = {**state[kind], "grad": scale * g}
    return out


def train_scale(mode: str, anneal: int, step):
    """The gradient input's scale at meta-loss step ``step`` (an int or a traced scalar; counted
    after any imitation steps): 1 for ``always``, ``max(0, 1 - step / anneal)`` for ``train``,
    and ``None`` (do not run the gradient protocol) without a gradient input or once a ``train``
    input has faded out (``step`` a Python int).

    Example:
        >>> float(train_scale("train", 100, 25)), train_scale("train", 100, 100)
        (0.75, None)
    """
    if mode == "always":
        return 1.0
    if mode == "train":
        if isinstance(step, int) and step >= anneal:
            return None
        return jax.numpy.maximum(0.0, 1.0 - step / anneal)
    return None


def eval_scale(mode: str) -> float | None:
    """The scale at evaluation: 1 for ``always``, else ``None`` (the protocol runs without
    gradient, and the gradient protocol is not run).

    Example:
        >>> eval_scale("always"), eval_scale("train")
        (1.0, None)
    """
    return 1.0 if mode == "always" else None
