"""Warm start by imitation (config ``meta.imitation_steps``): fit MPLP's learners so that the
protocol does what the gradient protocol does — its messages and its updates — before the
ordinary meta-training starts.

Meta-training from scratch sits on a plateau (paper §5): the learners must discover credit
assignment from a meta-gradient that passes through many inner steps of a protocol that does
nothing useful yet. Imitation replaces that, for the first steps, by a dense, local, supervised
objective with a short unroll. For each of the first ``meta.imitation_unroll`` inner steps of the
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
    >>> from agentgraph.meta.setup import make_setup
    >>> cfg = parse_config({"data": {"task": "digits", "image_size": 8}, "net": {"sizes": [64, 10]},
    ...                     "protocol": {"k": 2, "hidden": 2, "sharing": "kind"}, "meta": {"inner_steps": 3, "imitation_unroll": 2}})
    >>> imit = make_imitation(make_setup(cfg))
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

from agentgraph.compiler import Program, compile
from agentgraph.errors import AgentGraphError
from agentgraph.meta.gradient_input import train_scale, with_gradient
from agentgraph.meta.loop import _remat, _run
from agentgraph.meta.setup import Setup, group_rows, with_params
from agentgraph.protocols import mplp

__all__ = ["Imitation", "make_imitation", "matched_out_scale", "task_imitation_loss"]

@dataclasses.dataclass(frozen=True)
class Imitation:
    """The two recording programs of one setup and where each learning group's rows are.

    Attributes:
        student: the MPLP program in recording mode (learner inputs ``feat`` and raw updates).
        teacher: the gradient protocol with :class:`~agentgraph.protocols.recording.Recording`
            kinds (inboxes ``in_m`` and per-example updates ``upd_<field>``).
        message_groups: ``{group: (kind, rows)}`` for groups whose agents receive messages.
        update_groups: ``{group: (kind, rows)}`` for groups of parameter agents.
    """

    student: Program
    teacher: Program
    message_groups: dict
    update_groups: dict


def make_imitation(setup: Setup) -> Imitation:
    """Compile the student and teacher programs of ``setup``'s network (see module docstring).

    Raises:
        AgentGraphError: the protocol is not MPLP, or the two programs lay agents out differently.
    """
    if setup.cfg.protocol.rule != "mplp":
        raise AgentGraphError("meta.imitation_steps needs protocol.rule 'mplp' (there is nothing to warm-start).")
    sharing = setup.cfg.protocol.sharing
    student = compile(setup.graph.with_kinds(mplp.kinds(dataclasses.replace(setup.config, record=True), sharing)))
    teacher = setup.teacher
    if not np.array_equal(student.rows.row, teacher.rows.row):
        raise AgentGraphError("The MPLP and gradient programs number agents differently; imitation cannot pair them.")
    rows = group_rows(setup.graph, student, setup.keys)
    msg = {g: kr for g, kr in rows.items() if kr[0] not in ("l2", "cross_entropy")}
    upd = {g: kr for g, kr in rows.items() if kr[0] in mplp.PARAM_FIELDS}
    return Imitation(student, teacher, msg, upd)


def _cos_err(a: jax.Array, b: jax.Array) -> jax.Array:
    num = jnp.sum(a * b)
    return 1.0 - num / (jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b)) + 1e-12)


def task_imitation_loss(trainable: Mapping[str, Any], norm: Mapping[str, Any], setup: Setup, task: Mapping,
                        w0: jax.Array, b0: jax.Array, imit: Imitation, grad_scale=None):
    """The imitation objective of one task from weights ``(w0, b0)`` (module docstring).

    Returns:
        ``(loss, aux)`` with aux ``{"loss": [U] the network's loss before each step, "hint": [U]
        update error per step, "cv": () mean message error}`` (``U = meta.imitation_unroll``) —
        the keys :func:`~agentgraph.meta.loop.task_meta_loss` returns, so the training driver
        logs both alike. ``grad_scale``: the gradient input's scale (``protocol.grad_input``).

    Example:
        >>> import jax
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.setup import make_setup, prior_pool
        >>> from agentgraph.meta.tasks import task_family
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...                     "meta": {"inner_steps": 3, "imitation_unroll": 2}})
        >>> setup = make_setup(cfg)
        >>> tr = {"protocol": mplp.init_meta(setup.graph, jax.random.PRNGKey(0), setup.config)}
        >>> norm = mplp.init_norm(setup.graph, setup.config)
        >>> pool = prior_pool(setup, jax.random.PRNGKey(1), 1)
        >>> task = task_family(cfg).sample(jax.random.PRNGKey(2))
        >>> loss, aux = task_imitation_loss(tr, norm, setup, task, pool["w"][0], pool["b"][0], make_imitation(setup))
        >>> aux["hint"].shape, bool(loss > 0)
        ((2,), True)
        >>> tr2 = matched_out_scale(tr, norm, setup, make_imitation(setup), task, pool["w"][0], pool["b"][0])
        >>> sorted(tr2["protocol"]) == sorted(tr["protocol"])
        True
    """
    cfg = setup.cfg.meta
    params = mplp.assemble(trainable["protocol"], norm, setup.keys)
    lr = {g: {"lr": cfg.imitation_lr} for g in setup.plain_groups}
    train = jax.tree.map(lambda v: v[:cfg.imitation_unroll], task["train"])
    B = train["x"].shape[1]
    state = with_params(imit.student.init(B), w0, b0)
    t_init = imit.teacher.init(B)

    def body(s, batch):
        w, b = s["synapse"]["w"], s["bias"]["b"]
        t_state, loss = imit.teacher.step(lr, with_params(t_init, jax.lax.stop_gradient(w),
                                                           jax.lax.stop_gradient(b)), batch)
        t_state = jax.lax.stop_gradient(t_state)
        s2, _ = imit.student.step(params, with_gradient(setup, s, batch, grad_scale), batch)
        msg_errs = [_cos_err(s2[kn]["feat"][rows, :, 0], t_state[kn]["in_m"][rows, :, 0])
                    for kn, rows in imit.message_groups.values()]
        upd_errs = []
        for g, (kn, rows) in imit.update_groups.items():
            p = params[g]
            mine = (s2[kn]["raw"][rows] - p["out_mean"]) * p["out_scale"]
            target = t_state[kn]["upd_" + mplp.PARAM_FIELDS[kn]][rows]
            mean_m, mean_t = mine.mean(1), target.mean(1)
            size = jnp.log(jnp.sum(mean_m ** 2) + 1e-30) - jnp.log(jnp.sum(mean_t ** 2) + 1e-30)
            upd_errs.append(0.5 * (_cos_err(mine, target) + _cos_err(mean_m, mean_t)) + 0.0625 * size ** 2)
        m_err = jnp.mean(jnp.stack(msg_errs)) if msg_errs else jnp.zeros(())
        u_err = jnp.mean(jnp.stack(upd_errs))
        return s2, (m_err, u_err, jax.lax.stop_gradient(loss))

    _, (m_errs, u_errs, losses) = _run(_remat(body, cfg.remat), state, train, cfg.inner_loop == "unrolled")
    return (m_errs + u_errs).mean(), {"loss": losses, "hint": u_errs, "cv": m_errs.mean()}


def matched_out_scale(trainable: Mapping[str, Any], norm: Mapping[str, Any], setup: Setup, imit: Imitation,
                      task: Mapping, w0: jax.Array, b0: jax.Array) -> dict[str, Any]:
    """``trainable`` with each learner's ``out_scale`` set so that its updates have the size of
    SGD's (``meta.imitation_lr``) on the first batch of ``task``: the ratio of the root mean
    squares of the teacher's and the student's per-example updates — the largest over the
    groups sharing a learner: its update channel is bounded, so the scale must leave room for
    the layer with the largest steps (the imitation objective's size term then shrinks the others).

    The output scale is one scalar that the meta-optimiser moves by about ``meta_lr`` per step;
    SGD's updates can be a hundred times the initial scale, so imitation starts from the matched
    size instead of spending its steps growing one number.
    """
    params = mplp.assemble(trainable["protocol"], norm, setup.keys)
    lr = {g: {"lr": setup.cfg.meta.imitation_lr} for g in setup.plain_groups}
    batch = jax.tree.map(lambda v: v[0], task["train"])
    B = batch["x"].shape[0]
    t_state, _ = imit.teacher.step(lr, with_params(imit.teacher.init(B), w0, b0), batch)
    s_state, _ = imit.student.step(params, with_gradient(setup, with_params(imit.student.init(B), w0, b0), batch,
                                                         train_scale(setup, 0)), batch)
    logs: dict[str, list] = {}
    for g, (kn, rows) in imit.update_groups.items():
        target = jnp.sqrt(jnp.mean(t_state[kn]["upd_" + mplp.PARAM_FIELDS[kn]][rows] ** 2))
        mine = jnp.sqrt(jnp.mean((s_state[kn]["raw"][rows] - params[g]["out_mean"]) ** 2))
        logs.setdefault(setup.keys[g][0], []).append(jnp.log(target + 1e-20) - jnp.log(mine + 1e-20))
    proto = {lk: dict(v) for lk, v in trainable["protocol"].items()}
    for lk, parts in logs.items():
        proto[lk]["out_scale"] = jnp.asarray(jnp.exp(jnp.max(jnp.stack(parts))), proto[lk]["out_scale"].dtype)
    return {**trainable, "protocol": proto}
