"""MPLP as a :class:`~agentgraph.protocols.base.Protocol` (config ``protocol: {rule: mplp, ...}``).

The settings (:class:`MPLPSettings`) are the learners' shape and sharing plus MPLP's own
meta-training options: the normalisation's calibration, the warm start by imitation and the
optional gradient input. Meta-training reaches them only through the contract's hooks:
its :class:`~agentgraph.protocols.base.Calibration` (normalisation), :class:`~agentgraph.protocols.base.Stepping`
(gradient input) and :class:`~agentgraph.protocols.base.WarmStart` (imitation).

Example:
    >>> from agentgraph.builders import mlp_network
    >>> import jax
    >>> p = mplp(k=2, hidden=2, mlp=[8], sharing="kind")
    >>> net = p.network(mlp_network([4, 3, 2]))
    >>> learned = p.init(jax.random.PRNGKey(0), net.graph)
    >>> sorted(learned)
    ['activation', 'bias', 'loss', 'softmax', 'synapse']
    >>> p.params(learned, p.init_stats(net.graph), net.graph)["synapse:1"]["in_mean"].shape
    (4,)
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from agentgraph.protocols.base import Calibration, Protocol, Stepping, WarmStart
from agentgraph.protocols.mplp import agents as mk
from agentgraph.protocols.mplp import sharing as sh

__all__ = ["MPLPSettings", "mplp"]


class MPLPSettings(pydantic.BaseModel):
    """MPLP's settings (the ``protocol:`` section with ``rule: mplp``)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    k: pydantic.PositiveInt = 4
    hidden: pydantic.NonNegativeInt = 7
    stateful: bool = True
    mlp: list[pydantic.PositiveInt] = [80, 40]
    sharing: Literal["group", "kind", "all"] = "group"
    premap: bool = False
    # initial size of the learned update, 0.2 x the usual weight std 0.05
    out_scale: pydantic.PositiveFloat = 0.01
    # the per-example gradient step as an extra learner input of weights and biases (paper §5):
    # "none"; "always" (training and evaluation: not a gradient-free protocol); "train" (scaled
    # from 1 down to 0 over grad_input_anneal meta-steps, zero afterwards and at evaluation)
    grad_input: Literal["none", "train", "always"] = "none"
    grad_input_anneal: pydantic.PositiveInt = 500
    # the learner-input normalisation, measured over this many simulated inner loops, blended
    calibration_rounds: pydantic.NonNegativeInt = 5
    calibration_blend: float = pydantic.Field(0.5, ge=0.0, le=1.0)
    # warm start by imitation: the first imitation_steps meta-steps fit the protocol's messages and
    # updates to backprop's / SGD(imitation_lr)'s on the first imitation_unroll inner steps
    # (agentgraph.protocols.mplp.imitation); schedules (schedules.unroll) and the gradient fade count the
    # meta-steps after them
    imitation_steps: pydantic.NonNegativeInt = 0
    imitation_lr: pydantic.PositiveFloat = 1.0
    imitation_unroll: pydantic.PositiveInt = 4
    imitation_meta_lr: pydantic.PositiveFloat | None = None  # the meta-optimiser's rate while imitating

    def kinds_config(self) -> mk.MPLPConfig:
        """The kinds' learner shape."""
        return mk.MPLPConfig(k=self.k, hidden=self.hidden, stateful=self.stateful, mlp=tuple(self.mlp),
                             premap=self.premap, grad_input=self.grad_input != "none")


def mplp(**settings: Any) -> Protocol:
    """The MPLP protocol with :class:`MPLPSettings` (module example).

    Capabilities: ``calibration`` measures the learner-input normalisation; ``stepping`` writes the
    gradient input before each step when ``grad_input`` is on, and its ``stage`` switches a fading
    gradient input off once it is zero; ``warm_start`` is the imitation of backprop (``imitation_steps``).
    """
    st = MPLPSettings(**settings)
    config, sharing = st.kinds_config(), st.sharing

    def network(net):
        mk.check_supported(net.graph)
        return net.with_graph(net.graph.with_kinds(mk.kinds(config, sharing)))

    def init(key, graph):
        return sh.init_meta(graph, key, config, sharing, weight_std=5.0 * st.out_scale)

    def params(learned, stats, graph):
        return sh.assemble(learned, stats, sh.share_keys(graph, sharing))

    def init_stats(graph):
        return sh.init_norm(graph, config, sharing)

    def calibrate(learned, stats, inner, sample, key, pool):
        from agentgraph.protocols.mplp.calibration import calibrate as measure

        return measure(inner, config, sharing, learned, stats, sample, key, pool, st.calibration_rounds,
                       st.calibration_blend)

    def transfer_stats(trained, measured):  # the learned update offset stays the trained one
        return {k: {**measured[k], "out_mean": trained[k]["out_mean"]} for k in measured}

    def stage(phase):
        from agentgraph.protocols.mplp.gradient_input import eval_scale, train_scale

        if phase is None:
            return "feed" if eval_scale(st.grad_input) is not None else None
        return "feed" if train_scale(st.grad_input, st.grad_input_anneal, phase) is not None else None

    def step(inner, program, params_, state, batch, stage_, phase):
        from agentgraph.protocols.mplp.gradient_input import (
            eval_scale,
            train_scale,
            with_gradient,
        )

        if stage_ == "feed":
            scale = eval_scale(st.grad_input) if phase is None else train_scale(st.grad_input, st.grad_input_anneal, phase)
            state = with_gradient(inner, state, batch, scale)
        return program.step(params_, state, batch)

    warm = None
    if st.imitation_steps:
        def make(inner, unroll):
            from agentgraph.protocols.mplp.gradient_input import train_scale
            from agentgraph.protocols.mplp.imitation import (
                make_imitation,
                task_imitation_loss,
            )

            imit = make_imitation(inner, st)
            scale = train_scale(st.grad_input, st.grad_input_anneal, 0)
            return lambda learned, stats, task, w0: task_imitation_loss(learned, stats, inner, task, w0, imit, unroll,
                                                                        scale)

        def prepare(learned, stats, inner, task, w0):
            from agentgraph.protocols.mplp.imitation import (
                make_imitation,
                matched_out_scale,
            )

            return matched_out_scale(learned, stats, inner, make_imitation(inner, st), task, w0)

        warm = WarmStart(st.imitation_steps, make, prepare, st.imitation_meta_lr)

    return Protocol(name="mplp", network=network, init=init, params=params,
                    calibration=Calibration(init_stats, calibrate, transfer_stats), warm_start=warm,
                    stepping=Stepping(step, stage) if st.grad_input != "none" else None,
                    gradient_free=st.grad_input != "always", settings=st)


mplp.Config = MPLPSettings  # type: ignore[attr-defined]
