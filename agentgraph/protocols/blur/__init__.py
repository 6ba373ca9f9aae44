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

**Differences from the paper.** The engine averages updates over the inner batch where BLUR sums
them (``η̃_here = B · η̃_BLUR``); biases are a library-network addition. Labels are the batch's
targets as given (one-hot for classification).

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

from typing import Literal

from agentgraph.errors import AgentGraphError
from agentgraph.protocols.base import Protocol
from agentgraph.protocols.blur.agents import (
    SIGMAS,
    UPDATE,
    BlurInput,
    BlurLabel,
    BlurNeuron,
    BlurRelay,
    BlurSynapse,
    backprop_genome,
    init_genome,
)
from agentgraph.protocols.blur.network import EXACT_SCHEDULE, GROUP, blur_network

__all__ = ["EXACT_SCHEDULE", "SIGMAS", "UPDATE", "BlurInput", "BlurLabel", "BlurNeuron", "BlurRelay", "BlurSynapse",
           "GROUP", "backprop_genome", "blur", "blur_network", "init_genome"]


def blur(k: int = 2, sigma: Literal["tanh", "sigmoid", "relu", "identity"] = "tanh", init_std: float = 0.1,
         genome_scale: float = 0.5, exact: bool = True) -> Protocol:
    """BLUR as a :class:`~agentgraph.protocols.base.Protocol` (config ``protocol: {rule: blur}``).

    Args:
        k: states per neuron / channels per synapse.
        sigma: the neurons' nonlinearity.
        init_std: fresh synapse channels ``~ N(0, init_std)`` (biases start at 0).
        genome_scale: the random genome's matrix scale (:func:`init_genome`).
        exact: synapses update after the backward sweep from both neurons' final states (the
            paper's rule); ``False``: the two-sweep approximation (stored pre-neuron state).
    """
    if k < 2:
        raise AgentGraphError(f"protocol.k must be at least 2 (channel 1 holds the label), got {k}.")
    return Protocol(
        name="blur",
        network=lambda net: blur_network(net, k, sigma, init_std, exact),
        init=lambda key, graph: init_genome(k, key, genome_scale),
        params=lambda learned, stats, graph: {GROUP: learned},
        settings={"k": k, "sigma": sigma, "init_std": init_std, "genome_scale": genome_scale, "exact": exact},
    )
