"""The agent kinds of equilibrium propagation (:mod:`agentgraph.protocols.equilibrium`): the unit
(:class:`EPUnit`, under the name ``bias``), the symmetric synapse (:class:`EPSynapse`), the activity
agents (:func:`ep_activation`, and the ``ep_out`` agent of a unit without an activation —
:func:`output_activity`: the identity or ``protocol.output_activation``),
the average pool's two couplings (:class:`EPAvgPool` up, :class:`EPPoolDown` down), and the input
and target kinds that take part in the relaxation. The protocol module wires them into a network
and a schedule; the arrow types are ``ep`` (one relaxation sweep), ``ep_copy``, ``ep_flip`` and
``ep_learn``.
"""

from __future__ import annotations

import copy

import jax.numpy as jnp

from agentgraph.arrows.ports import Port
from agentgraph.errors import AgentGraphError
from agentgraph.nodes import ACTIVATIONS, Activation, AvgPool, Bias, Field, Input, Kind, Linear, Synapse, Target
from agentgraph.nodes._util import learning_rate

__all__ = ["COPY", "DOWN", "FLIP", "LEARN", "OUT", "OUTPUT_ACTIVATIONS", "RELAX", "EPAvgPool", "EPInput", "EPPoolDown",
           "EPSynapse", "EPTarget", "EPUnit", "check_output_activation", "ep_activation", "identity_activity",
           "output_activity"]

RELAX, COPY, FLIP, LEARN = "ep", "ep_copy", "ep_flip", "ep_learn"
_ONE, _TWO = Port(1, "sum"), Port(2, "sum")
#: The kind (and group) of the identity activity agent each unit without an activation gets.
OUT = "ep_out"
#: The kind of the agent that carries an average pool's coupling down (one per pool agent).
DOWN = "ep_pool_down"
#: The activities an output unit may have (``protocol.output_activation``): the library's activations
#: but ``step`` (zero derivative everywhere: no nudge would reach the network, as for hidden units).
OUTPUT_ACTIVATIONS = tuple(sorted(n for n in ACTIVATIONS if n != "step"))


def check_output_activation(name: str | None) -> str | None:
    """``name`` if it is ``None`` or one of :data:`OUTPUT_ACTIVATIONS`, else an :class:`AgentGraphError`.

    Example:
        >>> check_output_activation("hard_sigmoid")
        'hard_sigmoid'
    """
    if name is not None and name not in OUTPUT_ACTIVATIONS:
        raise AgentGraphError(f"protocol.output_activation must be null (output units linear, rho(u) = u) or one "
                              f"of {list(OUTPUT_ACTIVATIONS)}, got {name!r}.")
    return name


def _scale(params, centred: bool):
    """``lr/β`` (one-sided) or ``lr/(2β)`` (centred)."""
    return learning_rate(params, "equilibrium") / (params["beta"] * (2.0 if centred else 1.0))


class EPUnit(Bias):
    """A unit of the symmetric network (module docstring), under the library bias's name.

    State: ``b`` (per agent); per example ``u`` (pre-activation), ``u0``/``u1`` (at the free /
    ``+β`` fixed point), ``c`` (1 on output units: the target's flag), ``sign`` (the nudge: 0,
    +1, −1). Ports on ``ep``: ``x`` (from the synapses below), ``m`` (from above), ``y``
    (``[y, 1]`` from its target); on ``ep_learn``: ``d`` (its activity agent's change of
    activity). It sends ``u`` to its activity agent on ``ep_copy``. Params ``{"lr", "beta", "gamma"}``.

    ``output``: the output units' activity ``ρ_out`` (a name of :data:`OUTPUT_ACTIVATIONS`; ``None``:
    ``u`` itself). With it the cost is ``½ Σ_out (ρ_out(u) − y)²``: an output's nudge is
    ``β (y − ρ_out(u))`` (the stationarity of ``E + βC`` divided by ``ρ_out′(u)``, like a hidden
    unit's), the ``forward`` sweep sends ``ρ_out(u)`` (the L2 head's prediction; a hidden unit's goes
    only to its activation agent, which ignores it) and ``b`` moves by the change of ``ρ_out`` its
    activity agent sends on ``ep_learn`` (``∂E/∂b_j = −ρ(u_j)``), as a hidden unit's.

    Example:
        >>> s = {f: jnp.zeros(()) for f in EPUnit().fields}
        >>> p = {"lr": 0.1, "beta": 0.5, "gamma": 1.0}
        >>> ib = {"x": jnp.ones(1), "m": jnp.ones(1), "y": jnp.array([3.0, 1.0])}
        >>> float(EPUnit().act("ep", p, {**s, "sign": 1.0}, ib)[0]["u"])  # 2 + 0.5 (3 - 0)
        3.5
    """

    fields = {"b": Field(), "z": Field(per_example=True), "u": Field(per_example=True),
              "u0": Field(per_example=True), "u1": Field(per_example=True), "c": Field(per_example=True),
              "sign": Field(per_example=True)}
    acts_on = (RELAX, COPY, FLIP, LEARN)
    arrow_ports = {RELAX: {"x": _ONE, "m": _ONE, "y": Port(2, "sum")}, LEARN: {"d": _ONE}}
    arrow_outputs = {COPY: {"out": 1}}

    def __init__(self, centred: bool = False, output: str | None = None) -> None:
        self.centred = bool(centred)
        self.output = check_output_activation(output)

    def _out(self, u):
        """``ρ_out(u)`` (``u`` without an output activity)."""
        return u if self.output is None else ACTIVATIONS[self.output][0](u)

    def forward(self, params, state, inputs):  # the free fixed point: read the loss, mark, nudge next
        u = state["u"]
        return {**state, "z": inputs["x"][0], "u0": u, "sign": 1.0 + 0.0 * state["sign"]}, self._out(u)[None]

    def act(self, arrow_type, params, state, inbox):
        u = state["u"]
        if arrow_type == RELAX:  # one tick: the drive of the previous tick's activities (module docstring)
            y, c = inbox["y"][0], inbox["y"][1]
            drive = inbox["x"][0] + inbox["m"][0] + state["b"] + state["sign"] * params["beta"] * c * (y - self._out(u))
            return {**state, "u": u + params["gamma"] * (drive - u), "c": c}, {}, {}
        if arrow_type == COPY:
            return state, u[None], {}
        if arrow_type == FLIP:  # centred: back to the free fixed point, nudge −β
            return {**state, "u1": u, "u": state["u0"], "sign": -1.0 + 0.0 * u}, {}, {}
        c = state["c"]  # LEARN
        if self.output is None:  # an output's activity is u: its own change (bit for bit as before the option)
            own = (state["u1"] - u) if self.centred else (u - state["u0"])
            delta = c * own + (1.0 - c) * inbox["d"][0]
        else:  # every unit: its activity agent's change of ρ
            delta = inbox["d"][0]
        zero = 0.0 * u
        return {**state, "u": zero, "sign": zero}, {}, {"b": _scale(params, self.centred) * delta}

    def backward(self, params, state, messages):  # not in the schedule; Bias's would update b
        return state, messages["m"], {}


class EPSynapse(Synapse):
    """A symmetric coupling. On ``ep`` it receives the activity below (``x``) and above (``m``)
    and sends ``w·x`` up (``out``) and ``w·m`` down (``back``), storing nothing: both outputs are
    declared :class:`~agentgraph.nodes.Linear`, so the compiler lowers a dense block's relaxation
    ticks to matrix products. On ``ep_learn`` it receives both ends' activity pairs
    ``[ρ, ρ|0]`` (centred: ``[ρ|β, ρ|−β]``) and updates ``w`` by ``(lr/β)(ρ_i ρ_j − ρ_i0 ρ_j0)``
    (centred: ``lr/2β``): the per-example products are formed there only.

    Example:
        >>> k = EPSynapse()
        >>> s, out, _ = k.act("ep", None, {"w": 2.0, "x": 0.0}, {"x": jnp.array([3.0]), "m": jnp.array([0.5])})
        >>> float(out["out"][0]), float(out["back"][0])
        (6.0, 1.0)
        >>> p = {"lr": 0.1, "beta": 0.5}
        >>> pairs = {"x": jnp.array([3.0, 1.0]), "m": jnp.array([0.5, 1.0])}
        >>> _, _, upd = k.act("ep_learn", p, {"w": 2.0, "x": 0.0}, pairs)
        >>> round(float(upd["w"]), 4)  # (0.1 / 0.5) (3 · 0.5 − 1 · 1)
        0.1
    """

    acts_on = (RELAX, LEARN)
    arrow_ports = {RELAX: {"x": _ONE, "m": _ONE}, LEARN: {"x": _TWO, "m": _TWO}}
    arrow_outputs = {RELAX: {"out": 1, "back": 1}}

    def __init__(self, centred: bool = False) -> None:
        self.centred = bool(centred)

    def linear(self, sweep):
        if sweep == RELAX:
            return {"out": Linear("x", "w"), "back": Linear("m", "w")}
        return {"out": Linear("x", "w")} if sweep == "forward" else {}

    def outer_updates(self):  # no backward sweep runs
        return {}

    def forward(self, params, state, inputs):  # the free fixed point's forward sweep: nothing to store
        return state, state["w"] * inputs["x"]

    def act(self, arrow_type, params, state, inbox):
        x, m = inbox["x"], inbox["m"]
        if arrow_type == RELAX:
            return state, {"out": state["w"] * x, "back": state["w"] * m}, {}
        return state, {}, {"w": _scale(params, self.centred) * (x[0] * m[0] - x[1] * m[1])}


def ep_activation(kind: Kind, centred: bool = False) -> Kind:
    """A library activation ``ρ`` (same name) as a hidden unit's activity agent: it keeps a copy
    ``x`` of its unit's ``u`` (received on ``ep_copy``, after every tick) and sends ``ρ(x)`` on
    ``ep``; it stores ``ρ`` at the free (``r0``, forward sweep; ``x0`` the copy) and ``+β``
    (``r1``, ``ep_flip``, which also puts the copy back to ``x0``) fixed points; on ``ep_learn``
    it sends its unit the change ``ρ − r0`` (centred: ``r1 − ρ``) as ``out`` and its synapses the
    pair ``[ρ, r0]`` (centred: ``[r1, ρ]``) as ``pair``, and resets the copy to 0.

    Example:
        >>> from agentgraph.nodes import Activation
        >>> k = ep_activation(Activation("tanh"))
        >>> s, out, _ = k.act("ep", None, {"x": 0.5, "x0": 0.0, "r0": 0.0, "r1": 0.0}, {})
        >>> round(float(out[0]), 4), k.name
        (0.4621, 'tanh')
    """
    base = type(kind)

    def rho(self, u):
        return self.fn(u)

    def forward(self, params, state, inputs):  # the copy is the unit's u (an ep_copy ran last)
        r = rho(self, state["x"])
        return {**state, "x0": state["x"], "r0": r}, r[None]

    def act(self, t, params, state, inbox):
        r = rho(self, state["x"])
        if t == RELAX:
            return state, r[None], {}
        if t == COPY:
            return {**state, "x": inbox["x"][0]}, {}, {}
        if t == FLIP:
            return {**state, "r1": r, "x": state["x0"]}, {}, {}
        now, then = (state["r1"], r) if centred else (r, state["r0"])
        return {**state, "x": 0.0 * r}, {"out": (now - then)[None], "pair": jnp.stack([now, then])}, {}

    attrs = {"fields": {**kind.fields, "x0": Field(per_example=True), "r0": Field(per_example=True),
                        "r1": Field(per_example=True)},
             "acts_on": (RELAX, COPY, FLIP, LEARN), "forward": forward, "act": act,
             "arrow_ports": {COPY: {"x": _ONE}},
             "arrow_outputs": {RELAX: {"out": 1}, LEARN: {"out": 1, "pair": 2}}}
    out = copy.copy(kind)
    out.__class__ = type(f"EP{base.__name__}", (base,), attrs)
    return out


def output_activity(centred: bool, activation: str | None = None) -> Kind:
    """The activity agent of a unit without an activation (an output unit), kind ``ep_out``:
    ``ρ_out(u)``, the library activation ``activation`` (one of :data:`OUTPUT_ACTIVATIONS`;
    ``None``: the identity, ``ρ(u) = u``).

    Example:
        >>> k = output_activity(False, "hard_sigmoid")
        >>> s, out, _ = k.act("ep", None, {"x": 1.5, "x0": 0.0, "r0": 0.0, "r1": 0.0}, {})
        >>> k.name, float(out[0])
        ('ep_out', 1.0)
    """
    k = copy.copy(Activation(check_output_activation(activation) or "identity"))
    k.name = OUT
    return ep_activation(k, centred)


def identity_activity(centred: bool) -> Kind:
    """The activity agent of an output unit without an output activity: ``ρ(u) = u``, kind ``ep_out``.

    Example:
        >>> identity_activity(False).name
        'ep_out'
    """
    return output_activity(centred)


class EPAvgPool(AvgPool):
    """An average pool (the library's ``avg_pool``, same forward) as a fixed linear coupling,
    upward half: on ``ep`` it sends the mean ``x / n`` of its window's activities to the synapses
    above, on ``ep_learn`` the mean of their pairs. The downward half is :class:`EPPoolDown`: the
    energy's term ``w·(Σ_window ρ_i / n)·ρ_j`` drives each ``u_i`` by ``w ρ_j / n``.

    Example:
        >>> float(EPAvgPool().act("ep", None, {"n": 4.0}, {"x": jnp.array([2.0])})[1][0])
        0.5
    """

    acts_on = (RELAX, LEARN)
    arrow_ports = {RELAX: {"x": _ONE}, LEARN: {"x": _TWO}}
    arrow_outputs = {RELAX: {"out": 1}, LEARN: {"pair": 2}}

    def act(self, arrow_type, params, state, inbox):
        if arrow_type == RELAX:
            return state, inbox["x"] / state["n"], {}
        return state, {"pair": inbox["x"] / state["n"]}, {}


class EPPoolDown(Kind):
    """An average pool's downward half (:class:`EPAvgPool`): on ``ep`` it receives what the
    synapses above send down (``m``, summed) and sends ``m / n`` to each unit of the window.

    Example:
        >>> float(EPPoolDown().act("ep", None, {"n": 4.0}, {"m": jnp.array([2.0])})[1][0])
        0.5
    """

    name = DOWN
    fields = {"n": Field(init=1.0)}
    acts_on = (RELAX,)
    arrow_ports = {RELAX: {"m": _ONE}}
    arrow_outputs = {RELAX: {"out": 1}}

    def act(self, arrow_type, params, state, inbox):
        return state, inbox["m"] / state["n"], {}


class EPInput(Input):
    """An input of the relaxation: on ``ep`` it sends its datum ``x [1]`` (a fixed activity), on
    ``ep_learn`` the pair ``[x, x] [2]`` (its activity is the same in both phases).

    Example:
        >>> EPInput().arrow_outputs["ep_learn"]
        {'pair': 2}
    """

    acts_on = (RELAX, LEARN)
    arrow_ports = {RELAX: {"data": _ONE}, LEARN: {"data": _ONE}}
    arrow_outputs = {RELAX: {"out": 1}, LEARN: {"pair": 2}}

    def act(self, arrow_type, params, state, inbox):
        if arrow_type == RELAX:
            return state, inbox["data"], {}
        return state, {"pair": jnp.concatenate([inbox["data"], inbox["data"]])}, {}


class EPTarget(Target):
    """A target of the relaxation: on ``ep`` it sends ``[y, 1] [2]`` to its output unit (the
    target and the flag that marks the unit as an output, nudged by ``β``).

    Example:
        >>> EPTarget().arrow_outputs["ep"]
        {'out': 2}
    """

    acts_on = (RELAX,)
    arrow_ports = {RELAX: {"data": _ONE}}
    arrow_outputs = {RELAX: {"out": 2}}

    def act(self, arrow_type, params, state, inbox):
        return state, jnp.concatenate([inbox["data"], jnp.ones(1)]), {}
