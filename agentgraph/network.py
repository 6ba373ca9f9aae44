"""What an inner network is, independent of any learning rule: a graph, how fresh networks draw
their weights, and where predictions are read.

A :class:`Network` bundles an :class:`~agentgraph.graph.AgentGraph` with its weight initialisers
(:class:`FieldInit`) and its read-out (:class:`Readout`). Builders (:mod:`agentgraph.builders`)
make them; protocols (:mod:`agentgraph.protocols`) map them onto their own kinds; meta-training
draws fresh networks (:func:`fresh_weights`), puts weights into a compiled program's state
(:func:`with_weights`), reads predictions (:func:`read`) and scores them
(:func:`prediction_loss`, :func:`accuracy`). This module sits below ``builders`` and
``protocols``: it imports neither.

Example:
    >>> import jax
    >>> from agentgraph.builders import mlp_network
    >>> from agentgraph.compiler import compile
    >>> net = mlp_network([3, 2])
    >>> prog = compile(net.graph)
    >>> w = fresh_weights(net.init, jax.random.PRNGKey(0), prog.init(1))
    >>> sorted(w), w["synapse"]["w"].shape
    (['bias', 'synapse'], (6,))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from agentgraph.errors import AgentGraphError

__all__ = ["FieldInit", "Network", "Readout", "accuracy", "fresh_weights", "prediction_loss", "read", "weights_of",
           "with_weights"]


class FieldInit(NamedTuple):
    """How a fresh network draws one per-agent field: ``value = mean + std * N(0, 1)`` for every
    agent of ``kind`` (``std = 0``: the constant ``mean``). Shapes come from the program's state.
    ``dist="uniform"`` draws ``mean + std * U(-1, 1)`` instead: ``std`` is then the half-width
    (BLUR's authors initialise synapses uniformly).

    Example:
        >>> FieldInit("synapse", "w", std=0.05).std
        0.05
    """

    kind: str
    field: str
    std: float = 0.0
    mean: float = 0.0
    dist: Literal["normal", "uniform"] = "normal"


class Readout(NamedTuple):
    """Where a network's predictions are read: ``state[agent][field]`` (``[index]`` of a vector
    field) for ``agents`` in output order, and what the values are: ``"probs"`` (class
    probabilities), ``"logits"`` (scores turned into probabilities by a softmax) or ``"values"``
    (regression outputs).

    Example:
        >>> Readout((("softmax", 0), ("softmax", 1)), "p", kind="probs").kind
        'probs'
    """

    agents: tuple[Hashable, ...]
    field: str
    index: int | None = None
    kind: Literal["probs", "logits", "values"] = "values"


@dataclasses.dataclass(frozen=True)
class Network:
    """An inner network family: a graph, how fresh networks draw their per-agent fields, and
    where predictions are read.

    Attributes:
        graph: the agent graph.
        init: the per-agent fields a fresh network draws (:class:`FieldInit`); fields not named
            keep the graph's declared values. These fields are the network's *weights*: what a
            gradient optimiser trains, what a MAML prior learns, what a prior pool stores.
        readout: the predictions (``None``: the network has no designated outputs).

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> net = mlp_network([4, 3, 2])
        >>> [i.kind for i in net.init], net.readout.field
        (['synapse', 'bias'], 'p')
    """

    graph: Any
    init: tuple[FieldInit, ...] = ()
    readout: Readout | None = None

    def with_graph(self, graph: Any, init: Sequence[FieldInit] | None = None,
                   readout: Readout | None = None) -> Network:
        """The same network family on ``graph`` (and, if given, other initialisers / read-out)."""
        return Network(graph, tuple(self.init if init is None else init), self.readout if readout is None else readout)


def weights_of(init: Sequence[FieldInit], state: dict) -> dict[str, dict[str, jax.Array]]:
    """The network's weights ``{kind: {field: [N_kind, ...]}}`` (the fields ``init`` names) in
    a program state.

    Example:
        >>> weights_of([FieldInit("k", "w")], {"k": {"w": jnp.ones(2), "x": jnp.zeros((2, 3))}})["k"]["w"].shape
        (2,)
    """
    out: dict[str, dict[str, jax.Array]] = {}
    for fi in init:
        if fi.kind not in state or fi.field not in state[fi.kind]:
            raise AgentGraphError(f"The network's initialiser names field {fi.kind}.{fi.field}, which the compiled "
                                  f"graph does not have (its kinds: {sorted(state)}); check the builder's FieldInit list "
                                  "— a kind substituted with with_kinds keeps the name of the kind it replaces.")
        out.setdefault(fi.kind, {})[fi.field] = state[fi.kind][fi.field]
    return out


def with_weights(state: dict, weights: dict[str, dict[str, jax.Array]]) -> dict:
    """``state`` with the fields in ``weights`` replaced (cast to the state's dtype).

    Example:
        >>> s = with_weights({"k": {"w": jnp.zeros(2)}}, {"k": {"w": jnp.ones(2)}})
        >>> s["k"]["w"].tolist()
        [1.0, 1.0]
    """
    out = dict(state)
    for kind, fields in weights.items():
        missing = [f for f in fields if f not in state.get(kind, {})]
        if missing:
            raise AgentGraphError(f"Weights for {kind}.{missing[0]}, which this program's state does not have "
                                  f"(its {kind!r} fields: {sorted(state.get(kind, {}))}).")
        out[kind] = {**state[kind], **{f: v.astype(state[kind][f].dtype) for f, v in fields.items()}}
    return out


def fresh_weights(init: Sequence[FieldInit], key: jax.Array, state: dict) -> dict[str, dict[str, jax.Array]]:
    """Draw a fresh network's weights for a program ``state`` (shapes and dtypes from it).

    Example:
        >>> w = fresh_weights([FieldInit("k", "w", std=1.0)], jax.random.PRNGKey(0), {"k": {"w": jnp.zeros(3)}})
        >>> w["k"]["w"].shape
        (3,)
    """
    current = weights_of(init, state)
    out: dict[str, dict[str, jax.Array]] = {}
    drawn = [fi for fi in init if fi.std]
    keys = [key] if len(drawn) == 1 else list(jax.random.split(key, max(1, len(drawn))))  # one field: the key itself
    for fi in init:
        k = keys.pop(0) if fi.std else None
        ref = current[fi.kind][fi.field]
        if not fi.std:
            val = jnp.full(ref.shape, fi.mean)
        elif fi.dist == "uniform":
            val = fi.mean + fi.std * jax.random.uniform(k, ref.shape, minval=-1.0, maxval=1.0)
        else:
            val = fi.mean + fi.std * jax.random.normal(k, ref.shape)
        out.setdefault(fi.kind, {})[fi.field] = val.astype(ref.dtype)
    return out


def read(program: Any, state: dict, readout: Readout) -> jax.Array:
    """The predictions ``[B, n_out]`` a :class:`Readout` names.

    Example:
        >>> import numpy as np
        >>> from agentgraph.builders import mlp_network
        >>> from agentgraph.compiler import compile
        >>> net = mlp_network([2, 2], loss="l2")
        >>> prog = compile(net.graph)
        >>> s, _ = prog.forward(None, prog.init(3), {"x": np.ones((3, 2)), "y": np.zeros((3, 2))})
        >>> read(prog, s, net.readout).shape
        (3, 2)
    """
    if readout is None:
        raise AgentGraphError("This network has no read-out (Network.readout is None); give the builder's "
                              "Network a Readout naming its output agents.")
    vals = program.read(state, list(readout.agents), readout.field)
    if readout.index is not None:
        vals = vals[..., readout.index]
    return vals


def prediction_loss(pred: jax.Array, y: jax.Array, kind: str) -> jax.Array:
    """Per-example loss ``[B]`` of predictions against targets: cross-entropy for ``probs`` /
    ``logits`` (targets one-hot, or ±1 labels: their argmax is the class), half squared error
    summed over outputs for ``values``.

    Example:
        >>> float(prediction_loss(jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]]), "logits")[0])  # log 2
        0.6931471824645996
    """
    if kind == "values":
        return 0.5 * jnp.sum((y - pred) ** 2, -1)
    onehot = jax.nn.one_hot(jnp.argmax(y, -1), y.shape[-1], dtype=pred.dtype)
    logp = jax.nn.log_softmax(pred, -1) if kind == "logits" else jnp.log(jnp.clip(pred, 1e-7, 1.0))
    return -jnp.sum(onehot * logp, -1)


def accuracy(pred: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example ``[B]`` 0/1: the predicted class is the target's.

    Example:
        >>> accuracy(jnp.array([[0.2, 0.8]]), jnp.array([[0.0, 1.0]])).tolist()
        [1.0]
    """
    return (jnp.argmax(pred, -1) == jnp.argmax(y, -1)).astype(pred.dtype)
