"""MPLP's kinds (Randazzo et al. 2020): the learned message-passing learning protocol.

Each library kind gets an MPLP counterpart with the **same forward** and a **learned backward**:
the agent standardises its learner inputs, runs its group's learner and

* sends the last ``k`` channels of the learner's output as its backward message (ports take
  size ``k`` with *mean* aggregation, paper eq. 5);
* if it owns a parameter (synapse ``w``, bias ``b``), changes it by
  ``(out[0] - out_mean) * out_scale`` (averaged over the inner batch by the engine, eq. 4).

Stateful learners (default) are GRUs (:func:`~agentgraph.learners.gru_step`) whose carry —
``[update | hidden | k message]`` — is kept per agent and per inner-batch slot in the per-example
field ``carry``. Stateless learners are two MLPs, ``f`` (update) and ``g`` (message).

Learner inputs (as in the authors' reference implementation): synapse ``[m (k), w, x]``; bias ``[m (k), b, z]``; activation
``[m (k), pre-activation]``; pooling (not in the paper) ``[m (k), v]`` with ``v`` the pooled value
(average or max pool, stored by the forward) or the gate's input (max gate); softmax ``[m (k), logit, logit - max, exp(logit - max),
sum exp(logits - max)]``; loss ``[loss, prediction, target, log(clip(prediction)) (CE) or
target - prediction (L2)]``. The loss agent's first input is its seed, the stored ``[loss]``.
With ``grad_input`` (an option, not gradient-free) weights and biases also see their
per-example gradient step ``grad``, last.

Use :func:`kinds` to get the kind table (and :func:`~agentgraph.protocols.mplp.sharing.init_params`
for a graph's parameters); ``graph.with_kinds(mplp.kinds(...))`` turns any library graph into an
MPLP graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.ports import Port
from agentgraph.errors import AgentGraphError
from agentgraph.learners.gru import gru_cell, gru_input_layer
from agentgraph.learners.mlp import apply_mlp_from_pre, first_layer
from agentgraph.nodes.activations import ACTIVATIONS
from agentgraph.nodes.base import Field, Kind
from agentgraph.nodes.registry import default_kinds

__all__ = ["MPLPConfig", "MPLPKind", "PARAM_FIELDS", "input_layer", "kinds", "n_features"]


@dataclasses.dataclass(frozen=True)
class MPLPConfig:
    """Learner shape.

    Attributes:
        k: message size (sinusoid 8, MNIST 4).
        hidden: GRU hidden channels besides update and message (sinusoid 15, MNIST 7).
        stateful: GRU learners (True) or stateless f/g MLPs (False).
        mlp: hidden layer sizes of the learners' networks.
        in_size, carry_size: pad every kind's learner inputs / carry to these sizes (one learner
            shared by all kinds; see :meth:`padded`).
        record: store each agent's raw learner inputs (``feat``) and raw update (``raw``) in
            per-example fields — used to measure the normalisation.
        premap: compute the learners' first layer on the incoming message once per *sender*
            (e.g. per bias unit instead of per synapse) through the engine's premap hook
            (:meth:`~agentgraph.Kind.premap`); the numbers are the same either way.
        grad_input: parameter agents get one more learner input, the per-example field
            ``grad`` — their own SGD step ``-dL/dw`` for the current example, written by the
            caller before each step (:mod:`agentgraph.protocols.mplp.gradient_input`). With it the
            protocol is **not** gradient-free; it is the paper's §5 suggestion, an option.
    """

    k: int = 4
    hidden: int = 7
    stateful: bool = True
    mlp: tuple[int, ...] = (80, 40)
    in_size: int | None = None
    carry_size: int | None = None
    record: bool = False
    premap: bool = False
    grad_input: bool = False

    def padded(self) -> MPLPConfig:
        """The config for one learner shared by every kind: inputs and carries padded to the
        largest kind's (softmax inputs, parameter carries)."""
        return dataclasses.replace(self, in_size=self.k + 4, carry_size=1 + self.hidden + self.k)


#: The parameter field of each library kind that owns one.
PARAM_FIELDS = {"synapse": "w", "bias": "b"}

#: Pooling kinds: the stored value their learner reads (``avg_pool``'s is stored by :class:`MPLPKind`).
POOL_VALUE = {"avg_pool": "y", "max_pool": "y", "max_gate": "x"}


def _own_features(base: str, state: Mapping) -> jax.Array:
    """The learner inputs of one agent (one example) of library kind ``base`` that are not its
    incoming message: everything after ``m``, or all of them for loss kinds."""
    if base in ("synapse", "bias"):
        own = [state[PARAM_FIELDS[base]], state["x" if base == "synapse" else "z"]]
        return jnp.stack(own + [state["grad"]] if "grad" in state else own)
    if base == "softmax":
        d = state["x"] - state["mx"]
        return jnp.stack([state["x"], d, jnp.exp(d), jnp.exp(state["lse"] - state["mx"])])
    if base == "l2":
        return jnp.stack([state["loss"], state["pred"], state["target"], state["target"] - state["pred"]])
    if base == "cross_entropy":
        logp = jnp.log(jnp.clip(state["pred"], 1e-7, 1 - 1e-7))
        return jnp.stack([state["loss"], state["pred"], state["target"], logp])
    if base in ACTIVATIONS:
        return state["x"][None]
    if base == "sum":
        return state["z"][None]
    if base in POOL_VALUE:
        return jnp.reshape(state[POOL_VALUE[base]], (1,))
    raise AgentGraphError(f"MPLP has no learner inputs for kind {base!r}.")


def _features(base: str, state: Mapping, m: jax.Array) -> jax.Array:
    """All learner inputs of one agent (one example): ``[m, own]`` (losses: ``own``)."""
    own = _own_features(base, state)
    return own if base in ("l2", "cross_entropy") else jnp.concatenate([m, own])


def input_layer(config: MPLPConfig, learner: Mapping) -> tuple[tuple[jax.Array, jax.Array], ...]:
    """Everything a learner computes *linearly* from its (normalised) inputs: ``((W [F, d], b
    [d]), ...)`` — the GRU's gates and ``MLP_x`` first layer, or the first layers of the
    stateless ``f`` and ``g``.

    Example:
        >>> import jax
        >>> from agentgraph.learners import init_gru
        >>> parts = input_layer(MPLPConfig(k=4, hidden=7), init_gru(jax.random.PRNGKey(0), 6, 12))
        >>> [W.shape for W, _ in parts]
        [(6, 24), (6, 80)]
    """
    if config.stateful:
        return gru_input_layer(learner)
    return first_layer(learner["f"]), first_layer(learner["g"])


def _learner_out(config: MPLPConfig, learner: Mapping, pre: Sequence[jax.Array], carry):
    """``(new carry or None, message [k], raw update ())`` from the input projection's parts."""
    k = config.k
    if config.stateful:
        c = gru_cell(learner, pre[0], pre[1], carry)
        return c, c[-k:], c[0]
    upd = apply_mlp_from_pre(learner["f"], pre[0], hidden="relu", final="tanh")[0]
    msg = apply_mlp_from_pre(learner["g"], pre[1], hidden="relu", final="tanh")
    return None, msg, upd


def n_features(base: str, k: int, grad_input: bool = False) -> int:
    """Learner input size for library kind ``base`` (``grad_input``: see :class:`MPLPConfig`).

    Example:
        >>> n_features("synapse", 4), n_features("cross_entropy", 4), n_features("bias", 4, grad_input=True)
        (6, 4, 7)
    """
    if base in ("synapse", "bias"):
        return k + 2 + int(grad_input)
    if base == "softmax":
        return k + 4
    if base in ("l2", "cross_entropy"):
        return 4
    if base in ACTIVATIONS or base == "sum" or base in POOL_VALUE:
        return k + 1
    raise AgentGraphError(f"MPLP has no learner inputs for kind {base!r}.")


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
        self.param = PARAM_FIELDS.get(base.name)
        k = config.k
        self.carry_size = config.carry_size or (1 if self.param else 0) + config.hidden + k
        # the learners read every stored input: nothing of the base kind is scratch here
        fields = {f: dataclasses.replace(spec, scratch=False) for f, spec in base.fields.items()}
        if base.name == "avg_pool":  # the learner reads the pooled value
            fields["y"] = Field(per_example=True)
        if config.stateful and base.runs("backward") and base.name != "softmax_norm":
            fields["carry"] = Field(shape=(self.carry_size,), per_example=True)
        if config.grad_input and self.param:
            fields["grad"] = Field(per_example=True)
        if config.record and base.runs("backward") and base.name != "softmax_norm":
            fields["feat"] = Field(shape=(n_features(base.name, k, config.grad_input),), per_example=True)
            fields["raw"] = Field(per_example=True)
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
        if self.base.name == "avg_pool":
            new = {**new, "y": jnp.reshape(out, ())}
        return {**state, **new}, out

    def runs(self, sweep: str) -> bool:  # backward iff the base kind takes part in it
        if sweep == "forward":
            return self.base.runs("forward")
        if sweep == "backward":
            return self.base.runs("backward")
        return False

    def premaps(self, sweep: str) -> dict[str, int]:
        """The incoming message ``m`` is premapped through the learner's first layer (its
        normalised message part), except while recording raw learner inputs."""
        if (sweep != "backward" or not self.config.premap or "m" not in self.backward_ports or self.config.record
                or self.base.name == "softmax_norm"):
            return {}
        return {"m": self._proj_size}

    @property
    def _proj_size(self) -> int:
        c = self.config
        h = c.mlp[0] if c.mlp else None
        if c.stateful:
            return 2 * self.carry_size + (h or self.carry_size)
        return (h or 1) + (h or c.k)

    def premap(self, params, sweep, port, message):
        """``m [k]`` → its share of the learner's input projection ``[D]`` (the parts side by
        side): the normalised message times the first-layer rows that see it. Computed once per
        sender, broadcast to receivers."""
        k = self.config.k
        m = (message - params["in_mean"][:k]) * params["in_inv_std"][:k]
        return jnp.concatenate([m @ W[:k] for W, _ in input_layer(self.config, params["learner"])])

    def backward(self, params, state, messages):
        k = self.config.k
        if self.base.name == "softmax_norm":  # MPLP's softmax units need no normaliser message
            return state, jnp.zeros((k,)), {}
        parts = input_layer(self.config, params["learner"])
        mean, inv = params["in_mean"], params["in_inv_std"]
        if self.premaps("backward"):
            # the message's part of the projection arrives premapped (computed per sender); the
            # agent adds its own few inputs' part
            own = _own_features(self.base.name, state)
            if self.config.in_size:
                own = jnp.pad(own, (0, self.config.in_size - k - own.shape[0]))
            own = (own - mean[k:]) * inv[k:]
            cuts = np.cumsum([W.shape[1] for W, _ in parts])[:-1]
            pre = [pm + own @ W[k:] + b for pm, (W, b) in zip(jnp.split(messages["m"], cuts), parts)]
            feat = None
        else:
            feat = _features(self.base.name, state, messages.get("m", jnp.zeros((k,))))
            feat_p = jnp.pad(feat, (0, self.config.in_size - feat.shape[0])) if self.config.in_size else feat
            x = (feat_p - mean) * inv
            pre = [x @ W + b for W, b in parts]
        carry, msg, upd = _learner_out(self.config, params["learner"], pre, state.get("carry"))
        if carry is not None:
            state = {**state, "carry": carry}
        if self.config.record:
            state = {**state, "feat": feat, "raw": upd}
        outs = {o: msg for o in self.backward_outputs}
        update = {}
        if self.param:
            update[self.param] = (upd - params["out_mean"]) * params["out_scale"]
        return state, outs, update

    def _identity(self) -> tuple:
        return (type(self), self.name, self.base._identity(), self.config)


#: Library kinds MPLP has no agents for (none at present; pooling kinds have theirs).
NO_MPLP_KIND: tuple[str, ...] = ()


def kinds(config: MPLPConfig = MPLPConfig(), sharing: str = "group") -> dict[str, Kind]:
    """The MPLP kind table: every library kind with a learned backward (all but
    :data:`NO_MPLP_KIND`).

    Example:
        >>> sorted(kinds())[:3]
        ['avg_pool', 'bias', 'cross_entropy']
    """
    if sharing == "all":
        config = config.padded()
    return {name: MPLPKind(base, config) for name, base in default_kinds().items() if name not in NO_MPLP_KIND}


def check_supported(graph) -> None:
    """An error naming the kinds of ``graph`` MPLP has no agents for (:data:`NO_MPLP_KIND`).

    Example:
        >>> from agentgraph.builders import mlp
        >>> check_supported(mlp([2, 1]))  # fine
    """
    bad = sorted(set(graph.arrays().kind_names) & set(NO_MPLP_KIND))
    if bad:
        raise AgentGraphError(f"MPLP has no agents for the kind(s) {bad} yet; use a network without them, or the "
                              "sgd / attention protocols.")
