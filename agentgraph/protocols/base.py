"""The Protocol contract: what runs on the arrows of a network, and what meta-training learns.

A learning rule is a :class:`Protocol`, a frozen bundle of pure functions in the style of optax's
``GradientTransformation(init, update)``. **The small contract** — all a rule must give:

* ``name`` — a label for messages and files;
* ``network(net) -> net`` — the :class:`~agentgraph.network.Network` the rule runs on: the given
  network (library kinds) with its kinds substituted or wrapped (MPLP wraps every kind with a
  learned backward; BLUR rebuilds the graph with k-state neurons and label agents), its
  fresh-weight initialisers and its read-out mapped onto the new graph;
* ``init(key, graph) -> learned`` — the meta-parameters pytree (what meta-training changes);
* ``params(learned, stats, graph) -> {group: params}`` — what each parameter-sharing group of
  ``graph`` receives at every inner step (pure: it runs inside ``jit``/``grad``).

**Optional capabilities**, each one typed group a rule that needs it sets (and a rule that does
not never sees): :class:`Calibration` (measured, frozen ``stats``: MPLP's learner-input
normalisation), :class:`WarmStart` (an objective for the first meta-steps: MPLP's imitation of
backprop), :class:`Stepping` (a custom inner step and its compiled variants: MPLP's gradient
input), ``held_out`` (:data:`HeldOut`: scoring held-out data when the learning lives in
per-example state: VSML). Hooks receive an :class:`~agentgraph.inner.Inner` — the compiled
networks — never meta-training's config. A learned initialisation (MAML) is not a protocol
capability: ``meta.maml`` learns a prior for any rule.

Meta-training sees only this contract and a meta-objective; it never asks which protocol or which
kind it runs. Protocols are chosen in a config by ``protocol.rule``: a library name
(:data:`PROTOCOLS`) or ``"package.module:factory"``; the rest of the ``protocol:`` section is
validated by the factory's own pydantic model (:func:`resolve`).

Example:
    >>> from agentgraph.protocols.base import Protocol
    >>> p = Protocol(name="frozen", network=lambda net: net, init=lambda key, graph: {},
    ...              params=lambda learned, stats, graph: {})
    >>> p.init_stats(None), p.stage(3), p.calibration is None
    ({}, None, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import pydantic

from agentgraph.compiler import Program
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.inner import Inner
from agentgraph.loading import load_callable
from agentgraph.network import Network

__all__ = ["fill_preset", "Calibration", "HeldOut", "PROTOCOLS", "Protocol", "Stepping", "WarmStart", "config_model", "register",
           "resolve", "settings_of"]

#: The meta-parameters pytree a protocol's ``init`` returns.
Learned = Any
#: Measured, frozen quantities (:class:`Calibration`); ``{}`` for rules without.
Stats = Any
#: Network weights ``{kind: {field: [N_kind, ...]}}`` (:func:`~agentgraph.network.weights_of`).
Weights = dict
#: A task: ``{"train": {"x": [K, B, n], "y": [K, B, n_out]}, "test": {...}}`` (leading axis:
#: inner steps).
Task = dict
#: ``(learned, stats, task, w0) -> (loss, aux)`` with aux ``{"loss": [K], "hint": [K], "cv": ()}``.
TaskObjective = Callable[[Learned, Stats, Task, Weights], tuple[jax.Array, dict]]
#: ``(inner, program, params, state, data) -> predictions [C, n_out]``: what a network in
#: ``state`` (after inner steps) predicts for held-out ``data`` (``{"x": [C, n], "y": [C, n_out]}``).
HeldOut = Callable[[Inner, Program, dict, dict, dict], jax.Array]


def _measured(trained: Stats, measured: Stats) -> Stats:
    return measured


def _one_stage(phase: int | None) -> Hashable:
    return None


class Calibration(NamedTuple):
    """Measured, frozen quantities ``stats`` that meta-training does not change (MPLP's
    learner-input normalisation).

    Attributes:
        init: ``graph -> stats``: their shapes and starting values.
        measure: ``(learned, stats, inner, sample, key, pool) -> stats``: measure them on
            ``inner``'s networks by simulating inner loops on tasks ``sample(key)`` (a sampler:
            ``key -> Task``) from the pool's start weights (``{kind: {field: [P, N, ...]}}``).
        transfer: ``(trained, measured) -> stats``: which of a trained protocol's stats to keep
            when they are measured again on another network (default: the measured ones).

    Example:
        >>> c = Calibration(init=lambda graph: {"scale": 1.0}, measure=lambda *a: {"scale": 2.0})
        >>> c.transfer({"scale": 1.0}, {"scale": 2.0})
        {'scale': 2.0}
    """

    init: Callable[[AgentGraph], Stats]
    measure: Callable[[Learned, Stats, Inner, Callable[[jax.Array], Task], jax.Array, Weights], Stats]
    transfer: Callable[[Stats, Stats], Stats] = _measured


class WarmStart(NamedTuple):
    """A warm-start objective optimised for the first ``steps`` meta-steps instead of the
    meta-objective (MPLP's imitation of backprop).

    Attributes:
        steps: how many meta-steps.
        make: ``(inner, unroll) -> objective`` (:data:`TaskObjective`); ``unroll`` is the run's
            :class:`~agentgraph.unroll.Unroll` (how its inner steps are unrolled).
        prepare: ``(learned, stats, inner, task, w0) -> learned``: adjusts the fresh
            meta-parameters before the first step (``w0``: one network's weights), or ``None``.
        meta_lr: the meta-optimiser's rate meanwhile (``None``: the run's).

    Example:
        >>> WarmStart(100, make=lambda inner, unroll: None).prepare is None
        True
    """

    steps: int
    make: Callable[[Inner, Any], TaskObjective]
    prepare: Callable[[Learned, Stats, Inner, Task, Weights], Learned] | None = None
    meta_lr: float | None = None


class Stepping(NamedTuple):
    """A custom inner step, for rules that need more than ``program.step`` (MPLP's gradient input).

    Attributes:
        step: ``(inner, program, params, state, batch, stage, phase) -> (state, loss)``: one inner
            step of ``program`` on ``batch`` (``{"x": [B, n], "y": [B, n_out]}``); ``stage`` the
            static variant, ``phase`` the meta-steps since the warm start (``None`` at evaluation;
            a traced integer in meta-training).
        stage: ``phase -> hashable``: which compiled variant a meta-step runs (e.g. a schedule
            that switches something off); default one variant, ``None``.

    Example:
        >>> s = Stepping(step=lambda inner, program, params, state, batch, stage, phase: program.step(params, state, batch))
        >>> s.stage(5) is None
        True
    """

    step: Callable[[Inner, Program, dict, dict, dict, Hashable, Any], tuple[dict, jax.Array]]
    stage: Callable[[int | None], Hashable] = _one_stage


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A learning rule as pure functions (module docstring).

    Attributes:
        name: a label for messages and files.
        network: ``Network -> Network`` (kinds substituted or wrapped).
        init: ``(key, graph) -> learned`` meta-parameters.
        params: ``(learned, stats, graph) -> {group: params}``.
        calibration: a :class:`Calibration` or ``None`` (no stats: ``{}``).
        warm_start: a :class:`WarmStart` or ``None``.
        stepping: a :class:`Stepping` or ``None`` (``program.step``, one variant).
        held_out: a :data:`HeldOut` or ``None``: the state's per-agent fields with fresh
            per-example ones, one forward sweep — right wherever the learning lives in per-agent
            fields; a rule whose memory is per-example state (VSML's LSTM cells) gives its own.
        gradient_free: the rule never receives a gradient at evaluation (results of rules
            that do are reported apart).
        settings: the validated settings the factory was built from (for messages).
    """

    name: str
    network: Callable[[Network], Network]
    init: Callable[[jax.Array, AgentGraph], Learned]
    params: Callable[[Learned, Stats, AgentGraph], dict[str, Any]]
    calibration: Calibration | None = None
    warm_start: WarmStart | None = None
    stepping: Stepping | None = None
    held_out: HeldOut | None = None
    gradient_free: bool = True
    settings: Any = None

    # -- the optional capabilities with their defaults: what meta-training calls ----------------
    def init_stats(self, graph: AgentGraph) -> Stats:
        """The stats' starting values (``{}`` without :attr:`calibration`)."""
        return {} if self.calibration is None else self.calibration.init(graph)

    def calibrate(self, learned: Learned, stats: Stats, inner: Inner, sample: Callable[[jax.Array], Task],
                  key: jax.Array, pool: Weights) -> Stats:
        """:attr:`Calibration.measure` (``stats`` unchanged without :attr:`calibration`)."""
        return stats if self.calibration is None else self.calibration.measure(learned, stats, inner, sample, key, pool)

    def transfer_stats(self, trained: Stats, measured: Stats) -> Stats:
        """:attr:`Calibration.transfer` (the measured stats without :attr:`calibration`)."""
        return measured if self.calibration is None else self.calibration.transfer(trained, measured)

    def stage(self, phase: int | None) -> Hashable:
        """:attr:`Stepping.stage` (``None``, one variant, without :attr:`stepping`)."""
        return None if self.stepping is None else self.stepping.stage(phase)

    def inner_step(self, inner: Inner, program: Program, params: dict, state: dict, batch: dict,
                   stage: Hashable = None, phase: Any = None) -> tuple[dict, jax.Array]:
        """One inner step: :attr:`Stepping.step`, or ``program.step(params, state, batch)``."""
        if self.stepping is None:
            return program.step(params, state, batch)
        return self.stepping.step(inner, program, params, state, batch, stage, phase)


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
    "predictive_coding": "agentgraph.protocols.predictive_coding:predictive_coding",
    "equilibrium": "agentgraph.protocols.equilibrium:equilibrium",
    "feedback_alignment": "agentgraph.protocols.feedback:feedback_alignment",
    "direct_feedback_alignment": "agentgraph.protocols.feedback:direct_feedback_alignment",
    "sign_symmetry": "agentgraph.protocols.feedback:sign_symmetry",
    "hebbian": "agentgraph.protocols.hebbian:hebbian",
    "node_perturbation": "agentgraph.protocols.perturbation:node_perturbation",
}


def register(rule: str, target: str) -> None:
    """Make ``protocol.rule: <rule>`` name the factory ``target`` (``"package.module:factory"``).

    Example:
        >>> register("my_rule", "agentgraph.protocols.gradient:sgd"); PROTOCOLS.pop("my_rule")
        'agentgraph.protocols.gradient:sgd'
    """
    PROTOCOLS[rule] = target


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
    import typing

    try:  # string annotations (``from __future__ import annotations``) resolved in the factory's module
        hints = typing.get_type_hints(factory)
    except Exception:  # an annotation that does not resolve: pydantic reports it by field
        hints = {}
    fields: dict[str, Any] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = Any if p.annotation is p.empty else hints.get(name, p.annotation)
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
    factory = load_callable(PROTOCOLS.get(rule, rule), f"{where}.rule")
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


def fill_preset(data: Any, presets: Mapping[str, Mapping[str, Any]]) -> Any:
    """A protocol section with the options of its ``conventions`` preset filled in where the
    section does not give them (the options given win); ``data`` unchanged otherwise. For a
    settings model's ``mode="before"`` validator.

    Example:
        >>> fill_preset({"conventions": "authors", "k": 3}, {"authors": {"k": 2, "sigma": "tanh"}})
        {'sigma': 'tanh', 'conventions': 'authors', 'k': 3}
    """
    if isinstance(data, dict) and isinstance(data.get("conventions"), str):
        preset = presets.get(data["conventions"], {})
        data = {**{k: v for k, v in preset.items() if k not in data}, **data}
    return data
