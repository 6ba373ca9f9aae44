"""VSML's agents (Kirsch & Schmidhuber, NeurIPS 2021): every synapse a small LSTM with one shared
parameter set, units that average messages, and the error agents where a label enters.

By default all act on one arrow type, ``tick`` (one tick per example; :data:`SCHEDULE`). Messages
are ``M``-dimensional. Within a tick, forward messages flow through immediate arrows, layer by layer;
backward messages travel on **delayed** arrows, so a synapse hears at tick ``t`` what its
post-unit's synapses (or its output's error) said at tick ``t − 1`` — as in VSML, where a layer
reads the backward messages the next layer produced at the previous tick.

With ``fwd_type="fwd_tick", bwd_type="bwd_tick"`` (:data:`TWO_PHASE_SCHEDULE`) an example takes two
phases instead: a forward sweep, then a backward sweep in which the errors of *this* example travel
back through immediate arrows; a synapse ticks in both, fed ``[fwd, 0]`` and ``[0, bwd]``.

* :class:`VSMLInput` reads ``batch["x"][:, slot]`` and sends ``(x, 0, …, 0)``.
* :class:`VSMLSynapse` (state ``h, c`` per example; ``c0`` per agent, the random part of its
  initial cell state) runs ``micro_ticks`` LSTM ticks on ``[fwd, bwd]`` and sends the read-outs
  ``fwd``/``bwd`` of its last hidden state.
* :class:`VSMLUnit` averages its in-synapses' forward messages (port ``"in"``, mean) and sends the
  average on; :class:`VSMLBack` averages its out-synapses' backward messages and sends them to its
  in-synapses (delayed). An output :class:`VSMLUnit` (``output=True``) sends the prediction
  ``z = b · tanh(m[index] / b)`` instead and keeps it in its field ``z``.
* :class:`VSMLError` (one per output; reads ``batch["y"][:, slot]``) receives its output's ``z``
  and the log-sum-exp of all outputs' ``z`` (port aggregation ``logsumexp``), keeps the
  cross-entropy term ``y (lse − z)`` as its loss and sends ``(p − y, y, 0, …)`` back (delayed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agentgraph.arrows.ports import Port
from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.learners.lstm import lstm_step
from agentgraph.nodes.base import Field, Kind

__all__ = ["SCHEDULE", "TICK", "TWO_PHASE_SCHEDULE", "VSMLBack", "VSMLError", "VSMLInput", "VSMLSynapse",
           "VSMLUnit"]

#: VSML's one arrow type.
TICK = "tick"
#: One tick per step (per example); the loss is read after it.
SCHEDULE = Schedule((Phase(TICK, loss=True),))
#: Two phases per example: forward (the loss is read after it), then backward.
TWO_PHASE_SCHEDULE = Schedule((Phase("fwd_tick", loss=True), Phase("bwd_tick")))


class VSMLInput(Kind):
    """Reads ``batch["x"][:, slot]`` and sends ``(x, 0, …, 0)`` of size ``msg``.

    Example:
        >>> VSMLInput(4).act(TICK, None, {}, {"data": jnp.array([0.5])})[1]["out"].tolist()
        [0.5, 0.0, 0.0, 0.0]
    """

    name = "vsml_input"
    external = "x"

    def __init__(self, msg: int = 8, fwd_type: str = TICK) -> None:
        self.msg = int(msg)
        self.acts_on = (fwd_type,)
        self.arrow_ports = {fwd_type: {"data": Port(1)}}
        self.arrow_outputs = {fwd_type: {"out": self.msg}}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": jnp.zeros(self.msg).at[0].set(inbox["data"][0])}, {}


class VSMLSynapse(Kind):
    """A synapse: an LSTM (``hidden`` units) fed ``[fwd, bwd]`` (``2 msg``) for ``micro_ticks``
    ticks; sends ``h W_fwd + b_fwd`` forward and ``h W_bwd + b_bwd`` backward. Its cell state
    starts (first tick of an episode) at ``c0`` on its first ``rand`` channels, 0 elsewhere.
    With ``c0_scale`` the per-agent field ``c0_scale`` multiplies ``c0`` (``c0_init: fan_in``).
    With two arrow types (``fwd_type != bwd_type``) it ticks in both phases, fed ``[fwd, 0]`` and
    sending ``fwd`` in the forward one, fed ``[0, bwd]`` and sending ``bwd`` in the backward one;
    with ``carried`` (the authors' ``backward_pass``) fed ``[fwd, keep_bwd · bwd_last]`` and
    ``[fwd_last, bwd]`` instead: the other phase's last message (``keep_bwd`` 0 on the output
    layer's synapses, whose error is cleared after the backward sweep). With ``layer_norm`` each
    message is layer-normalised (``eps = 1e-5``) with the parameters ``ln_{fwd,bwd}_{scale,offset}``.
    With ``shared_state`` (kind ``vsml_tied_synapse``: the uses of a convolution kernel entry)
    ``h`` and ``c`` are per-agent fields, so a tie can share them (:mod:`agentgraph.graph.ties`,
    reduction ``mean``: the authors' conv layer averages a kernel entry's LSTM state over its
    positions); a batch of ``B > 1`` examples then moves them by its mean, one learner.

    Example:
        >>> from agentgraph.learners.lstm import init_lstm
        >>> p = init_lstm(jax.random.PRNGKey(0), 8, 6, 4)
        >>> k = VSMLSynapse(msg=4, hidden=6)
        >>> s = {"h": jnp.zeros(6), "c": jnp.zeros(6), "started": 0.0, "c0": jnp.ones(6)}
        >>> s, out, _ = k.act(TICK, p, s, {"fwd": jnp.ones(4), "bwd": jnp.zeros(4)})
        >>> out["fwd"].shape, float(s["started"])
        ((4,), 1.0)
    """

    name = "vsml_synapse"

    def __init__(self, msg: int = 8, hidden: int = 16, micro_ticks: int = 2, rand_fraction: float = 0.5,
                 fwd_type: str = TICK, bwd_type: str = TICK, c0_scale: bool = False, carried: bool = False,
                 layer_norm: bool = False, shared_state: bool = False) -> None:
        self.msg, self.hidden, self.micro_ticks = int(msg), int(hidden), int(micro_ticks)
        self.shared_state = bool(shared_state)
        if self.shared_state:
            self.name = "vsml_tied_synapse"
        self.rand = int(hidden * rand_fraction)
        self.c0_scale, self.fwd_type = bool(c0_scale), fwd_type
        self.carried = bool(carried) and fwd_type != bwd_type
        self.layer_norm = bool(layer_norm)
        per = not self.shared_state  # tied synapses: the LSTM state is per agent (shared by the tie)
        self.fields = {"h": Field((self.hidden,), per_example=per), "c": Field((self.hidden,), per_example=per),
                       "started": Field((), per_example=True), "c0": Field((self.hidden,))}
        if self.c0_scale:  # c0_init: fan_in — the cell starts at c0_scale · c0 (c0_scale = 1/√fan-in)
            self.fields["c0_scale"] = Field((), init=1.0)
        if self.carried:  # two_phase_inputs: carried — each phase also hears the other's last message
            self.fields.update({"fwd_last": Field((self.msg,), per_example=True),
                                "bwd_last": Field((self.msg,), per_example=True), "keep_bwd": Field((), init=1.0)})
        self.acts_on = tuple(dict.fromkeys((fwd_type, bwd_type)))
        self.arrow_ports, self.arrow_outputs = {}, {}
        for t, side in ((fwd_type, "fwd"), (bwd_type, "bwd")):
            self.arrow_ports.setdefault(t, {})[side] = Port(self.msg, "sum")
            self.arrow_outputs.setdefault(t, {})[side] = self.msg

    def act(self, arrow_type, params, state, inbox):
        c0 = state["c0"] * state["c0_scale"] if self.c0_scale else state["c0"]
        c_init = jnp.where(jnp.arange(self.hidden) < self.rand, c0, 0.0)
        c = jnp.where(state["started"] > 0, state["c"], c_init)
        h = state["h"]
        none = jnp.zeros(self.msg)
        fwd, bwd = inbox.get("fwd", none), inbox.get("bwd", none)
        if self.carried:
            if arrow_type == self.fwd_type:
                state = {**state, "fwd_last": fwd}
                bwd = state["keep_bwd"] * state["bwd_last"]
            else:
                state = {**state, "bwd_last": bwd}
                fwd = state["fwd_last"]
        x = jnp.concatenate([fwd, bwd])
        for _ in range(self.micro_ticks):
            h, c = lstm_step(params, x, h, c)
        out = {o: self._read(params, h, o) for o in self.arrow_outputs[arrow_type]}
        return {**state, "h": h, "c": c, "started": jnp.ones_like(state["started"])}, out, {}


    def _read(self, params, h, side):
        m = h @ params[f"w_{side}"] + params[f"b_{side}"]
        if self.layer_norm:  # layer_norm: over the message, learned scale and offset (haiku's LayerNorm)
            mu = jnp.mean(m)
            m = (m - mu) * jax.lax.rsqrt(jnp.mean((m - mu) ** 2) + 1e-5) * params[f"ln_{side}_scale"] + \
                params[f"ln_{side}_offset"]
        return m


class VSMLUnit(Kind):
    """A unit: the mean of its in-synapses' forward messages (port ``"in"``), sent on (hidden) or
    turned into the prediction ``z = bound · tanh(m[index] / bound)`` (``output=True``; stored in
    the per-example field ``z``, sent as a size-1 message ``"z"``).

    Example:
        >>> VSMLUnit(3, output=True, index=1).act(TICK, None, {"z": 0.0}, {"in": jnp.array([0.0, 2.0, 0.0])})[1]["z"].shape
        (1,)
    """

    def __init__(self, msg: int = 8, *, output: bool = False, index: int = 1, bound: float = 100.0,
                 fwd_type: str = TICK) -> None:
        self.msg, self.output, self.index, self.bound = int(msg), bool(output), int(index), float(bound)
        self.name = "vsml_output" if output else "vsml_unit"
        self.fields = {"z": Field(per_example=True)} if output else {}
        self.acts_on = (fwd_type,)
        self.arrow_ports = {fwd_type: {"in": Port(self.msg, "mean")}}
        self.arrow_outputs = {fwd_type: {"z": 1} if output else {"out": self.msg}}

    def act(self, arrow_type, params, state, inbox):
        m = inbox["in"]
        if not self.output:
            return state, {"out": m}, {}
        z = self.bound * jnp.tanh(m[self.index] / self.bound)
        return {**state, "z": z}, {"z": jnp.reshape(z, (1,))}, {}


class VSMLBack(Kind):
    """A unit's backward side: the mean of its out-synapses' backward messages, sent (on delayed
    arrows) to its in-synapses.

    Example:
        >>> VSMLBack(2).act(TICK, None, {}, {"in": jnp.array([1.0, -1.0])})[1]["out"].tolist()
        [1.0, -1.0]
    """

    name = "vsml_back"

    def __init__(self, msg: int = 8, bwd_type: str = TICK) -> None:
        self.msg = int(msg)
        self.acts_on = (bwd_type,)
        self.arrow_ports = {bwd_type: {"in": Port(self.msg, "mean")}}
        self.arrow_outputs = {bwd_type: {"out": self.msg}}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": inbox["in"]}, {}


class VSMLError(Kind):
    """One output's error: reads the label ``y`` (``batch["y"][:, slot]``), its output's ``z`` and
    the log-sum-exp of every output's ``z``; loss ``y (lse − z)`` (the softmax cross-entropy's
    term), backward message ``(softmax(z) − y, y, 0, …)`` (``(softmax(z) − y, 0, …)`` with
    ``feed_label=False``, the authors' default). With ``scaled`` the error is multiplied by the
    group parameter ``error_scale`` (``1/B``, put there by the step of ``error_scale: batch_mean``). With two arrow types it computes both in
    the forward phase, keeps the message in the per-example field ``out`` and sends it in the
    backward phase.

    Example:
        >>> k = VSMLError(4)
        >>> s, out, _ = k.act(TICK, None, {"loss": 0.0}, {"data": jnp.ones(1), "z": jnp.zeros(1), "lse": jnp.zeros(1)})
        >>> out["out"].tolist(), float(s["loss"])
        ([0.0, 1.0, 0.0, 0.0], 0.0)
    """

    name = "vsml_error"
    external = "y"
    loss_field = "loss"

    def __init__(self, msg: int = 8, fwd_type: str = TICK, bwd_type: str = TICK, feed_label: bool = True,
                 scaled: bool = False) -> None:
        self.msg, self.fwd_type, self.feed_label, self.scaled = int(msg), fwd_type, bool(feed_label), bool(scaled)
        self.fields = {"loss": Field(per_example=True), "out": Field((self.msg,), per_example=True)}
        self.acts_on = tuple(dict.fromkeys((fwd_type, bwd_type)))
        self.arrow_ports = {bwd_type: {}, fwd_type: {"data": Port(1), "z": Port(1, "sum"), "lse": Port(1, "logsumexp")}}
        self.arrow_outputs = {fwd_type: {}, bwd_type: {"out": self.msg}}

    def act(self, arrow_type, params, state, inbox):
        if arrow_type == self.fwd_type:
            y, z, lse = inbox["data"][0], inbox["z"][0], inbox["lse"][0]
            err = jnp.exp(z - lse) - y
            if self.scaled:  # error_scale: batch_mean — the step puts 1/B into the params
                err = err * params["error_scale"]
            label = y if self.feed_label else jnp.zeros_like(y)
            state = {**state, "loss": y * (lse - z), "out": jnp.zeros(self.msg).at[0].set(err).at[1].set(label)}
        return state, {o: state["out"] for o in self.arrow_outputs[arrow_type]}, {}
