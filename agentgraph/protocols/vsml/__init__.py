"""VSML (Kirsch & Schmidhuber, NeurIPS 2021, "Meta learning backpropagation and improving it") as
a library protocol: every synapse of a network is a small LSTM, one parameter set shared by all
synapses of all layers; the network learns online, one example per tick, by messages alone.

One tick (one example, one inner step; :data:`~agentgraph.protocols.vsml.agents.SCHEDULE`)::

    input i        sends (x_i, 0, …, 0)                                     [M]
    synapse ij     [h, c] ← LSTM^k([fwd_ij, bwd_ij], [h, c])   (k = 2 micro ticks)
                   sends fwd = h W_f + b_f to unit j, bwd = h W_b + b_b to back(i)
    unit j         fwd_jk = mean_i fwd_ij for its out-synapses                   (immediate)
    output j       z_j = 100 tanh(mean_i fwd_ij[1] / 100): the prediction
    error j        loss y_j (lse − z_j); sends (softmax(z)_j − y_j, y_j, 0, …)  (delayed)
    back(i)        bwd_hi = mean_j bwd_ij for its in-synapses                    (delayed)

so backward messages reach a synapse one tick after they were made, as in VSML. The loss of a tick
is the cross-entropy of the prediction made *before* the label is heard (online loss). The LSTM
states persist across the ticks of an episode (they are per-example state); each synapse's cell
state starts at ``c0`` (per agent, ``~ N(0, init_std)``) on half its channels — what makes two
synapses differ. Batch ``B`` runs ``B`` independent learners (VSML's setting is ``B = 1``).

The authors' code (``louiskirsch/vsml-neurips2021``) computes the same tick (to 1e-16 in float64,
``benchmarks/vsml_vs_authors.py``) once the conventions that differ are matched: they are options
of :class:`~agentgraph.protocols.vsml.settings.VsmlSettings` (``feed_label``, ``c0_init``,
``param_init``, ``batch_merge``, ``error_scale``; ``conventions="authors"`` sets all of them). The
network comes from a library graph, so it may be non-layered (skip connections, several paths)
or convolutional: a kernel entry's uses share one LSTM state (tied, reduction mean, as the
authors' conv layer; :mod:`agentgraph.protocols.vsml.network`).

Example:
    >>> import jax
    >>> from agentgraph.builders import mlp_network
    >>> p = vsml()
    >>> net = p.network(mlp_network([4, 3, 2]))
    >>> sum(v.size for v in jax.tree.leaves(p.init(jax.random.PRNGKey(0), net.graph)))
    2384
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import pydantic

from agentgraph.compiler import Program
from agentgraph.errors import AgentGraphError
from agentgraph.inner import Inner
from agentgraph.learners.lstm import init_lstm
from agentgraph.protocols.base import Protocol, Stepping
from agentgraph.protocols.vsml.agents import (
    SCHEDULE,
    TICK,
    VSMLBack,
    VSMLError,
    VSMLInput,
    VSMLSynapse,
    VSMLUnit,
)
from agentgraph.protocols.vsml.network import GROUP, vsml_network
from agentgraph.protocols.vsml.settings import AUTHORS, VsmlSettings

__all__ = ["AUTHORS", "GROUP", "SCHEDULE", "TICK", "VSMLBack", "VSMLError", "VSMLInput", "VSMLSynapse", "VSMLUnit",
           "VsmlSettings", "authors_batch", "init_params", "merge_halves", "vsml", "vsml_network"]


def held_out(inner: Inner, program: Program, params: dict, state: dict, data: dict) -> jax.Array:
    """VSML's held-out predictions: the learner of example 0 (its synapses' LSTM states and the
    messages in flight) copied to every held-out example, one forward tick, the outputs' ``z``
    (``[C, n_out]``). The copies' own labels are not heard before the prediction is read (a
    :data:`~agentgraph.protocols.base.HeldOut` hook)."""
    C = data["x"].shape[0]

    def copy(v):  # per-example arrays are [agents, B, ...]
        return jnp.broadcast_to(v[:, :1], (v.shape[0], C, *v.shape[2:]))

    out = {}
    for k, fields in state.items():
        if k == "@delayed":
            out[k] = {n: copy(v) for n, v in fields.items()}
        else:
            kind = program.kinds[k]
            out[k] = {f: copy(v) if kind.fields[f].per_example else v for f, v in fields.items()}
    out, _ = program.forward(params, out, data)
    return inner.predict(out, program)


def init_params(key: jax.Array, msg: int, hidden: int, param_init: str = "normal", layer_norm: bool = False) -> dict:
    """The shared LSTM's parameters: :func:`~agentgraph.learners.lstm.init_lstm` (``normal``), or
    the same stds truncated at ±2σ and rescaled to keep the std (``truncated``: haiku's
    ``TruncatedNormal``, the authors' initialiser; biases 0). ``layer_norm`` adds the message
    layer norms' ``ln_{fwd,bwd}_scale`` (ones) and ``ln_{fwd,bwd}_offset`` (zeros), ``[msg]``.

    Example:
        >>> p = init_params(jax.random.PRNGKey(0), 4, 6, "truncated")
        >>> p["w"].shape, float(jnp.abs(p["w"]).max()) <= 2 / 0.87962566103423978 / (14 ** 0.5)
        ((14, 24), True)
    """
    p = init_lstm(key, 2 * msg, hidden, msg)
    if layer_norm:
        p = {**p, **{f"ln_{side}_{k}": v(msg) for side in ("fwd", "bwd")
                     for k, v in (("scale", jnp.ones), ("offset", jnp.zeros))}}
    if param_init == "normal":
        return p
    keys = dict(zip(("w", "w_fwd", "w_bwd"), jax.random.split(key, 3)))
    out = dict(p)
    for name, k in keys.items():
        fan_in = p[name].shape[0]
        z = jax.random.truncated_normal(k, -2.0, 2.0, p[name].shape, p[name].dtype)
        out[name] = z / jnp.sqrt(fan_in) / 0.87962566103423978
    return out


def merge_halves(x: jax.Array, axis: int) -> jax.Array:
    """``x`` with the first half of its last axis replaced by its mean over ``axis`` (the batch):
    the authors' merge of ``B > 1`` learners (``batch_merge: half_mean``).

    Example:
        >>> merge_halves(jnp.array([[1.0, 2.0], [3.0, 4.0]]), axis=0).tolist()
        [[2.0, 2.0], [2.0, 4.0]]
    """
    n = x.shape[-1] // 2
    m = jnp.broadcast_to(jnp.mean(x[..., :n], axis=axis, keepdims=True), x[..., :n].shape)
    return jnp.concatenate([m, x[..., n:]], axis=-1)


def authors_batch(params: dict, state: dict, batch_size: Any, merge: bool, scale: bool) -> tuple[dict, dict]:
    """The params and program state (arrays ``[agents, B, ...]``) of one step under the authors'
    batch conventions: ``merge`` averages the first half of every synapse's ``h`` and ``c`` over
    the batch (before the step), ``scale`` puts ``error_scale = 1/B`` into the params.

    Example:
        >>> p, s = authors_batch({GROUP: {}}, {}, 4, merge=False, scale=True)
        >>> float(p[GROUP]["error_scale"])
        0.25
    """
    if merge and "vsml_synapse" in state:  # tied synapses hold h, c per agent: one learner already
        syn = state["vsml_synapse"]
        state = {**state, "vsml_synapse": {**syn, "h": merge_halves(syn["h"], 1), "c": merge_halves(syn["c"], 1)}}
    if scale:
        params = {**params, GROUP: {**params[GROUP], "error_scale": 1.0 / jnp.asarray(batch_size)}}
    return params, state


def _authors_step(merge: bool, scale: bool):
    def step(inner, program, params, state, batch, stage, phase):
        params, state = authors_batch(params, state, jnp.shape(batch["x"])[0], merge, scale)
        return program.step(params, state, batch)

    return step


def vsml(**settings: Any) -> Protocol:
    """VSML as a :class:`~agentgraph.protocols.base.Protocol` (config ``protocol: {rule: vsml}``),
    with :class:`~agentgraph.protocols.vsml.settings.VsmlSettings`: ``msg``, ``hidden``,
    ``micro_ticks``, ``init_std``, ``output_index``, ``two_phase`` and the conventions
    (``feed_label``, ``c0_init``, ``param_init``, ``batch_merge``, ``error_scale``,
    ``two_phase_inputs``, ``layer_norm``;
    ``conventions: authors`` for the authors' code). ``batch_merge: half_mean`` and
    ``error_scale: batch_mean`` are a :class:`~agentgraph.protocols.base.Stepping`
    (:func:`authors_batch` before every ``program.step``).

    ``two_phase``: a forward then a backward sweep per example, the backward messages of this
    example arriving at once (instead of one tick per example, backward messages one tick late);
    the schedule under which :func:`~agentgraph.protocols.vsml.backprop.backprop_lstm` runs SGD.

    Example:
        >>> vsml(conventions="authors").settings["feed_label"]
        False
    """
    try:
        s = VsmlSettings(**settings)
    except pydantic.ValidationError as e:
        lines = [f"protocol.{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise AgentGraphError("invalid settings for rule 'vsml': " + "; ".join(lines)) from None
    msg, hidden = s.msg, s.hidden
    if msg < 2:
        raise AgentGraphError(f"protocol.msg must be at least 2 (error and label), got {msg}.")
    if not 0 <= s.output_index < msg:
        raise AgentGraphError(f"protocol.output_index must be in [0, msg), got {s.output_index} with msg={msg}.")
    return Protocol(
        name="vsml",
        network=lambda net: vsml_network(net, msg, hidden, s.micro_ticks, s.init_std, s.output_index, s.two_phase,
                                         feed_label=s.feed_label, c0_init=s.c0_init, error_scale=s.error_scale,
                                         two_phase_inputs=s.two_phase_inputs, layer_norm=s.layer_norm),
        init=lambda key, graph: init_params(key, msg, hidden, s.param_init, s.layer_norm),
        params=lambda learned, stats, graph: {GROUP: learned},
        held_out=held_out,
        stepping=Stepping(step=_authors_step(s.batch_merge == "half_mean", s.error_scale == "batch_mean"))
        if (s.batch_merge, s.error_scale) != ("independent", "per_example") else None,
        settings=s.model_dump(),
    )


vsml.Config = VsmlSettings  # type: ignore[attr-defined]
