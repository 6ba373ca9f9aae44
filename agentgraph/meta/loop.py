"""The inner loop and the meta-loss of MPLP meta-training (paper §3.1.1).

For one task: start from a prior network, run ``K`` inner steps of the protocol; after each step
the *hint loss* is the updated network's loss on the batch just used; after the last step the
*cross-validation loss* is its loss on held-out data. ``meta_loss = hint_weight * mean(hints) +
cv_weight * cv``. Gradients flow through the whole unroll (``jax.checkpoint`` on each step), or
through the last ``truncation`` steps only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from agentgraph.meta.gradient_input import with_gradient
from agentgraph.meta.setup import Setup, with_params
from agentgraph.protocols import mplp

__all__ = ["REMAT", "batch_meta_loss", "inner_loop", "protocol_params", "task_meta_loss"]

#: How each inner step is rematerialised in the meta-gradient (config ``meta.remat``):
#: ``full`` (``True``) keeps only the state between steps and recomputes each step's insides in
#: the backward pass; ``learner`` also keeps the learners' second-layer pre-activations (the
#: costly ``[rows, 80] @ [80, 40]`` products; cheap ``[rows, 40]`` to store); ``dots`` keeps every
#: matmul result; ``none`` (``False``) keeps everything. Measured in docs/performance.md.
REMAT = {"full": "full", True: "full", "learner": "learner", "dots": "dots", "none": "none", False: "none"}


def _remat(body, remat):
    mode = REMAT[remat]
    if mode == "full":
        return jax.checkpoint(body)
    if mode == "learner":
        return jax.checkpoint(body, policy=jax.checkpoint_policies.save_only_these_names("mlp_pre1"))
    if mode == "dots":
        return jax.checkpoint(body, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
    return body


def _run(body, state, batches, unrolled: bool):
    """``lax.scan(body, state, batches)``, or the same steps written out one after another."""
    if not unrolled:
        return jax.lax.scan(body, state, batches)
    outs = []
    for i in range(jax.tree.leaves(batches)[0].shape[0]):
        state, out = body(state, jax.tree.map(lambda v: v[i], batches))
        outs.append(out)
    return state, jax.tree.map(lambda *v: jnp.stack(v), *outs)


def inner_loop(setup: Setup, params: Mapping[str, Any], task: Mapping, w0: jax.Array, b0: jax.Array,
               *, remat: bool | str = True, truncation: int | None = None, prog=None, grad_scale=None,
               unrolled: bool = False):
    """Run the protocol for ``K`` steps on ``task["train"]`` from weights ``(w0, b0)`` (on
    ``prog``, default the MPLP program; the gradient protocol runs on ``setup.plain``).
    ``grad_scale``: the gradient input's scale (``protocol.grad_input``, see
    :mod:`agentgraph.meta.gradient_input`).

    Returns:
        ``(final_state, losses [K], hints [K])``: ``losses[i]`` is the loss at step ``i`` before
        its update, ``hints[i]`` the loss on the same batch after it. ``unrolled``: the steps
        written out instead of one ``lax.scan`` (``meta.inner_loop``; same numbers).
    """
    prog = setup.prog if prog is None else prog
    B = task["train"]["x"].shape[1]
    state = with_params(prog.init(B), w0, b0)

    feed = prog is setup.prog and setup.config.grad_input and grad_scale is not None

    def body(s, batch):
        if feed:
            s = with_gradient(setup, s, batch, grad_scale)
        s, loss = prog.step(params, s, batch)
        _, hint = prog.forward(params, s, batch)
        return s, (loss, hint)

    body = _remat(body, remat)
    train = task["train"]
    K = train["x"].shape[0]
    if truncation is None or truncation >= K:
        state, (losses, hints) = _run(body, state, train, unrolled)
        return state, losses, hints
    # truncated backprop: no gradient flows into the state across chunk boundaries
    losses, hints = [], []
    for start in range(0, K, truncation):
        state = jax.lax.stop_gradient(state)
        chunk = jax.tree.map(lambda v: v[start:start + truncation], train)
        state, (l, h) = _run(body, state, chunk, unrolled)
        losses.append(l)
        hints.append(h)
    return state, jnp.concatenate(losses), jnp.concatenate(hints)


def protocol_params(setup: Setup, trainable: Mapping[str, Any], norm: Mapping[str, Any]):
    """``(params, program)`` the inner loop runs: the assembled MPLP parameters on the MPLP
    program, or (``protocol.rule: sgd``) the gradient protocol's ``{group: {"lr"}}`` on the
    plain program."""
    if setup.cfg.protocol.rule == "sgd":
        return {g: {"lr": setup.cfg.protocol.sgd_lr} for g in setup.plain_groups}, setup.plain
    return mplp.assemble(trainable["protocol"], norm, setup.keys), setup.prog


def task_meta_loss(trainable: Mapping[str, Any], norm: Mapping[str, Any], setup: Setup, task: Mapping,
                   w0: jax.Array, b0: jax.Array, grad_scale=None):
    """Meta-loss of one task; returns ``(meta_loss, aux)`` with aux ``{"loss": [K], "hint": [K],
    "cv": ()}``. With MAML (``trainable["prior"]``), the prior replaces ``(w0, b0)``."""
    cfg = setup.cfg.meta
    params, prog = protocol_params(setup, trainable, norm)
    if "prior" in trainable:
        w0, b0 = trainable["prior"]["w"], trainable["prior"]["b"]
    state, losses, hints = inner_loop(setup, params, task, w0, b0, remat=cfg.remat, truncation=cfg.truncation,
                                      prog=prog, grad_scale=grad_scale, unrolled=cfg.inner_loop == "unrolled")
    cv_state = prog.resize(state, task["cv"]["x"].shape[0])
    _, cv = prog.forward(params, cv_state, task["cv"])
    meta = cfg.hint_weight * hints.mean() + cfg.cv_weight * cv
    return meta, {"loss": losses, "hint": hints, "cv": cv}


def batch_meta_loss(trainable, norm, setup: Setup, tasks, w0s, b0s, objective=None):
    """Mean meta-loss over an outer batch (tasks, priors stacked on axis 0), the tasks vmapped or
    run one after another (``meta.outer_map``); ``objective`` (default :func:`task_meta_loss`)
    is the per-task loss."""
    objective = objective or task_meta_loss
    if jax.tree.leaves(w0s)[0].shape[0] == 1:  # one task: no vmap (its unit axis makes XLA:CPU copy)
        one = lambda v: v[0]  # noqa: E731
        meta, aux = objective(trainable, norm, setup, jax.tree.map(one, tasks), w0s[0], b0s[0])
        return meta, aux
    how = setup.cfg.meta.outer_map
    if how == "auto":
        how = "map" if jax.default_backend() == "cpu" else "vmap"
    one_task = lambda t, w, b: objective(trainable, norm, setup, t, w, b)  # noqa: E731
    if how == "map":
        metas, aux = jax.lax.map(lambda a: one_task(*a), (tasks, w0s, b0s))
    else:
        metas, aux = jax.vmap(one_task)(tasks, w0s, b0s)
    return metas.mean(), jax.tree.map(lambda v: v.mean(0), aux)
