"""BLUR's settings (the ``protocol:`` section with ``rule: blur``) and the conventions preset.

agentgraph's BLUR step computes the equations of Sandler et al. (2021); where the paper leaves a
choice open, the authors' public code (google-research ``blur/``) made one, and this library's
defaults sometimes made another. Every such choice is an option here (defaults: this library's,
so shipped configs and checkpoints behave as before); ``conventions: authors`` sets all of them
to the authors' choices at once, and an option given next to it still wins:

============  ===========================  =================================================
option        agentgraph (default)         ``conventions: authors``
============  ===========================  =================================================
bias_state    ``e0``: bias pre-neuron      ``ones``: every state 1, so the genome's
              ``(1, 0, …, 0)``             transforms act on it
label_states  ``keep``: states 2…k−1 kept  ``zero``: zeroed when the label is written
label_coding  ``as_given`` (one-hot)       ``pm1``: ``2y − 1`` (±1 one-vs-rest)
feedback      ``tied``: backward uses w    ``separate``: own matrix ``wb``, own init, Hebbian
                                           rule with pre and post roles swapped
sigma         ``tanh``                     ``relu_tanh`` (hidden neurons, both sweeps)
output_sigma  ``None`` (= sigma)           ``tanh`` (the last layer)
batch_update  ``mean`` over the batch      ``sum`` over the batch
synapse_init  ``normal``: w ~ N(0,         ``uniform``: w, wb, b ~ U(−init_range,
              init_std), b = 0             init_range), bias row included
init_range    1.0                          1.0
genome_init   ``agentgraph``               ``authors``: matrices ~ N(0, genome_scale²),
                                           f = η = f̃ = 1, η̃ = −1e-3
genome_scale  0.5                          1.0
objective     ``cross_entropy`` (softmax   ``l2``: squared error of output state 0 (against
              of output state 0)           ±1 labels with ``pm1``)
exact         ``True``                     ``True``
============  ===========================  =================================================

Example:
    >>> s = BlurSettings(conventions="authors", feedback="tied")
    >>> s.bias_state, s.feedback, s.batch_update
    ('ones', 'tied', 'sum')
    >>> BlurSettings().bias_state
    'e0'
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from agentgraph.protocols.base import fill_preset

__all__ = ["AUTHORS", "BlurSettings", "PRESETS", "Sigma"]

#: The neurons' nonlinearities (``relu_tanh``: relu∘tanh, the authors' hidden activation).
Sigma = Literal["tanh", "sigmoid", "relu", "identity", "relu_tanh"]

#: The authors' conventions (google-research ``blur/``: ``default_network_spec``,
#: ``concat_groundtruth_in``, ``create_random_genome``, ``random_initializer``, ``l2_score``).
AUTHORS: dict[str, Any] = {
    "bias_state": "ones", "label_states": "zero", "label_coding": "pm1", "feedback": "separate",
    "sigma": "relu_tanh", "output_sigma": "tanh", "batch_update": "sum", "synapse_init": "uniform",
    "init_range": 1.0, "genome_init": "authors", "genome_scale": 1.0, "objective": "l2", "exact": True,
}

#: ``conventions:`` presets: the options each sets unless given explicitly.
PRESETS: dict[str, dict[str, Any]] = {"agentgraph": {}, "authors": AUTHORS}


class BlurSettings(pydantic.BaseModel):
    """BLUR's settings (module docstring for the conventions).

    Attributes:
        conventions: ``agentgraph`` (the defaults below) or ``authors`` (:data:`AUTHORS`);
            options given explicitly win over the preset.
        k: states per neuron / channels per synapse (at least 2: state 1 holds the label).
        sigma: the hidden neurons' nonlinearity (both sweeps).
        output_sigma: the output neurons' nonlinearity (forward sweep); ``None``: ``sigma``.
        init_std: fresh synapse channels ``~ N(0, init_std)`` (``synapse_init: normal``).
        init_range: fresh synapses, feedback synapses and biases ``~ U(−init_range, init_range)``
            (``synapse_init: uniform``).
        synapse_init: ``normal`` (biases start at 0) or ``uniform`` (biases drawn too).
        genome_scale: the random genome's matrix scale (:func:`~agentgraph.protocols.blur.init_genome`).
        genome_init: ``agentgraph`` (``N(0, scale²/k)``, f = 0.5, η = 1, f̃ = 1, η̃ = 0.05) or
            ``authors`` (``N(0, scale²)``, f = η = f̃ = 1, η̃ = −1e-3).
        exact: synapses update after the backward sweep from both neurons' final states.
        bias_state: the constant pre-neuron a bias synapse reads: ``e0`` = ``(1, 0, …, 0)`` or
            ``ones`` = ``(1, …, 1)``.
        label_states: ``keep`` output states 2…k−1 when the label is written into state 1, or
            ``zero`` them.
        label_coding: the label written into state 1: the target ``as_given`` or ``pm1``
            (``2y − 1``: one-hot targets become ±1 one-vs-rest labels).
        feedback: ``tied`` (backward messages through the forward weight ``w``) or ``separate``
            (a feedback weight ``wb`` per synapse, drawn like ``w``, updated by the Hebbian rule
            with pre- and post-neuron swapped).
        batch_update: the synapse and bias updates are the ``mean`` or the ``sum`` over the
            inner batch (``sum``: η̃ is multiplied by the batch size at every step).
        objective: what the meta-objective scores: ``cross_entropy`` (output state 0 as logits)
            or ``l2`` (output state 0 as values; with ``pm1`` read as ``(a₀ + 1)/2``, so the
            squared error against one-hot targets is ``1/8 Σ_j (a₀ⱼ − (2yⱼ − 1))²``).
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    conventions: Literal["agentgraph", "authors"] = "agentgraph"
    k: int = 2
    sigma: Sigma = "tanh"
    output_sigma: Sigma | None = None
    init_std: pydantic.NonNegativeFloat = 0.1
    init_range: pydantic.PositiveFloat = 1.0
    synapse_init: Literal["normal", "uniform"] = "normal"
    genome_scale: pydantic.NonNegativeFloat = 0.5
    genome_init: Literal["agentgraph", "authors"] = "agentgraph"
    exact: bool = True
    bias_state: Literal["e0", "ones"] = "e0"
    label_states: Literal["keep", "zero"] = "keep"
    label_coding: Literal["as_given", "pm1"] = "as_given"
    feedback: Literal["tied", "separate"] = "tied"
    batch_update: Literal["mean", "sum"] = "mean"
    objective: Literal["cross_entropy", "l2"] = "cross_entropy"

    @pydantic.model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        """Fill the options the ``conventions`` preset sets and the section does not give."""
        return fill_preset(data, PRESETS)
