"""Declarations a kind makes about its own maths, so the compiler can lower blocks to matmuls.

A kind's per-agent functions are opaque to the compiler. A complete bipartite block of synapse
agents therefore runs as ``I·J`` scalar products per example, materialised and then summed by the
receivers, where a hand-written network does one matrix product. A kind that *declares* the
structure of a sweep lets the compiler do the same:

* :class:`Linear` — output ``o`` of a sweep is ``state[coef] ⊙ pre(params, inputs[port])``: linear
  in the input, with the agent's own per-agent field as the coefficient. Where a block of such
  agents is fed by a broadcast (every sender reaches a row or a column of the block) and read by
  receivers that sum a column or a row, the receivers get ``einsum`` over the block's coefficient
  matrix instead (lowering ``matmul``, :mod:`agentgraph.compiler.linear`).
* :class:`Outer` — the sweep's update of a per-agent field is
  ``decay(params) ⊙ state[field] + scale(params) ⊙ m(params, messages[port]) ⊙ x(params, state[stored])``,
  where ``state[stored]`` holds the forward input ``inputs[stored_from]`` (as the kind received
  it). For a block fed by broadcasts on both sides this is an outer product of the two senders'
  vectors, averaged over the batch: one ``einsum``.

A declaration is trusted only where the class that makes it also defines (or inherits from a
base) the functions it covers: a subclass that overrides ``backward`` without redeclaring runs
agent by agent (:meth:`~agentgraph.Kind.declared_linear`). It is a promise: the kind's functions
must compute exactly what it says (the
interpreter only runs the functions; ``agentgraph.testing.check_declarations`` checks a kind's
promise numerically, and the property tests compare the compiled program against the
interpreter). Only dense blocks use them: ``compile(g, linear=False)`` ignores every declaration.

Example:
    >>> from agentgraph.nodes import Synapse
    >>> Synapse().linear("forward")["out"].coef, Synapse().outer_updates()["w"].stored
    ('w', 'x')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["Linear", "Outer"]

Fn = Callable[[Any, Any], Any]  # (params, vector [size]) -> vector [size]
Scalar = Callable[[Any], Any]  # params -> scalar or vector [size]


@dataclasses.dataclass(frozen=True)
class Linear:
    """Output = ``state[coef] ⊙ pre(params, inputs[port])`` for one agent and one example.

    Attributes:
        port: the sweep's input port (the message as the kind receives it, after any premap).
        coef: a per-agent field of shape ``()`` or ``(d,)``, ``d`` the output size.
        pre: ``(params, v [size]) -> [d]``, a per-example map that must not read the state
            (``None``: the identity).

    Example:
        >>> Linear("x", "w").pre is None
        True
    """

    port: str
    coef: str
    pre: Fn | None = None


@dataclasses.dataclass(frozen=True)
class Outer:
    """Update of a per-agent field: ``decay ⊙ field + scale ⊙ m(message) ⊙ x(stored)``.

    Attributes:
        port: the port (of the phase ``phase``) whose message is ``message``.
        stored: the per-example field that holds the forward input ``inputs[stored_from]``.
        stored_from: that forward port.
        scale: ``params -> scalar or [d]``.
        message_map / stored_map: ``(params, v) -> [d]`` per-example maps (``None``: identity).
        decay: ``params -> scalar or [d]`` (``None``: no term in the field itself).
        phase: the arrow type whose function makes the update (default ``backward``).
        pair: instead of a stored forward input, ``x`` is the message at this other port of the
            same phase (``stored``/``stored_from`` are then unused) — e.g. exact BLUR's update
            from both neurons' final states.

    Example:
        >>> Outer("m", "x", "x", scale=lambda p: -0.1).decay is None
        True
    """

    port: str
    stored: str
    stored_from: str
    scale: Scalar
    message_map: Fn | None = None
    stored_map: Fn | None = None
    decay: Scalar | None = None
    phase: str = "backward"
    pair: str | None = None
