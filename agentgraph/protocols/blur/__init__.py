"""BLUR (Sandler et al., ICML 2021): bidirectional learned update rules, as a library protocol.

Neurons hold ``k`` states, synapses ``k`` channels; one *genome* ``{nu, mu, nu_t, mu_t ∈ R^{k×k};
f, eta, f_t, eta_t}`` (4k²+4 numbers) is shared by every agent. One inner step (one agent, one
example; ``ν a`` is ``nu @ a``)::

    forward   neuron j:   a_j ← σ(η (Σ_i w_ij ⊙ (ν a_i) + b_j ⊙ (ν e_0)))     (zero-out: a_j starts at 0)
    backward  output j:   a_j[1] ← label_j                               (no update: nothing downstream)
              neuron i:   a_i ← σ(f a_i + η Σ_j w_ij ⊙ (μ a_j))
    update    synapse ij: Δw_ij = (f̃ − 1) w_ij + η̃ (ν̃ᵀ a_i) ⊙ (μ̃ a_j)      (a_i, a_j: the final states)

No loss runs in the inner loop: the labels are injected into channel 1 of the output neurons by
label agents; predictions are channel 0 of the output neurons (a :class:`Readout` of kind
``logits``).

**From a library network** (:func:`blur_network`; ``mlp`` or ``random_dag``, layered or not):
inputs become :class:`BlurInput` (``(x, 0, …)``), synapses :class:`BlurSynapse` (``w [k]``),
every *bias* agent a :class:`BlurNeuron` — it is where a unit sums its synapses — whose bias
``b [k]`` is a synapse from a constant pre-neuron ``e_0 = (1, 0, …)`` (same Hebbian update), the
activation agents :class:`BlurRelay` (they pass states on unchanged: σ is the neuron's), the
loss head is removed, and the units the read-out named become output neurons with label agents.
The arrows are the library's, so non-layered graphs with skip connections and parallel arrows
work as they are.

**Exact BLUR** (``exact=True``, the default): the step has a third phase, ``update``
(:data:`~agentgraph.protocols.blur.network.EXACT_SCHEDULE`), after the backward sweep: every
neuron (through its relays) sends its final state to its synapses, and each synapse updates from
both neurons' final states, as in the paper. ``exact=False`` is the two-sweep approximation this
library shipped first: the synapse update uses the pre-neuron state stored in the forward sweep.

**Conventions** (:mod:`agentgraph.protocols.blur.settings`). By default the engine averages
updates over the inner batch where BLUR sums them (``η̃_here = B · η̃_BLUR``); a bias is a synapse
from ``e_0``; labels are the batch's targets as given (one-hot for classification), the other
output states kept; the backward sweep runs through the forward weights; one σ for every
neuron; the meta-objective is cross-entropy. Each is an option of the ``protocol:`` section, and
``conventions: authors`` sets all of them to the choices of the authors' public code (a bias
neuron of all-ones states, labels ±1 with states 2…k−1 zeroed, separate feedback synapses,
relu∘tanh hidden / tanh output, summed updates, uniform synapse initialisation, their genome
initialisation, L2 on output state 0), under which one step equals their ``network_step``.

**The backprop genome** (:func:`backprop_genome`): with ``k = 2``, σ = identity, channel 1 carries
``a + error`` and the synapses keep two equal channels, one BLUR step's weight and bias updates
are SGD's on the same linear network with an L2 head — checked to 1e-9 in float64 against the
gradient protocol on an ``mlp`` and a ``random_dag`` (``tests/protocols/test_blur.py``). With a
nonlinear σ no 2-state genome is exact (σ is applied to every channel, so the error channel cannot
be multiplied by σ'(z)).

Example:
    >>> import jax
    >>> from agentgraph.builders import mlp_network
    >>> p = blur(k=3)
    >>> net = p.network(mlp_network([4, 3, 2]))
    >>> len(net.graph.agents("blur_synapse")), len(net.graph.agents("blur_label")), net.readout.kind
    (18, 2, 'logits')
    >>> sum(v.size for v in jax.tree.leaves(p.init(jax.random.PRNGKey(0), net.graph)))  # 4k² + 4
    40
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import pydantic

from agentgraph.errors import AgentGraphError
from agentgraph.protocols.base import Protocol, Stepping
from agentgraph.protocols.blur.agents import (
    SIGMAS,
    UPDATE,
    BlurInput,
    BlurLabel,
    BlurNeuron,
    BlurRelay,
    BlurSynapse,
    backprop_genome,
    bias_input,
    init_genome,
)
from agentgraph.protocols.blur.network import EXACT_SCHEDULE, GROUP, blur_network
from agentgraph.protocols.blur.settings import AUTHORS, PRESETS, BlurSettings

__all__ = ["AUTHORS", "EXACT_SCHEDULE", "PRESETS", "SIGMAS", "UPDATE", "BlurInput", "BlurLabel", "BlurNeuron",
           "BlurRelay", "BlurSettings", "BlurSynapse", "GROUP", "backprop_genome", "bias_input", "blur",
           "blur_network", "init_genome", "summed_over_batch"]


def summed_over_batch(params: dict[str, Any], batch_size: Any) -> dict[str, Any]:
    """The groups' params with BLUR's ``eta_t`` multiplied by the inner batch size: the engine
    averages updates over the batch, so this makes them the authors' sums
    (``batch_update: sum``; the decay term ``(f̃ − 1) w`` is the same either way).

    Example:
        >>> float(summed_over_batch({GROUP: {"eta_t": jnp.asarray(0.5)}}, 4)[GROUP]["eta_t"])
        2.0
    """
    g = params[GROUP]
    return {**params, GROUP: {**g, "eta_t": g["eta_t"] * batch_size}}


def _summed_step(inner, program, params, state, batch, stage, phase):
    return program.step(summed_over_batch(params, jnp.shape(batch["x"])[0]), state, batch)


def blur(**settings: Any) -> Protocol:
    """BLUR as a :class:`~agentgraph.protocols.base.Protocol` (config ``protocol: {rule: blur}``),
    with :class:`~agentgraph.protocols.blur.settings.BlurSettings` (``k``, ``sigma``, ``init_std``,
    ``genome_scale``, ``exact`` and the conventions; ``conventions: authors`` for the authors'
    code). ``batch_update: sum`` is a :class:`~agentgraph.protocols.base.Stepping` that scales
    ``eta_t`` by the batch size (:func:`summed_over_batch`).

    Example:
        >>> blur(conventions="authors").settings["feedback"]
        'separate'
    """
    try:
        s = BlurSettings(**settings)
    except pydantic.ValidationError as e:
        lines = [f"protocol.{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise AgentGraphError("invalid settings for rule 'blur': " + "; ".join(lines)) from None
    if s.k < 2:
        raise AgentGraphError(f"protocol.k must be at least 2 (channel 1 holds the label), got {s.k}.")
    k = s.k
    return Protocol(
        name="blur",
        network=lambda net: blur_network(net, k, s.sigma, s.init_std, s.exact, output_sigma=s.output_sigma,
                                         bias_state=s.bias_state, label_states=s.label_states,
                                         label_coding=s.label_coding, feedback=s.feedback,
                                         synapse_init=s.synapse_init, init_range=s.init_range,
                                         objective=s.objective),
        init=lambda key, graph: init_genome(k, key, s.genome_scale, s.genome_init),
        params=lambda learned, stats, graph: {GROUP: learned},
        stepping=Stepping(step=_summed_step) if s.batch_update == "sum" else None,
        settings=s.model_dump(),
    )


blur.Config = BlurSettings  # type: ignore[attr-defined]
