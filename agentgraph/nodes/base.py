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

    Example:
        >>> Field(shape=(4,), per_example=True)
        Field(shape=(4,), per_example=True, init=0.0)
    """

    shape: tuple[int, ...] = ()
    per_example: bool = False
    init: float = 0.0

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if any(s < 0 for s in shape):
            raise AgentGraphError(f"Field shape must be non-negative, got {self.shape!r}.")
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
      delivered into the forward port ``"data"`` (inputs and targets).
    * ``loss_field`` — ``None``, or the per-example field holding this agent's elementwise loss;
      such agents are *loss agents*: the step's loss is the batch mean of the sum of their
      losses, and they start the backward sweep seeded with it.

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
        the sweep's function — a subclass that overrides ``forward``/``backward`` without
        redeclaring loses the inherited declaration (it is run agent by agent, never wrongly)."""
        return self.linear(sweep) if _declared_below(type(self), "linear", (sweep,)) else {}

    def declared_outer(self) -> Mapping[str, Outer]:
        """:meth:`outer_updates`, under the same rule as :meth:`declared_linear` (for both the
        forward function, which stores the input, and the backward one)."""
        ok = _declared_below(type(self), "outer_updates", ("forward", "backward"))
        return self.outer_updates() if ok else {}

    # -- introspection ---------------------------------------------------------------------------
    def runs(self, sweep: str) -> bool:
        """Whether this kind takes part in ``sweep`` (``forward``/``backward``/``reflexive``)."""
        return getattr(type(self), sweep) is not getattr(Kind, sweep)

    def ports(self, arrow_type: str) -> Mapping[str, Port]:
        """Input ports for arrows of ``arrow_type``."""
        return {"forward": self.forward_ports, "backward": self.backward_ports}.get(arrow_type, {})

    def outputs(self, arrow_type: str) -> Mapping[str, int]:
        """Outputs (name → size) sent along outgoing arrows of ``arrow_type``."""
        return {"forward": self.forward_outputs, "backward": self.backward_outputs}.get(
            arrow_type, {}
        )

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
        for label, ports in (("forward_ports", self.forward_ports), ("backward_ports", self.backward_ports)):
            for p, spec in ports.items():
                if not isinstance(spec, Port):
                    raise AgentGraphError(
                        f"Kind {self.name!r}: {label}[{p!r}] must be a Port, got {spec!r}."
                    )
        for label, outs in (("forward_outputs", self.forward_outputs), ("backward_outputs", self.backward_outputs)):
            for o, size in outs.items():
                if not isinstance(size, (int, np.integer)) or size < 1:
                    raise AgentGraphError(
                        f"Kind {self.name!r}: {label}[{o!r}] must be a positive int size, got {size!r}."
                    )
        if self.external is not None and "data" not in self.forward_ports:
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
