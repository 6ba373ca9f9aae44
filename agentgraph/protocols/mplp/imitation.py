"""Warm start by imitation (config ``protocol.imitation_steps``): fit MPLP's learners so that the
protocol does what the gradient protocol does — its messages and its updates — before the
ordinary meta-training starts.

Meta-training from scratch sits on a plateau (paper §5): the learners must discover credit
assignment from a meta-gradient that passes through many inner steps of a protocol that does
nothing useful yet. Imitation replaces that, for the first steps, by a dense, local, supervised
objective with a short unroll. For each of the first ``protocol.imitation_unroll`` inner steps of the
protocol's own trajectory, the gradient protocol (backprop as message passing, with the library
kinds wrapped in :class:`~agentgraph.protocols.recording.Recording`) runs on the same weights and
batch, and

* **messages**: for every learning group that receives messages, channel 0 of the MPLP message
  arriving at each agent should point the way the gradient protocol's message does:
  ``1 - cos(m[..., 0], m*)`` over the group's agents and examples (scale-free: MPLP averages
  messages where backprop sums them, and its messages are bounded);
* **updates**: every parameter agent's update should point the way SGD's does,
  ``-imitation_lr * dL/dw``, per example and for the batch mean (the update the network
  actually takes: per-example errors that do not cancel over the batch make weights drift),
  ``(1 - cos) / 2`` each, and the batch mean should have SGD's size: ``(log ratio of norms)² / 4``.
  Directions are scale-free because one learner (and one output scale) may serve layers whose
  SGD steps differ a hundredfold while its update channel is bounded; the size term lets it
  learn those ratios without dominating.

The objective is the mean over steps of the groups' mean message error plus their mean update
error. The gradient is only a *target*: the protocol never receives it, before or after.

Example:
    >>> from agentgraph.meta.config import parse_config
    >>> from agentgraph.meta.context import make_context
    >>> cfg = parse_config({"data": {"task": "digits", "image_size": 8}, "net": {"sizes": [64, 10]},
    ...                     "protocol": {"k": 2, "hidden": 2, "sharing": "kind", "imitation_unroll": 2},
    ...                     "meta": {"inner_steps": 3}})
    >>> ctx = make_context(cfg)
    >>> imit = make_imitation(ctx.inner, ctx.protocol.settings)
    >>> sorted(imit.message_groups)
    ['bias:0', 'softmax', 'synapse:0']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.compiler import Program
from agentgraph.errors import AgentGraphError
from agentgraph.inner import Inner
from agentgraph.network import with_weights
from agentgraph.protocols.mplp import agents as mk
from agentgraph.protocols.mplp import sharing as sh
from agentgraph.protocols.mplp.calibration import group_rows, recording_program
from agentgraph.protocols.mplp.gradient_input import teacher, train_scale, with_gradient
from agentgraph.unroll import Unroll, remat, run_steps

__all__ = ["Imitation", "make_imitation", "matched_out_scale", "task_imitation_loss"]


@dataclasses.dataclass(frozen=True)
class Imitation:
    """The two recording programs of one context and where each learning group's rows are.

    Attributes:
        student: the MPLP program in recording mode (learner inputs ``feat`` and raw updates).
        teacher: the gradient protocol with :class:`~agentgraph.protocols.recording.Recording`
            kinds (inboxes ``in_m`` and per-example updates ``upd_<field>``).
        message_groups: ``{group: (kind, rows)}`` for groups whose agents receive messages.
        update_groups: ``{group: (kind, rows)}`` for groups of parameter agents.
        keys: the learners' sharing keys (:func:`~agentgraph.protocols.mplp.share_keys`).
        settings: the protocol's settings (:class:`~agentgraph.protocols.mplp.MPLPSettings`).
    """

    student: Program
    teacher: Program
    message_groups: dict
    update_groups: dict
    keys: dict
    settings: Any


def make_imitation(inner: Inner, settings: Any) -> Imitation:
    """Compile the student and teacher programs of ``inner``'s network (see module docstring).

    Raises:
        AgentGraphError: the two programs lay agents out differently.
    """
    g, student = recording_program(inner, settings.kinds_config(), settings.sharing)
    t_prog = teacher(inner)
    if not np.array_equal(student.rows.row, t_prog.rows.row):
        raise AgentGraphError("The MPLP and gradient programs number agents differently; imitation cannot pair them.")
    keys = sh.share_keys(g, settings.sharing)
    rows = group_rows(g, student, keys)
    msg = {gr: kr for gr, kr in rows.items() if kr[0] not in ("l2", "cross_entropy")}
    upd = {gr: kr for gr, kr in rows.items() if kr[0] in mk.PARAM_FIELDS}
    return Imitation(student, t_prog, msg, upd, keys, settings)


def _cos_err(a: jax.Array, b: jax.Array) -> jax.Array:
    """``1 - cos(a, b)``, computed on the vectors scaled to a largest entry of 1 (the cosine does
    not change; squared sums of large messages no longer overflow float32 into an infinite norm
    and a NaN gradient); 1 (with a zero gradient, not NaN) when either vector is zero."""
    a = a / jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(a)), 1e-30))
    b = b / jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))
    num = jnp.sum(a * b)
    return 1.0 - num / (jnp.sqrt(jnp.maximum(jnp.sum(a * a) * jnp.sum(b * b), 1e-24)) + 1e-12)


def task_imitation_loss(learned: Mapping[str, Any], norm: Mapping[str, Any], inner: Inner, task: Mapping,
                        w0: dict, imit: Imitation, unroll: Unroll = Unroll(), grad_scale=None):
    """The imitation objective of one task from weights ``w0`` (module docstring).

    Returns:
        ``(loss, aux)`` with aux ``{"loss": [U] the network's loss before each step, "hint": [U]
        update error per step, "cv": () mean message error}`` (``U = protocol.imitation_unroll``)
        — the keys the meta-objectives return, so the training driver logs both alike.
        ``unroll``: how the steps are unrolled (the run's ``meta.remat``, ``meta.inner_loop``).
        ``grad_scale``: the gradient input's scale (``protocol.grad_input``).
    """
    st = imit.settings

    params = sh.assemble(learned, norm, imit.keys)
    lr = {g: {"lr": st.imitation_lr} for g in inner.base.graph.groups()}
    train = jax.tree.map(lambda v: v[:st.imitation_unroll], task["train"])
    B = train["x"].shape[1]
    state = inner.start(w0, B, imit.student)
    t_init = imit.teacher.init(B)

    def body(s, batch):
        w = jax.lax.stop_gradient(inner.weights(s))
        t_state, loss = imit.teacher.step(lr, with_weights(t_init, w), batch)
        t_state = jax.lax.stop_gradient(t_state)
        s2, _ = imit.student.step(params, with_gradient(inner, s, batch, grad_scale), batch)
        msg_errs = [_cos_err(s2[kn]["feat"][rows, :, 0], t_state[kn]["in_m"][rows, :, 0])
                    for kn, rows in imit.message_groups.values()]
        upd_errs = []
        for g, (kn, rows) in imit.update_groups.items():
            p = params[g]
            mine = (s2[kn]["raw"][rows] - p["out_mean"]) * p["out_scale"]
            target = t_state[kn]["upd_" + mk.PARAM_FIELDS[kn]][rows]
            mean_m, mean_t = mine.mean(1), target.mean(1)
            size = jnp.log(jnp.sum(mean_m ** 2) + 1e-30) - jnp.log(jnp.sum(mean_t ** 2) + 1e-30)
            upd_errs.append(0.5 * (_cos_err(mine, target) + _cos_err(mean_m, mean_t)) + 0.0625 * size ** 2)
        m_err = jnp.mean(jnp.stack(msg_errs)) if msg_errs else jnp.zeros(())
        u_err = jnp.mean(jnp.stack(upd_errs))
        return s2, (m_err, u_err, jax.lax.stop_gradient(loss))

    _, (m_errs, u_errs, losses) = run_steps(remat(body, unroll.remat), state, train, unroll.unrolled)
    return (m_errs + u_errs).mean(), {"loss": losses, "hint": u_errs, "cv": m_errs.mean()}


def matched_out_scale(learned: Mapping[str, Any], norm: Mapping[str, Any], inner: Inner, imit: Imitation,
                      task: Mapping, w0: dict) -> dict[str, Any]:
    """``learned`` with each learner's ``out_scale`` set so that its updates have the size of
    SGD's (``protocol.imitation_lr``) on the first batch of ``task``: the ratio of the root mean
    squares of the teacher's and the student's per-example updates — the largest over the
    groups sharing a learner: its update channel is bounded, so the scale must leave room for
    the layer with the largest steps (the imitation objective's size term then shrinks the others).

    The output scale is one scalar that the meta-optimiser moves by about ``meta_lr`` per step;
    SGD's updates can be a hundred times the initial scale, so imitation starts from the matched
    size instead of spending its steps growing one number.
    """
    st = imit.settings
    params = sh.assemble(learned, norm, imit.keys)
    lr = {g: {"lr": st.imitation_lr} for g in inner.base.graph.groups()}
    batch = jax.tree.map(lambda v: v[0], task["train"])
    B = batch["x"].shape[0]
    t_state, _ = imit.teacher.step(lr, inner.start(w0, B, imit.teacher, plain=True), batch)
    scale = train_scale(st.grad_input, st.grad_input_anneal, 0)
    s_state, _ = imit.student.step(params, with_gradient(inner, inner.start(w0, B, imit.student), batch, scale), batch)
    logs: dict[str, list] = {}
    for g, (kn, rows) in imit.update_groups.items():
        target = jnp.sqrt(jnp.mean(t_state[kn]["upd_" + mk.PARAM_FIELDS[kn]][rows] ** 2))
        mine = jnp.sqrt(jnp.mean((s_state[kn]["raw"][rows] - params[g]["out_mean"]) ** 2))
        logs.setdefault(imit.keys[g][0], []).append(jnp.log(target + 1e-20) - jnp.log(mine + 1e-20))
    proto = {lk: dict(v) for lk, v in learned.items()}
    for lk, parts in logs.items():
        proto[lk]["out_scale"] = jnp.asarray(jnp.exp(jnp.max(jnp.stack(parts))), proto[lk]["out_scale"].dtype)
    return proto
