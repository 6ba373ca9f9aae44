"""MPLP (Randazzo et al. 2020): the learned message-passing learning protocol, as kinds.

Each library kind gets an MPLP counterpart with the **same forward** and a **learned backward**:
the agent standardises its learner inputs, runs its group's learner and

* sends the last ``k`` channels of the learner's output as its backward message (ports take
  size ``k`` with *mean* aggregation, paper eq. 5);
* if it owns a parameter (synapse ``w``, bias ``b``), changes it by
  ``(out[0] - out_mean) * out_scale`` (averaged over the inner batch by the engine, eq. 4).

Stateful learners (default) are GRUs (:func:`~agentgraph.learners.gru_step`) whose carry —
``[update | hidden | k message]`` — is kept per agent and per inner-batch slot in the per-example
field ``carry``. Stateless learners are two MLPs, ``f`` (update) and ``g`` (message).

Learner inputs (REFERENCE.md §1): synapse ``[m (k), w, x]``; bias ``[m (k), b, z]``; activation
``[m (k), pre-activation]``; softmax ``[m (k), logit, logit - max, exp(logit - max),
sum exp(logits - max)]``; loss ``[loss, prediction, target, log(clip(prediction)) (CE) or
target - prediction (L2)]``. The loss agent's first input is its seed, the stored ``[loss]``.

Use :func:`kinds` to get the kind table and :func:`init_params` for a graph's parameters;
``graph.with_kinds(mplp.kinds(...))`` turns any library graph into an MPLP graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from agentgraph.arrows.ports import Port
from agentgraph.errors import AgentGraphError
from agentgraph.learners.gru import gru_step, init_gru
from agentgraph.learners.mlp import apply_mlp, init_mlp
from agentgraph.nodes.activations import ACTIVATIONS
from agentgraph.nodes.base import Field, Kind
from agentgraph.nodes.registry import default_kinds

__all__ = ["MPLPConfig", "MPLPKind", "kinds", "init_params", "n_features"]


@dataclasses.dataclass(frozen=True)
class MPLPConfig:
    """Learner shape.

    Attributes:
        k: message size (sinusoid 8, MNIST 4).
        hidden: GRU hidden channels besides update and message (sinusoid 15, MNIST 7).
        stateful: GRU learners (True) or stateless f/g MLPs (False).
        mlp: hidden layer sizes of the learners' networks.
    """

    k: int = 4
    hidden: int = 7
    stateful: bool = True
    mlp: tuple[int, ...] = (80, 40)


def _features(base: str, state: Mapping, m: jax.Array) -> jax.Array:
    """The learner inputs of one agent (one example) of library kind ``base``."""
    if base == "synapse":
        return jnp.concatenate([m, state["w"][None], state["x"][None]])
    if base == "bias":
        return jnp.concatenate([m, state["b"][None], state["z"][None]])
    if base == "softmax":
        d = state["x"] - state["mx"]
        return jnp.concatenate([m, jnp.stack([state["x"], d, jnp.exp(d), jnp.exp(state["lse"] - state["mx"])])])
    if base == "l2":
        return jnp.stack([state["loss"], state["pred"], state["target"], state["target"] - state["pred"]])
    if base == "cross_entropy":
        logp = jnp.log(jnp.clip(state["pred"], 1e-7, 1 - 1e-7))
        return jnp.stack([state["loss"], state["pred"], state["target"], logp])
    if base in ACTIVATIONS:
        return jnp.concatenate([m, state["x"][None]])
    raise AgentGraphError(f"MPLP has no learner inputs for kind {base!r}.")


def n_features(base: str, k: int) -> int:
    """Learner input size for library kind ``base``.

    Example:
        >>> n_features("synapse", 4), n_features("cross_entropy", 4)
        (6, 4)
    """
    if base in ("synapse", "bias"):
        return k + 2
    if base == "softmax":
        return k + 4
    if base in ("l2", "cross_entropy"):
        return 4
    if base in ACTIVATIONS:
        return k + 1
    raise AgentGraphError(f"MPLP has no learner inputs for kind {base!r}.")


_PARAM_FIELD = {"synapse": "w", "bias": "b"}


class MPLPKind(Kind):
    """A library kind with MPLP's learned backward (see module docstring).

    Args:
        base: the library kind whose forward this kind keeps.
        config: learner shape.

    Example:
        >>> from agentgraph.nodes import Synapse
        >>> k = MPLPKind(Synapse(), MPLPConfig(k=4, hidden=7))
        >>> k.fields["carry"].shape, k.backward_ports["m"]
        ((12,), Port(size=4, aggregation='mean'))
    """

    def __init__(self, base: Kind, config: MPLPConfig) -> None:
        self.base = base
        self.config = config
        self.name = base.name
        self.param = _PARAM_FIELD.get(base.name)
        k = config.k
        self.carry_size = (1 if self.param else 0) + config.hidden + k
        fields = dict(base.fields)
        if config.stateful:
            fields["carry"] = Field(shape=(self.carry_size,), per_example=True)
        self.fields = fields
        self.forward_ports = dict(base.forward_ports)
        self.forward_outputs = dict(base.forward_outputs)
        self.external = base.external
        self.loss_field = base.loss_field
        self.is_loss = base.loss_field is not None
        if base.runs("backward"):
            self.backward_ports = {p: Port(k, "mean") for p in base.backward_ports}
            self.backward_outputs = {o: k for o in base.backward_outputs}
        else:
            self.backward_ports, self.backward_outputs = {}, {}

    def forward(self, params, state, inputs):
        new, out = self.base.forward(None, {f: state[f] for f in self.base.fields}, inputs)
        return {**state, **new}, out

    def runs(self, sweep: str) -> bool:  # backward iff the base kind takes part in it
        if sweep == "forward":
            return self.base.runs("forward")
        if sweep == "backward":
            return self.base.runs("backward")
        return False

    def backward(self, params, state, messages):
        k = self.config.k
        if self.base.name == "softmax_norm":  # MPLP's softmax units need no normaliser message
            return state, jnp.zeros((k,)), {}
        m = messages.get("m", jnp.zeros((k,)))
        x = _features(self.base.name, state, m)
        x = (x - params["in_mean"]) * params["in_inv_std"]
        if self.config.stateful:
            c = gru_step(params["learner"], x, state["carry"])
            state = {**state, "carry": c}
            msg, upd = c[-k:], c[0]
        else:
            msg = apply_mlp(params["learner"]["g"], x, hidden="relu", final="tanh")
            upd = apply_mlp(params["learner"]["f"], x, hidden="relu", final="tanh")[0] if self.param else 0.0
        outs = {o: msg for o in self.backward_outputs}
        update = {}
        if self.param:
            update[self.param] = (upd - params["out_mean"]) * params["out_scale"]
        return state, outs, update

    def _identity(self) -> tuple:
        return (type(self), self.name, self.base._identity(), self.config)


def kinds(config: MPLPConfig = MPLPConfig()) -> dict[str, Kind]:
    """The MPLP kind table: every library kind with a learned backward.

    Example:
        >>> sorted(kinds())[:3]
        ['bias', 'cross_entropy', 'identity']
    """
    return {name: MPLPKind(base, config) for name, base in default_kinds().items()}


def init_params(graph, key: jax.Array, config: MPLPConfig = MPLPConfig(), weight_std: float = 0.05) -> dict[str, Any]:
    """Fresh MPLP parameters for every group of ``graph`` whose kind learns.

    Each group gets ``{"learner": ..., "in_mean": [F], "in_inv_std": [F], "out_mean": (),
    "out_scale": ()}`` with identity normalisation and ``out_scale = 0.2 * weight_std``.

    Example:
        >>> import jax
        >>> from agentgraph import mlp
        >>> p = init_params(mlp([2, 3, 2]), jax.random.PRNGKey(0))
        >>> sorted(p)[:3], p["synapse:0"]["in_mean"].shape
        (['bias:0', 'bias:1', 'cross_entropy'], (6,))
    """
    A = graph.arrays()
    out = {}
    groups = sorted(set(zip(A.group.tolist(), A.kind.tolist())))
    keys = jax.random.split(key, max(1, len(groups)))
    for (g, kd), gk in zip(groups, keys):
        gname, kname = A.group_names[g], A.kind_names[kd]
        base = default_kinds().get(kname)
        if base is None or not base.runs("backward") or kname == "softmax_norm":
            continue
        if gname in out:
            raise AgentGraphError(f"Group {gname!r} mixes kinds; MPLP learners are per kind.")
        F = n_features(kname, config.k)
        param = kname in _PARAM_FIELD
        if config.stateful:
            learner = init_gru(gk, F, (1 if param else 0) + config.hidden + config.k, config.mlp)
        else:
            kf, kg = jax.random.split(gk)
            learner = {"f": init_mlp(kf, [F, *config.mlp, 1]), "g": init_mlp(kg, [F, *config.mlp, config.k])}
        out[gname] = {
            "learner": learner,
            "in_mean": jnp.zeros((F,)),
            "in_inv_std": jnp.ones((F,)),
            "out_mean": jnp.zeros(()),
            "out_scale": jnp.asarray(0.2 * weight_std),
        }
    return out
