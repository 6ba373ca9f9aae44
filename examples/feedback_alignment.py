"""A learning rule written outside the library: feedback alignment with meta-learned rates.

The tutorial of ``docs/protocols.md``. Feedback alignment (Lillicrap et al., 2016) sends errors
backwards through fixed random weights ``b`` instead of the forward weights ``w``: a synapse
receives the error ``m`` of its post-unit, sends ``b * m`` to its pre-unit and changes ``w`` by
``-lr * m * x``. Nothing is transported back along the forward weights. What is meta-learned
here: one learning rate per parameter group (per layer's weights, per layer's biases), as
``log lr``, so that a few inner steps of feedback alignment train a fresh network as well as they
can. It runs on any library network (``mlp`` or ``random_dag``).

The whole rule is four pieces of the :class:`~agentgraph.protocols.base.Protocol` contract:

* ``network``: the library kinds, with the synapse replaced by
  :class:`~agentgraph.protocols.feedback.FeedbackSynapse` (the library's kind: ``b · m`` back,
  ``−lr · m · x`` on ``w``), whose extra per-agent field ``b`` a fresh network draws like ``w``;
* ``init``: ``{"log_lr": {group: log(init_lr)}}``;
* ``params``: ``{group: {"lr": exp(log_lr[group])}}`` — what the library kinds read;
* and its settings, validated from the config by the factory's signature.

Use it from a config, run from the repository root (the current directory is searched)::

    protocol:
      rule: "examples.feedback_alignment:feedback_alignment"
      init_lr: 0.3
      feedback_std: 0.05

or from Python: ``resolve({"rule": "examples.feedback_alignment:feedback_alignment"})``
(:func:`agentgraph.protocols.base.resolve`). The library rule ``rule: feedback_alignment``
(:mod:`agentgraph.protocols.feedback`) is the same rule with a meta-learned feedback scale too and
the feedback weights tied like the kernels on a ``cnn``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from agentgraph.network import FieldInit, Network
from agentgraph.protocols.base import Protocol
from agentgraph.protocols.feedback import FeedbackSynapse  # the library's kind (rule: feedback_alignment)

__all__ = ["FeedbackSynapse", "feedback_alignment"]


def feedback_alignment(init_lr: float = 0.3, feedback_std: float = 0.05) -> Protocol:
    """Feedback alignment with one meta-learned learning rate per parameter group.

    Args:
        init_lr: every group's learning rate before meta-training.
        feedback_std: the feedback weights ``b ~ N(0, feedback_std)``, drawn fresh per network.

    Example:
        >>> import jax
        >>> from agentgraph.builders import mlp_network
        >>> p = feedback_alignment(0.5)
        >>> net = p.network(mlp_network([3, 2]))
        >>> learned = p.init(jax.random.PRNGKey(0), net.graph)
        >>> round(float(p.params(learned, {}, net.graph)["synapse:0"]["lr"]), 4)
        0.5
    """
    if init_lr <= 0 or feedback_std <= 0:
        raise ValueError("init_lr and feedback_std must be positive")

    def network(net: Network) -> Network:
        graph = net.graph.with_kinds({"synapse": FeedbackSynapse()})
        inits = [*net.init, FieldInit("synapse", "b", std=feedback_std)]
        return net.with_graph(graph, init=inits)

    def init(key, graph):
        return {"log_lr": {g: jnp.asarray(np.log(init_lr), jnp.float32) for g in graph.groups()}}

    def params(learned, stats, graph):
        return {g: {"lr": jnp.exp(learned["log_lr"][g])} for g in graph.groups()}

    return Protocol(name="feedback_alignment", network=network, init=init, params=params,
                    settings={"init_lr": init_lr, "feedback_std": feedback_std})
