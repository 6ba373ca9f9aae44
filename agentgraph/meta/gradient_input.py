"""The gradient as an extra learner input (config ``protocol.grad_input``; the paper's §5).

With ``grad_input`` the learners of weights and biases see one more input: the agent's own
per-example SGD step ``-dL/dw`` (``-dL/db``) on the current example, written into the MPLP
state's per-example field ``grad`` before every inner step. It comes from the gradient protocol
run on the same weights and batch (:attr:`~agentgraph.meta.setup.Setup.teacher`) and is never
differentiated through.

* ``always``: in meta-training and at evaluation. Such a protocol uses the gradient; its
  results are reported apart from the gradient-free protocol's.
* ``train``: scaled by ``max(0, 1 - step / meta.grad_input_anneal)`` during meta-training
  (``step`` counts meta-loss steps, after any imitation steps), zero afterwards and at
  evaluation: the gradient is scaffolding that is taken away, and the final protocol is
  gradient-free. Once the scale is zero the gradient protocol is not run at all.

Example:
    >>> import jax, numpy as np
    >>> from agentgraph.meta.config import parse_config
    >>> from agentgraph.meta.setup import make_setup
    >>> from agentgraph.meta.gradient_input import with_gradient
    >>> cfg = parse_config({"data": {"task": "digits", "image_size": 8}, "net": {"sizes": [64, 10]},
    ...                     "protocol": {"k": 2, "hidden": 2, "grad_input": "always"}})
    >>> setup = make_setup(cfg)
    >>> batch = {"x": np.ones((3, 64), np.float32), "y": np.eye(10, dtype=np.float32)[:3]}
    >>> s = with_gradient(setup, setup.prog.init(3), batch, 1.0)
    >>> s["synapse"]["grad"].shape
    (640, 3)
"""

from __future__ import annotations

from collections.abc import Mapping

import jax

from agentgraph.meta.setup import Setup, with_params
from agentgraph.protocols import mplp

__all__ = ["eval_scale", "train_scale", "with_gradient"]

def with_gradient(setup: Setup, state: Mapping, batch: Mapping, scale) -> dict:
    """``state`` (MPLP program) with ``grad`` of every weight and bias set to ``scale`` times
    its per-example SGD step on ``batch`` (``[B, ...]`` arrays) at the state's current weights.
    A no-op when the protocol has no gradient input or ``scale`` is ``None`` (the ``grad``
    fields keep their value, zero from ``init``). See the module example."""
    if not setup.config.grad_input or scale is None:
        return dict(state)
    teacher = setup.teacher
    B = jax.tree.leaves(batch)[0].shape[0]
    w = jax.lax.stop_gradient(state["synapse"]["w"])
    b = jax.lax.stop_gradient(state["bias"]["b"])
    lr = {g: {"lr": 1.0} for g in setup.plain_groups}
    t, _ = teacher.step(lr, with_params(teacher.init(B), w, b), batch)
    out = dict(state)
    for kind, field in mplp.PARAM_FIELDS.items():
        g = jax.lax.stop_gradient(t[kind]["upd_" + field]).astype(state[kind]["grad"].dtype)
        out[kind] = {**state[kind], "grad": scale * g}
    return out


def train_scale(setup: Setup, step):
    """The gradient input's scale at meta-loss step ``step`` (an int or a traced scalar; counted
    after any imitation steps): 1 for ``always``, ``max(0, 1 - step / meta.grad_input_anneal)``
    for ``train``, and ``None`` (do not run the gradient protocol) without a gradient input or
    once a ``train`` input has faded out (``step`` a Python int).

    Example:
        >>> from types import SimpleNamespace as NS
        >>> s = NS(cfg=NS(protocol=NS(grad_input="train"), meta=NS(grad_input_anneal=100)))
        >>> float(train_scale(s, 25)), train_scale(s, 100)
        (0.75, None)
    """
    mode = setup.cfg.protocol.grad_input
    if mode == "always":
        return 1.0
    if mode == "train":
        anneal = setup.cfg.meta.grad_input_anneal
        if isinstance(step, int) and step >= anneal:
            return None
        return jax.numpy.maximum(0.0, 1.0 - step / anneal)
    return None


def eval_scale(setup: Setup) -> float | None:
    """The scale at evaluation: 1 for ``always``, else ``None`` (the protocol runs without
    gradient, and the gradient protocol is not run).

    Example:
        >>> from types import SimpleNamespace as NS
        >>> eval_scale(NS(cfg=NS(protocol=NS(grad_input="always")))), eval_scale(NS(cfg=NS(protocol=NS(grad_input="train"))))
        (1.0, None)
    """
    return 1.0 if setup.cfg.protocol.grad_input == "always" else None
