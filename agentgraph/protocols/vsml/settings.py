"""VSML's settings (the ``protocol:`` section with ``rule: vsml``) and the conventions preset.

agentgraph's VSML tick computes the equations of Kirsch & Schmidhuber (2021); where the paper
leaves a choice open, the authors' public code (``louiskirsch/vsml-neurips2021``, default config)
made one, and this library sometimes made another. Each such choice is an option here (defaults:
this library's, so shipped configs and checkpoints behave as before); ``conventions: authors`` sets
all of them to the authors' choices at once, and an option given next to it still wins:

===========  ================================  ==============================================
option       agentgraph (default)              ``conventions: authors``
===========  ================================  ==============================================
feed_label   ``True``: the error message is    ``False``: ``(p − y, 0, …)`` (their
             ``(p − y, y, 0, …)``              ``feed_label: False``)
c0_init      ``fixed``: the random half of a   ``fan_in``: ``N(0, 1/fan_in)``, fan_in the
             synapse's cell ``~ N(0,           number of in-synapses of its post-unit
             init_std)``
param_init   ``normal``: LSTM and read-out     ``truncated``: the same std, truncated at
             weights ``~ N(0, 1/fan_in)``      ±2σ and rescaled (haiku's ``TruncatedNormal``)
batch_merge  ``independent``: ``B`` learners   ``half_mean``: before each tick the first half
                                               of every synapse's ``h``, ``c`` is averaged
                                               over the batch (``B > 1`` only)
error_scale  ``per_example``: ``p − y``        ``batch_mean``: ``(p − y)/B`` (the gradient of
                                               the batch-mean loss; ``B > 1`` only)
two_phase_   ``split``: ``[fwd, 0]`` forward,  ``carried``: ``[fwd, bwd_last]`` forward
inputs       ``[0, bwd]`` backward             (0 on the output layer), ``[fwd_last, bwd]``
             (``two_phase`` only)              backward (their ``backward_pass: True``)
===========  ================================  ==============================================

The step is otherwise the same: same LSTM (gate order ``i, g, f, o``, offsets ``+5``/``−5``),
same messages, means over in-/out-synapses, ``micro_ticks`` ticks on unchanged inputs, backward
messages one tick late, output ``100 tanh(m[1]/100)``
(``benchmarks/vsml_vs_authors.py`` checks this tick by tick against their code).

Example:
    >>> s = VsmlSettings(conventions="authors", feed_label=True)
    >>> s.feed_label, s.c0_init
    (True, 'fan_in')
    >>> VsmlSettings().feed_label
    True
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from agentgraph.protocols.base import fill_preset

__all__ = ["AUTHORS", "PRESETS", "VsmlSettings"]

#: The authors' conventions (``models.VSMLRNN``, ``recurrent.CustomLSTM``, ``configs/default.yaml``).
AUTHORS: dict[str, Any] = {"feed_label": False, "c0_init": "fan_in", "param_init": "truncated",
                           "batch_merge": "half_mean", "error_scale": "batch_mean", "two_phase_inputs": "carried"}

#: ``conventions:`` presets: the options each sets unless given explicitly.
PRESETS: dict[str, dict[str, Any]] = {"agentgraph": {}, "authors": AUTHORS}


class VsmlSettings(pydantic.BaseModel):
    """VSML's settings (module docstring for the conventions).

    Attributes:
        conventions: ``agentgraph`` (the defaults) or ``authors`` (:data:`AUTHORS`); options
            given explicitly win over the preset.
        msg: message size ``M`` (at least 2: the error and the label).
        hidden: LSTM state size of every synapse.
        micro_ticks: LSTM ticks per synapse per example.
        init_std: std of the random half of each synapse's initial cell state (``c0_init: fixed``).
        output_index: which component of an output unit's averaged message is its prediction.
        two_phase: a forward then a backward sweep per example (:func:`~agentgraph.protocols.vsml.vsml`).
        feed_label: the error agents send the label in component 1 of their message, or 0.
        c0_init: ``fixed`` (``N(0, init_std)``) or ``fan_in`` (``N(0, 1/n)``, ``n`` the post-unit's
            number of in-synapses).
        param_init: ``normal`` or ``truncated`` (±2σ, rescaled to the same std) shared parameters.
        batch_merge: ``B > 1``: ``independent`` learners, or ``half_mean``: before every step the
            first half of every synapse's ``h`` and ``c`` is averaged over the batch.
        error_scale: ``per_example`` (``p − y``) or ``batch_mean`` (``(p − y)/B``: the gradient of
            the batch-mean cross-entropy).
        two_phase_inputs: with ``two_phase``: ``split`` (synapses fed ``[fwd, 0]`` forward,
            ``[0, bwd]`` backward) or ``carried`` (the other phase's last message instead of 0;
            the output layer's synapses get 0 backward in the forward sweep).
        layer_norm: layer-normalise every message a synapse sends (learned scale and offset;
            the authors' ``layer_norm``, off in their default config, on in ``deep.yaml``; not in
            the preset).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    conventions: Literal["agentgraph", "authors"] = "agentgraph"
    msg: int = 8
    hidden: pydantic.PositiveInt = 16
    micro_ticks: pydantic.PositiveInt = 2
    init_std: pydantic.NonNegativeFloat = 0.5
    output_index: int = 1
    two_phase: bool = False
    feed_label: bool = True
    c0_init: Literal["fixed", "fan_in"] = "fixed"
    param_init: Literal["normal", "truncated"] = "normal"
    batch_merge: Literal["independent", "half_mean"] = "independent"
    error_scale: Literal["per_example", "batch_mean"] = "per_example"
    two_phase_inputs: Literal["split", "carried"] = "split"
    layer_norm: bool = False

    @pydantic.model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        """Fill the options the ``conventions`` preset sets and the section does not give."""
        return fill_preset(data, PRESETS)
