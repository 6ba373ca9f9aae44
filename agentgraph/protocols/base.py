"""The Protocol contract: what runs on the arrows of a network, and what meta-training learns.

A learning rule is a :class:`Protocol`, a frozen bundle of pure functions in the style of optax's
``GradientTransformation(init, update)``:

* ``network(net) -> net`` — the :class:`Network` the rule runs on: the given network (library
  kinds) with its kinds substituted or wrapped (MPLP wraps every kind with a learned backward;
  BLUR rebuilds the graph with k-state neurons and label agents). It also maps the network's
  fresh-weight initialisers and its read-out onto the new graph.
* ``init(key, graph) -> learned`` — the meta-parameters pytree (what meta-training changes).
* ``params(learned, stats, graph) -> {group: params}`` — what each parameter-sharing group of
  ``graph`` receives at every inner step (a pure function: it runs inside ``jit``/``grad``).

and optional hooks:

* ``init_stats(graph) -> stats`` / ``calibrate(learned, stats, ctx, sample, key, pool) ->
  stats`` — measured, frozen quantities that are not meta-trained (MPLP's learner-input
  normalisation); the :class:`~agentgraph.meta.context.Context` lets a protocol simulate inner
  loops on sampled tasks and fresh networks. ``transfer_stats`` says what to keep when they are
  measured again on another network.
* ``step(ctx, program, params, state, batch, stage, phase) -> (state, loss)`` — one inner step,
  when the rule needs more than ``program.step`` (MPLP's optional gradient input);
  ``stage(phase)`` names the compiled variant a meta-step uses (a hashable, static value).
* ``warm_start`` — a :class:`WarmStart` objective the first meta-steps optimise instead of the
  meta-objective (MPLP's imitation of backprop).

Meta-training sees only this contract and a meta-objective; it never asks which protocol or which
kind it runs. Protocols are chosen in a config by ``protocol.rule``: a library name
(:data:`PROTOCOLS`) or ``"package.module:factory"``; the rest of the ``protocol:`` section is
validated by the factory's own pydantic model (:func:`resolve`).

Example:
    >>> from agentgraph.protocols.base import Protocol
    >>> p = Protocol(name="frozen", network=lambda net: net, init=lambda key, graph: {},
    ...              params=lambda learned, stats, graph: {})
    >>> p.init_stats(None), p.stage(3)
    ({}, None)
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pydantic

from agentgraph.errors import AgentGraphError

__all__ = ["FieldInit", "Network", "PROTOCOLS", "Protocol", "Readout", "WarmStart", "accuracy", "config_model",
           "fresh_weights", "output_units", "load_callable", "prediction_loss", "read", "register", "resolve", "settings_of",
           "weights_of", "with_weights"]

Learned = Any
Stats = Any


class FieldInit(NamedTuple):
    """How a fresh network draws one per-agent field: ``value = mean + std * N(0, 1)`` for every
    agent of ``kind`` (``std = 0``: the constant ``mean``). Shapes come from the program's state.

    Example:
        >>> FieldInit("synapse", "w", std=0.05).std
        0.05
    """

    kind: str
    field: str
    std: float = 0.0
    mean: float = 0.0


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


class WarmStart(NamedTuple):
    """A warm-start objective optimised for the first ``steps`` meta-steps instead of the
    meta-objective: ``make(ctx) -> objective`` with ``objective(learned, stats, task, w0) ->
    (loss, aux)`` (aux as the meta-objective's: ``{"loss": [K], "hint": [K], "cv": ()}``);
    ``prepare(learned, stats, ctx, task, w0) -> learned`` adjusts the fresh meta-parameters
    before the first step; ``meta_lr`` the meta-optimiser's rate meanwhile (``None``: the run's)."""

    steps: int
    make: Callable[[Any], Callable]
    prepare: Callable[..., Any] | None = None
    meta_lr: float | None = None


def _no_stats(graph: Any) -> Stats:
    return {}


def _keep_stats(learned: Learned, stats: Stats, ctx: Any, sample: Any, key: jax.Array, pool: Any) -> Stats:
    return stats


def _measured(trained: Stats, measured: Stats) -> Stats:
    return measured


def _one_stage(phase: int | None) -> Hashable:
    return None


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A learning rule as pure functions (module docstring).

    Attributes:
        name: a label for messages and files.
        network: ``Network -> Network`` (kinds substituted or wrapped).
        init: ``(key, graph) -> learned`` meta-parameters.
        params: ``(learned, stats, graph) -> {group: params}``.
        init_stats: ``graph -> stats`` (frozen, measured; default ``{}``).
        calibrate: ``(learned, stats, ctx, sample, key, pool) -> stats``: measure ``stats`` on
            the context's network by simulating inner loops on tasks from ``sample(key)`` and the
            pool's start weights (default: unchanged).
        transfer_stats: ``(trained, measured) -> stats``: which of a trained protocol's stats to
            keep when they are measured again on another network (default: the measured ones).
        step: ``(ctx, program, params, state, batch, stage, phase) -> (state, loss)`` or
            ``None`` (``program.step``).
        stage: ``phase -> hashable``: which compiled variant a meta-step runs (``phase``: the
            meta-steps since the warm start, ``None`` at evaluation); e.g. a schedule that
            switches something off. Default: one variant.
        warm_start: a :class:`WarmStart` or ``None``.
        gradient_free: the rule never receives a gradient at evaluation (results of rules
            that do are reported apart).
        held_out: ``(ctx, program, params, state, data) -> predictions [C, n_out]``: what a
            network in ``state`` (after inner steps) predicts for held-out ``data`` (``[C, n]``
            arrays). ``None`` (default): the state's per-agent fields with fresh per-example ones,
            one forward sweep — right wherever the learning lives in per-agent fields; a rule
            whose memory is per-example state (VSML's LSTM cells) gives its own.
        settings: the validated settings the factory was built from (for messages and hooks).
    """

    name: str
    network: Callable[[Network], Network]
    init: Callable[[jax.Array, Any], Learned]
    params: Callable[[Learned, Stats, Any], dict[str, Any]]
    init_stats: Callable[[Any], Stats] = _no_stats
    calibrate: Callable[..., Stats] = _keep_stats
    transfer_stats: Callable[[Stats, Stats], Stats] = _measured
    step: Callable[..., Any] | None = None
    stage: Callable[[int | None], Hashable] = _one_stage
    warm_start: WarmStart | None = None
    gradient_free: bool = True
    held_out: Callable[..., jax.Array] | None = None
    settings: Any = None


# ----------------------------------------------------------------------------------------------
# the registry: library names and "package.module:factory"
# ----------------------------------------------------------------------------------------------
#: Library protocols: ``{rule: "module:factory"}``, imported on first use.
PROTOCOLS: dict[str, str] = {
    "mplp": "agentgraph.protocols.mplp.protocol:mplp",
    "sgd": "agentgraph.protocols.gradient:sgd",
    "blur": "agentgraph.protocols.blur:blur",
    "vsml": "agentgraph.protocols.vsml:vsml",
    "attention": "agentgraph.protocols.attention:attention",
}


def register(rule: str, target: str) -> None:
    """Make ``protocol.rule: <rule>`` name the factory ``target`` (``"package.module:factory"``).

    Example:
        >>> register("my_rule", "agentgraph.protocols.gradient:sgd"); PROTOCOLS.pop("my_rule")
        'agentgraph.protocols.gradient:sgd'
    """
    PROTOCOLS[rule] = target


def _load(target: str, what: str) -> Callable:
    if ":" not in target:
        raise AgentGraphError(f"{what} {target!r} is neither a library name nor 'package.module:function'.")
    mod_name, _, attr = target.partition(":")
    try:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name != mod_name.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.append(os.getcwd())  # like `python -m`, the current directory is searched
            mod = importlib.import_module(mod_name)
    except Exception as e:  # a missing module or an error while importing it
        raise AgentGraphError(f"{what} {target!r}: cannot import module {mod_name!r} ({type(e).__name__}: {e}); "
                              "is it installed, on PYTHONPATH or in the current directory?") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise AgentGraphError(f"{what} {target!r}: module {mod_name!r} has no function {attr!r}.")
    return fn


def load_callable(target: str, what: str) -> Callable:
    """The function ``"package.module:function"`` names; errors name ``what`` and the target.

    Example:
        >>> load_callable("agentgraph.builders:mlp", "net.builder").__name__
        'mlp'
    """
    return _load(target, what)


def config_model(factory: Callable) -> type[pydantic.BaseModel]:
    """The pydantic model that validates a factory's settings: its ``Config`` attribute, or a
    model built from its keyword arguments' annotations and defaults.

    Example:
        >>> from agentgraph.protocols.gradient import sgd
        >>> sorted(config_model(sgd).model_fields)
        ['lr']
    """
    model = getattr(factory, "Config", None)
    if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
        return model
    import inspect

    fields: dict[str, Any] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = Any if p.annotation is p.empty else p.annotation
        fields[name] = (ann, ... if p.default is p.empty else p.default)
    return pydantic.create_model(f"{getattr(factory, '__name__', 'factory')}_config",
                                 __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
                                 **fields)


def _validated(section: dict[str, Any], where: str) -> tuple[str, Callable, pydantic.BaseModel]:
    if not isinstance(section, dict):
        raise AgentGraphError(f"{where} must be a mapping with a 'rule', got {type(section).__name__}.")
    section = dict(section)
    rule = section.pop("rule", "mplp")
    if not isinstance(rule, str):
        raise AgentGraphError(f"{where}.rule must be a name or 'package.module:factory', got {rule!r}.")
    factory = _load(PROTOCOLS.get(rule, rule), f"{where}.rule")
    model = config_model(factory)
    try:
        return rule, factory, model.model_validate(section)
    except pydantic.ValidationError as e:
        lines = [f"{where}.{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise AgentGraphError(f"invalid settings for rule {rule!r}: " + "; ".join(lines)) from None


def settings_of(section: dict[str, Any], where: str = "protocol") -> dict[str, Any]:
    """A ``protocol:`` section validated and with every default filled in:
    ``{"rule": ..., **settings}`` (what checkpoints store).

    Example:
        >>> settings_of({"rule": "sgd"})
        {'rule': 'sgd', 'lr': 0.05}
    """
    rule, _, settings = _validated(section, where)
    return {"rule": rule, **settings.model_dump(mode="json")}


def resolve(section: dict[str, Any], where: str = "protocol") -> Protocol:
    """Build the protocol a config section describes: ``{"rule": name or "pkg.mod:factory",
    **settings}``; the settings are validated by the factory's model and errors name the dotted
    field (``protocol.k: ...``).

    Example:
        >>> resolve({"rule": "sgd", "lr": 0.1}).name
        'sgd'
    """
    rule, factory, settings = _validated(section, where)
    proto = factory(**{k: getattr(settings, k) for k in type(settings).model_fields})
    if not isinstance(proto, Protocol):
        raise AgentGraphError(f"{where}.rule {rule!r}: the factory returned {type(proto).__name__}, not an "
                              "agentgraph.protocols.base.Protocol.")
    return proto


# ----------------------------------------------------------------------------------------------
# fresh networks
# ----------------------------------------------------------------------------------------------
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
                                  "graph does not have; check the builder's FieldInit list.")
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


def output_units(net: Network, rule: str) -> list[int]:
    """The bias agent (index into ``net.graph.arrays()``) feeding each of the read-out's agents,
    in output order: where a library network's output units sum their synapses — what protocols
    that rebuild a network around its units (BLUR, VSML) call its outputs.

    Raises:
        AgentGraphError: a read-out agent not fed by exactly one bias agent (``rule`` names who asks).

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> net = mlp_network([3, 2])
        >>> [net.graph.arrays().names[i] for i in output_units(net, "demo")]
        [('b', 0, 0), ('b', 0, 1)]
    """
    A = net.graph.arrays()
    index = {a: i for i, a in enumerate(A.names)}
    is_bias = np.array(A.kind_names, dtype=object)[A.kind] == "bias"
    fwd = A.type_mask("forward")
    out = []
    for r in net.readout.agents:
        srcs = [int(s) for s in A.src[fwd & (A.dst == index[r])] if is_bias[s]]
        if len(srcs) != 1:
            raise AgentGraphError(f"Read-out agent {r!r} is not fed by exactly one bias agent; {rule} cannot find "
                                  "its output unit.")
        out.append(srcs[0])
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
        val = fi.mean + fi.std * jax.random.normal(k, ref.shape) if fi.std else jnp.full(ref.shape, fi.mean)
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

