"""Small node kinds for tests: *probes* that tag messages, and *mixers* that mix them.

Every kind here is parameterised by the message size ``d``: all its ports take messages of
size ``d`` and all its outputs have size ``d``, so any two of them (of the same ``d``) can be
joined by an arrow. Kind names end in ``_d{d}`` so kinds of different sizes can share a graph.
The per-agent functions are pure ``jax.numpy`` code for **one agent and one example** (no
agent axis, no batch axis), like every :class:`~agentgraph.Kind`.

Probes (:class:`Probe`) send their identity and record what they receive:

* forward outputs: ``"out" = code`` and ``"neg" = -code`` — independent of the inputs;
* forward: stores the aggregated inbox of each forward port ``p`` in the per-example field
  ``in_p`` ``[d]``;
* backward outputs: ``"out" = bcode`` and ``"neg" = -bcode``; stores each backward port ``p``'s
  inbox in ``bin_p`` ``[d]`` and sends the update ``{"nbwd": 1}`` (so after one step the
  per-agent counter ``nbwd`` is 1: updates are averaged over the batch);
* reflexive: increments the per-agent counter ``nref`` and the per-example counter ``eref``,
  so after one step both equal the number of reflexive arrows on the agent.

Mixers (:class:`Mixer`) compute something that depends nonlinearly on their inputs, their
per-agent and per-example state and their group's ``params`` — for compiler-equivalence tests.

Example:
    >>> [k.name for k in test_kinds(2)]  # doctest: +NORMALIZE_WHITESPACE
    ['probe_sum_d2', 'probe_mean_d2', 'probe_max_d2', 'probe_lse_d2', 'probe_ab_d2',
     'mixer_d2', 'mixer_lse_d2']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from agentgraph.arrows.ports import Port
from agentgraph.errors import AgentGraphError
from agentgraph.nodes.base import Field, Kind

__all__ = [
    "MIXER_DEFAULTS",
    "Mixer",
    "Probe",
    "mixer_kinds",
    "probe_kinds",
    "test_kinds",
]


def _check_d(d: int) -> int:
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise AgentGraphError(f"message size d must be a positive int, got {d!r}.")
    return d


class Probe(Kind):
    """A routing probe: sends fixed codes, records its aggregated inboxes.

    Args:
        d: message size of every port and output.
        name: the kind's name.
        forward_ports: ``{port: aggregation}`` for the forward sweep.
        backward_ports: ``{port: aggregation}`` for the backward sweep.

    State (``[d]`` unless noted): ``code``, ``bcode`` (per agent: the forward / backward identity
    codes), ``nref``, ``nbwd`` (per agent, scalar counters), ``eref`` (per example, scalar
    counter), ``in_<port>`` / ``bin_<port>`` (per example: the last aggregated inbox of each
    forward / backward port).

    Example:
        >>> import jax.numpy as jnp
        >>> k = Probe(2, "p", {"x": "sum"}, {"m": "mean"})
        >>> s = {f: jnp.zeros(v.shape) for f, v in k.fields.items()}
        >>> s["code"] = jnp.array([1.0, 2.0])
        >>> s, out = k.forward(None, s, {"x": jnp.array([5.0, 6.0])})
        >>> out["out"].tolist(), out["neg"].tolist(), s["in_x"].tolist()
        ([1.0, 2.0], [-1.0, -2.0], [5.0, 6.0])
        >>> float(k.reflexive(None, s)["nref"])
        1.0
    """

    def __init__(
        self,
        d: int,
        name: str,
        forward_ports: Mapping[str, str],
        backward_ports: Mapping[str, str],
    ) -> None:
        self.d = _check_d(d)
        self.name = name
        self.forward_ports = {p: Port(d, a) for p, a in forward_ports.items()}
        self.backward_ports = {p: Port(d, a) for p, a in backward_ports.items()}
        self.forward_outputs = {"out": d, "neg": d}
        self.backward_outputs = {"out": d, "neg": d}
        fields = {
            "code": Field((d,)),
            "bcode": Field((d,)),
            "nref": Field(()),
            "nbwd": Field(()),
            "eref": Field((), per_example=True),
        }
        fields.update({f"in_{p}": Field((d,), per_example=True) for p in self.forward_ports})
        fields.update({f"bin_{p}": Field((d,), per_example=True) for p in self.backward_ports})
        self.fields = fields

    def forward(self, params: Any, state: dict, inputs: Mapping[str, Any]) -> tuple[dict, dict]:
        new = dict(state)
        for p in self.forward_ports:
            new[f"in_{p}"] = inputs[p]
        code = jnp.asarray(state["code"])
        return new, {"out": code, "neg": -code}

    def backward(
        self, params: Any, state: dict, messages: Mapping[str, Any]
    ) -> tuple[dict, dict, dict]:
        new = dict(state)
        for p in self.backward_ports:
            new[f"bin_{p}"] = messages[p]
        bcode = jnp.asarray(state["bcode"])
        return new, {"out": bcode, "neg": -bcode}, {"nbwd": jnp.ones(())}

    def reflexive(self, params: Any, state: dict) -> dict:
        return {**state, "nref": state["nref"] + 1.0, "eref": state["eref"] + 1.0}


#: Defaults of a mixer's group params (used for keys missing from ``params``, or all of them
#: when ``params`` is ``None``).
MIXER_DEFAULTS: dict[str, float] = {"scale": 1.0, "lr": 0.1, "decay": 0.9}


def _param(params: Any, key: str) -> Any:
    if isinstance(params, Mapping) and key in params:
        return params[key]
    return MIXER_DEFAULTS[key]


class Mixer(Kind):
    """A kind whose messages depend nonlinearly on inputs, state and params.

    Ports: forward ``"x"`` and ``"g"``, backward ``"m"`` (aggregations given). Outputs (size
    ``d``): forward ``"out"``, ``"aux"``; backward ``"out"``, ``"aux"``.

    State (``[d]``): ``code``, ``w``, ``tr`` per agent; ``x``, ``h``, ``e`` per example.

    * forward: ``s = x_in + 0.5 g_in``; ``h = tanh(scale * w * s + code)``; stores ``x = s``,
      ``h``; sends ``out = h``, ``aux = s * code + e``.
    * backward: ``dh = m * (1 - h**2)``; sends ``out = w * dh``, ``aux = dh * x + tr``; update
      ``w += mean_batch(-lr * dh * x)``, ``tr += mean_batch(m * h)``.
    * reflexive: ``tr = decay * tr`` (per agent), ``e = decay * e + h`` (per example).
    * each user-named type ``t`` of ``acts_on`` (ports ``"x"`` (``x_aggregation``) and ``"m"``
      (``m_aggregation``), outputs ``"out"``, ``"aux"``): ``s = x_in + code``;
      ``h = tanh(scale * w * s + e)``; ``e = decay * e + m_in``; returns ``tr`` changed to
      ``decay * tr + h`` (per agent: the batch mean is kept) and the update ``w += mean(-lr * m_in * h)``;
      sends ``out = h``, ``aux = w * m_in + x``. In a self-loop phase the inbox is empty (zeros).

    ``params`` is ``None`` or a mapping with any of ``"scale"``, ``"lr"``, ``"decay"`` (scalars
    or ``[d]`` arrays); missing keys take :data:`MIXER_DEFAULTS`.

    Example:
        >>> import jax.numpy as jnp
        >>> k = Mixer(1, "m")
        >>> s = {f: jnp.zeros(v.shape) for f, v in k.fields.items()}
        >>> s["w"] = jnp.ones(1)
        >>> s, out = k.forward({"scale": 2.0}, s, {"x": jnp.array([0.5]), "g": jnp.zeros(1)})
        >>> round(float(out["out"][0]), 6) == round(float(jnp.tanh(1.0)), 6)
        True
    """

    def __init__(
        self,
        d: int,
        name: str,
        x_aggregation: str = "sum",
        g_aggregation: str = "max",
        m_aggregation: str = "mean",
        acts_on: tuple[str, ...] = (),
    ) -> None:
        self.d = _check_d(d)
        self.name = name
        self.acts_on = tuple(acts_on)
        self.arrow_ports = {t: {"x": Port(d, x_aggregation), "m": Port(d, m_aggregation)} for t in self.acts_on}
        self.arrow_outputs = {t: {"out": d, "aux": d} for t in self.acts_on}
        self.forward_ports = {"x": Port(d, x_aggregation), "g": Port(d, g_aggregation)}
        self.backward_ports = {"m": Port(d, m_aggregation)}
        self.forward_outputs = {"out": d, "aux": d}
        self.backward_outputs = {"out": d, "aux": d}
        self.fields = {
            "code": Field((d,)),
            "w": Field((d,), init=0.5),
            "tr": Field((d,)),
            "x": Field((d,), per_example=True),
            "h": Field((d,), per_example=True),
            "e": Field((d,), per_example=True),
        }

    def forward(self, params: Any, state: dict, inputs: Mapping[str, Any]) -> tuple[dict, dict]:
        s = inputs["x"] + 0.5 * inputs["g"]
        h = jnp.tanh(_param(params, "scale") * state["w"] * s + state["code"])
        return {**state, "x": s, "h": h}, {"out": h, "aux": s * state["code"] + state["e"]}

    def backward(
        self, params: Any, state: dict, messages: Mapping[str, Any]
    ) -> tuple[dict, dict, dict]:
        m = messages["m"]
        dh = m * (1.0 - state["h"] ** 2)
        out = {"out": state["w"] * dh, "aux": dh * state["x"] + state["tr"]}
        update = {"w": -_param(params, "lr") * dh * state["x"], "tr": m * state["h"]}
        return state, out, update

    def reflexive(self, params: Any, state: dict) -> dict:
        decay = _param(params, "decay")
        return {**state, "tr": decay * state["tr"], "e": decay * state["e"] + state["h"]}

    def act(self, arrow_type: str, params: Any, state: dict, inbox: Mapping[str, Any]) -> tuple[dict, dict, dict]:
        zero = jnp.zeros((self.d,))
        x, m = inbox.get("x", zero), inbox.get("m", zero)
        decay = _param(params, "decay")
        h = jnp.tanh(_param(params, "scale") * state["w"] * (x + state["code"]) + state["e"])
        new = {**state, "h": h, "e": decay * state["e"] + m, "tr": decay * state["tr"] + h}
        return new, {"out": h, "aux": state["w"] * m + x}, {"w": -_param(params, "lr") * m * h}


def probe_kinds(d: int) -> list[Probe]:
    """The probe family for message size ``d``.

    ``probe_sum``, ``probe_mean``, ``probe_max``, ``probe_lse``: one forward port ``"x"`` and one
    backward port ``"m"``, both with that aggregation. ``probe_ab``: forward ports ``"a"`` (sum)
    and ``"b"`` (mean), backward ports ``"a"`` (max) and ``"b"`` (logsumexp).

    Example:
        >>> {k.name: sorted(k.forward_ports) for k in probe_kinds(3)}["probe_ab_d3"]
        ['a', 'b']
    """
    d = _check_d(d)
    single = [
        Probe(d, f"probe_{tag}_d{d}", {"x": agg}, {"m": agg})
        for tag, agg in (("sum", "sum"), ("mean", "mean"), ("max", "max"), ("lse", "logsumexp"))
    ]
    two = Probe(d, f"probe_ab_d{d}", {"a": "sum", "b": "mean"}, {"a": "max", "b": "logsumexp"})
    return [*single, two]


def mixer_kinds(d: int, acts_on: tuple[str, ...] = ()) -> list[Mixer]:
    """Two mixers for message size ``d``: ``mixer`` (x: sum, g: max, m: mean) and ``mixer_lse``
    (x: mean, g: logsumexp, m: sum), acting also on the user-named types ``acts_on``.

    Example:
        >>> [k.backward_ports["m"].aggregation for k in mixer_kinds(1)]
        ['mean', 'sum']
    """
    d = _check_d(d)
    return [
        Mixer(d, f"mixer_d{d}", "sum", "max", "mean", acts_on),
        Mixer(d, f"mixer_lse_d{d}", "mean", "logsumexp", "sum", acts_on),
    ]


def test_kinds(d: int) -> list[Kind]:
    """Every test kind for message size ``d``: :func:`probe_kinds` then :func:`mixer_kinds`.

    Example:
        >>> from agentgraph import AgentGraph
        >>> g = AgentGraph(kinds=test_kinds(1))
        >>> g.add_agent("p", kind="probe_sum_d1", state={"code": [1.0]})
        'p'
    """
    return [*probe_kinds(d), *mixer_kinds(d)]


# pytest would otherwise try to collect ``test_kinds`` as a test when it is imported into a
# test module.
test_kinds.__test__ = False  # type: ignore[attr-defined]
