"""Arrow types: which phase of an inner step an arrow belongs to (the library's three; a
:class:`~agentgraph.arrows.Schedule` may add user-named ones)."""

from __future__ import annotations

__all__ = ["ArrowType", "ARROW_TYPES", "FORWARD", "BACKWARD", "REFLEXIVE"]

#: The three arrow types. ``forward`` arrows run in the forward sweep, ``backward`` arrows in the
#: backward sweep, ``reflexive`` arrows are self-loops that update an agent's own state at the
#: end of the step.
#: An arrow type's name: one of the library's three, or any user-named type a
#: :class:`~agentgraph.arrows.Schedule` runs (``str``).
ArrowType = str
FORWARD: ArrowType = "forward"
BACKWARD: ArrowType = "backward"
REFLEXIVE: ArrowType = "reflexive"
ARROW_TYPES: tuple[ArrowType, ...] = (FORWARD, BACKWARD, REFLEXIVE)
