"""The base class of every node kind, and the description of its state fields.

A *kind* says what an agent is: its state fields and, per arrow type, one per-agent function.
The functions see **one agent and one example** — no agent axis, no batch axis — and are pure
``jax.numpy`` code, so the interpreter can call them one by one and the compiler can ``vmap``
them over agents and over the inner batch.

Semantics (the contract shared by the interpreter and the compiler):

* ``forward(params, state, inputs) -> (state, outputs)`` runs once per example in the forward
  sweep. ``inputs`` maps each forward port to its aggregated message ``[size]``; ``outputs`` maps
  each forward output name to a vector ``[size]`` (a bare array means ``{"out": array}``). Only
  per-example fields of the returned state are kept.
* ``backward(params, state, messages) -> (state, outputs, update)`` runs once per example in the
  backward sweep. ``update`` maps per-agent fields to additive changes; the engine averages them
  over the inner batch (MPLP eq. 4) and adds them. Only per-example fields of the returned state
  are kept.
* ``reflexive(params, state) -> state`` runs once per example per reflexive arrow at the end of
  the step. Per-example fields are kept; per-agent fields become the batch mean of the returned
  values.
* **User-named arrow types** (phases of a :class:`~agentgraph.arrows.Schedule`): a kind lists the
  types it acts on in ``acts_on``, their ports and outputs in ``arrow_ports[type]`` /
  ``arrow_outputs[type]``, and implements ``act(arrow_type, params, state, inbox) -> (state,
  outputs, update)``.

Every phase follows one rule for the returned state (:meth:`Kind.apply` is the uniform call):
per-example fields are kept; a per-agent field becomes the batch mean of the returned values
(unchanged when returned as it was), and then the batch mean of ``update[field]`` is added.

``params`` is whatever the protocol gives the agent's *group* (``None`` if nothing); it is how
learned rules share parameters.

**Premaps.** A kind may declare, per sweep, ports whose aggregated message it only uses through
a fixed per-example function — ``premap(params, sweep, port, message [size]) -> [d]`` — and then
receives that function's value (``[d]``) in ``inputs``/``messages`` instead of the raw message.
The meaning is exactly "apply ``premap`` to the aggregated message first"; the point is speed:
where each agent of a port receives a single arrow (a bias feeding all its synapses), the
compiler applies ``premap`` once per *sender* and broadcasts the result, instead of once per
receiver. MPLP uses it to compute its learners' first layer per unit rather than per synapse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from agentgraph.arrows.ports import Port
from agentgraph.errors import AgentGraphError
from agentgraph.nodes.linear import Linear, Outer

__all__ = ["Field", "Kind", "State", "Outputs"]

State = dict[str, Any]
Outputs = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Field:
    """One named piece of an agent's state.

    Attributes:
        shape: shape of the field for one agent (and one example, if ``per_example``).
        per_example: ``True`` for values kept per inner-batch slot (stored inputs, learner
            carries): stored as ``[B, *shape]``. ``False`` for per-agent values (weights):
            stored as ``[*shape]`` and changed only through ``update`` or reflexive arrows.
        init: default initial value, used when an agent declares no value for this field.
        scratch: a per-example value that lives within one inner step: written in the forward
            sweep and read by nothing but the kind's :class:`~agentgraph.nodes.Outer` update
            whose ``stored`` field it is (BLUR's stored pre-neuron state). Its value between
            steps is unspecified: where the compiler fuses that update it reads the forward
            sweep's messages and never writes the field (``tests/compiler/test_linear.py``;
            ``agentgraph.testing.check_declarations`` checks the kind's outputs ignore it).

    Example:
        >>> Field(shape=(4,), per_example=True)
        Field(shape=(4,), per_example=True, init=0.0, scratch=False)
    """

    shape: tuple[int, ...] = ()
    per_example: bool = False
    init: float = 0.0
    scratch: bool = False

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if any(s < 0 for s in shape):
            raise AgentGraphError(f"Field shape must be non-negative, got {self.shape!r}.")
        if self.scratch and not self.per_example:
            raise AgentGraphError("Field(scratch=True) needs per_example=True: a scratch field holds a per-example "
                                  "value between the forward sweep and the update that reads it.")
        object.__setattr__(self, "shape", shape)


def _owner(cls: type, attr: str) -> type:
    return next(c for c in cls.__mro__ if attr in vars(c))


def _declared_below(cls: type, decl: str, functions: tuple[str, ...]) -> bool:
    owner = _owner(cls, decl)
    return all(issubclass(owner, _owner(cls, f)) for f in functions)


class Kind:
    """Base class for node kinds. Subclass it to write your own agents.

    Class or instance attributes a subclass sets:

    * ``name`` — the string agents use to refer to the kind (unique within a graph).
    * ``fields`` — ``{field: Field}``: the state every agent of this kind carries.
    * ``forward_ports`` / ``backward_ports`` — ``{port: Port}``: the inputs of each sweep.
    * ``forward_outputs`` / ``backward_outputs`` — ``{output: size}``: what the kind sends along
      its outgoing arrows of that type (an arrow picks one with its ``src_port``, default
      ``"out"``). A kind with no outputs of a type can have no outgoing arrows of that type.
    * ``external`` — ``None``, or the batch key whose column ``slot`` (a node attribute) is
      delivered into the port ``"data"`` of every phase whose ports include one (the forward
      port for the library's inputs and targets).
    * ``loss_field`` — ``None``, or the per-example field holding this agent's elementwise loss;
      such agents are *loss agents*: the step's loss is the batch mean of the sum of their
      losses. No message seeds the backward sweep: a loss kind's ``backward`` computes from the
      fields it stored (the library's have no backward ports).

    Override :meth:`forward`, :meth:`backward` and/or :meth:`reflexive`. A kind runs in a sweep
    iff it overrides that sweep's method.

    Two kinds are equal when they are of the same class with equal instance attributes (compared
    by ``repr``); compiled programs of equal kinds and equal plans share one executable. A kind
    holding large arrays as attributes should override ``_identity``.

    Example:
        >>> import jax.numpy as jnp
        >>> class Doubler(Kind):
        ...     name = "doubler"
        ...     fields = {"x": Field(per_example=True)}
        ...     forward_ports = {"x": Port(1)}
        ...     forward_outputs = {"out": 1}
        ...     def forward(self, params, state, inputs):
        ...         x = inputs["x"]
        ...         return {**state, "x": x[0]}, 2.0 * x
        >>> Doubler().runs("forward"), Doubler().runs("backward")
        (True, False)
    """

    name: str = ""
    fields: Mapping[str, Field] = MappingProxyType({})
    forward_ports: Mapping[str, Port] = MappingProxyType({})
    backward_ports: Mapping[str, Port] = MappingProxyType({})
    forward_outputs: Mapping[str, int] = MappingProxyType({})
    backward_outputs: Mapping[str, int] = MappingProxyType({})
    external: str | None = None
    loss_field: str | None = None
    acts_on: tuple[str, ...] = ()
    arrow_ports: Mapping[str, Mapping[str, Port]] = MappingProxyType({})
    arrow_outputs: Mapping[str, Mapping[str, int]] = MappingProxyType({})

    # -- the three per-agent functions (no agent axis, no batch axis) --------------------------
    def forward(self, params: Any, state: State, inputs: Mapping[str, Any]) -> tuple[State, Any]:
        """One agent, one example: ``inputs[port]`` is ``[size]``; returns ``(state, outputs)``."""
        raise NotImplementedError

    def backward(
        self, params: Any, state: State, messages: Mapping[str, Any]
    ) -> tuple[State, Any, Mapping[str, Any]]:
        """One agent, one example: ``messages[port]`` is ``[size]``; returns
        ``(state, outputs, update)`` with ``update[field]`` shaped like the per-agent field."""
        raise NotImplementedError

    def reflexive(self, params: Any, state: State) -> State:
        """One agent, one example: returns the new state."""
        raise NotImplementedError

    def act(
        self, arrow_type: str, params: Any, state: State, inbox: Mapping[str, Any]
    ) -> tuple[State, Any, Mapping[str, Any]]:
        """One agent, one example, in a phase of the user-named ``arrow_type`` (one of
        ``acts_on``): ``inbox[port]`` is ``[size]`` (empty in a self-loop phase); returns
        ``(state, outputs, update)`` as :meth:`backward` does."""
        raise NotImplementedError(f"kind {self.name!r} lists {arrow_type!r} in acts_on but does not implement act()")

    def apply(
        self, arrow_type: str, params: Any, state: State, inbox: Mapping[str, Any]
    ) -> tuple[State, Any, Mapping[str, Any]]:
        """The uniform call the engine makes in a phase of ``arrow_type``: ``(state, outputs,
        update)`` from :meth:`forward`, :meth:`backward`, :meth:`reflexive` or :meth:`act`.

        Example:
            >>> import jax.numpy as jnp
            >>> from agentgraph.nodes import Synapse
            >>> s, out, upd = Synapse().apply("forward", None, {"w": 2.0, "x": 0.0}, {"x": jnp.ones(1)})
            >>> float(out[0]), upd
            (2.0, {})
        """
        if arrow_type == "forward":
            new, out = self.forward(params, state, inbox)
            return new, out, {}
        if arrow_type == "backward":
            return self.backward(params, state, inbox)
        if arrow_type == "reflexive":
            return self.reflexive(params, state), {}, {}
        return self.act(arrow_type, params, state, inbox)

    def premaps(self, sweep: str) -> Mapping[str, int]:
        """``{port: d}``: the ports of ``sweep`` whose aggregated message is passed through
        :meth:`premap` (output size ``d``) before the sweep's function sees it. Default: none."""
        return {}

    def premap(self, params: Any, sweep: str, port: str, message: Any) -> Any:
        """One agent, one example: ``message [size]`` (aggregated) → ``[d]``. Must not depend
        on the agent's state — the compiler may evaluate it once per sender (see module
        docstring)."""
        raise NotImplementedError

    def linear(self, sweep: str) -> Mapping[str, Linear]:
        """``{output: Linear}``: the outputs of ``sweep`` that are linear in one input with a
        per-agent field as coefficient (see :mod:`agentgraph.nodes.linear`). Default: none."""
        return {}

    def outer_updates(self) -> Mapping[str, Outer]:
        """``{field: Outer}``: backward updates that are outer products of a message and a
        stored forward input (see :mod:`agentgraph.nodes.linear`). Default: none."""
        return {}

    def declared_linear(self, sweep: str) -> Mapping[str, Linear]:
        """:meth:`linear`, if the class that declares it also defines (or inherits from a base)
        the sweep's function (``forward``, ``backward``, or ``act`` for a user-named arrow type
        the kind acts on) — a subclass that overrides that function without redeclaring loses
        the inherited declaration (it is run agent by agent, never wrongly)."""
        if sweep in ("forward", "backward"):
            fn = sweep
        elif sweep in self.acts_on:
            fn = "act"
        else:
            return {}
        return self.linear(sweep) if _declared_below(type(self), "linear", (fn,)) else {}

    def declared_outer(self) -> Mapping[str, Outer]:
        """:meth:`outer_updates`, under the same rule as :meth:`declared_linear` (for both the
        forward function, which stores the input, and the backward one)."""
        ok = _declared_below(type(self), "outer_updates", ("forward", "backward", "act"))
        return self.outer_updates() if ok else {}

    # -- introspection ---------------------------------------------------------------------------
    def runs(self, sweep: str) -> bool:
        """Whether this kind takes part in phases of arrow type ``sweep``: for ``forward``,
        ``backward``, ``reflexive``, whether it overrides that method; for other types, whether
        ``sweep`` is in ``acts_on``."""
        if sweep in ("forward", "backward", "reflexive"):
            return getattr(type(self), sweep) is not getattr(Kind, sweep)
        return sweep in self.acts_on

    def ports(self, arrow_type: str) -> Mapping[str, Port]:
        """Input ports for arrows of ``arrow_type``."""
        if arrow_type == "forward":
            return self.forward_ports
        if arrow_type == "backward":
            return self.backward_ports
        return self.arrow_ports.get(arrow_type, {})

    def outputs(self, arrow_type: str) -> Mapping[str, int]:
        """Outputs (name → size) sent along outgoing arrows of ``arrow_type``."""
        if arrow_type == "forward":
            return self.forward_outputs
        if arrow_type == "backward":
            return self.backward_outputs
        return self.arrow_outputs.get(arrow_type, {})

    def initial_state(self, declared: Mapping[str, Any] | None, agent: Any = None) -> State:
        """The per-agent initial state: declared values checked against ``fields``, defaults
        filled in. Per-example fields are returned **without** the batch axis.

        Raises:
            AgentGraphError: unknown field, wrong shape, or a non-finite value (names ``agent``).
        """
        declared = dict(declared or {})
        unknown = sorted(set(declared) - set(self.fields), key=str)
        if unknown:
            raise AgentGraphError(
                f"Agent {agent!r} of kind {self.name!r} declares unknown state field(s) "
                f"{unknown}; kind {self.name!r} has fields {sorted(self.fields)}."
            )
        out: State = {}
        for fname, f in self.fields.items():
            if fname in declared:
                try:
                    v = np.asarray(declared[fname], dtype=np.float64)
                except (TypeError, ValueError) as e:
                    raise AgentGraphError(
                        f"Agent {agent!r}: state field {fname!r} is not numeric ({e})."
                    ) from None
                if v.shape != f.shape:
                    raise AgentGraphError(
                        f"Agent {agent!r} of kind {self.name!r}: state field {fname!r} has shape "
                        f"{v.shape}, but the kind declares shape {f.shape}. Pass an array of "
                        f"shape {f.shape}."
                    )
                if not np.all(np.isfinite(v)):
                    raise AgentGraphError(
                        f"Agent {agent!r}: state field {fname!r} contains NaN or inf; pass finite "
                        "initial values."
                    )
            else:
                v = np.full(f.shape, f.init, dtype=np.float64)
            out[fname] = v
        return out

    def check(self) -> None:
        """Check the declaration itself (names, ports, loss field); raises AgentGraphError."""
        if not isinstance(self.name, str) or not self.name:
            raise AgentGraphError(
                f"Kind class {type(self).__name__} has no name; set `name = '...'` on it."
            )
        extra_ports = tuple((f"arrow_ports[{t!r}]", ps) for t, ps in dict(self.arrow_ports).items())
        extra_outs = tuple((f"arrow_outputs[{t!r}]", os) for t, os in dict(self.arrow_outputs).items())
        for t in set(self.arrow_ports) | set(self.arrow_outputs):
            if t not in self.acts_on:
                raise AgentGraphError(
                    f"Kind {self.name!r} declares ports or outputs for arrow type {t!r} but does not list it "
                    f"in acts_on; set acts_on = ({t!r}, ...)."
                )
        for t in self.acts_on:
            if t in ("forward", "backward", "reflexive"):
                raise AgentGraphError(
                    f"Kind {self.name!r}: acts_on names the library type {t!r}; implement {t}() instead."
                )
        for label, ports in (("forward_ports", self.forward_ports), ("backward_ports", self.backward_ports), *extra_ports):
            for p, spec in ports.items():
                if not isinstance(spec, Port):
                    raise AgentGraphError(
                        f"Kind {self.name!r}: {label}[{p!r}] must be a Port, got {spec!r}."
                    )
        for label, outs in (("forward_outputs", self.forward_outputs), ("backward_outputs", self.backward_outputs), *extra_outs):
            for o, size in outs.items():
                if not isinstance(size, (int, np.integer)) or size < 1:
                    raise AgentGraphError(
                        f"Kind {self.name!r}: {label}[{o!r}] must be a positive int size, got {size!r}."
                    )
        if self.external is not None and "data" not in self.forward_ports and not any(
                "data" in ps for ps in dict(self.arrow_ports).values()):
            raise AgentGraphError(
                f"Kind {self.name!r} reads external data {self.external!r} but has no forward "
                "port 'data' to receive it; add forward_ports['data']."
            )
        if self.loss_field is not None:
            f = self.fields.get(self.loss_field)
            if f is None or not f.per_example:
                raise AgentGraphError(
                    f"Kind {self.name!r}: loss_field {self.loss_field!r} must name a per-example "
                    "field."
                )

    # -- identity: equal kinds share compiled executables ---------------------------------------
    def _identity(self) -> tuple:
        items = sorted((k, repr(v)) for k, v in vars(self).items())
        return (type(self), self.name, tuple(items))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Kind) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
