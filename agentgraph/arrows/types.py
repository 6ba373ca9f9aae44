"""Arrow types: which pass of an inner step an arrow belongs to."""

from __future__ import annotations

from typing import Literal

__all__ = ["ArrowType", "ARROW_TYPES", "FORWARD", "BACKWARD", "REFLEXIVE"]

#: The three arrow types. ``forward`` arrows run in the forward sweep, ``backward`` arrows in the
#: backward sweep, ``reflexive`` arrows are self-loops that update an agent's own state at the
#: end of the step.
ArrowType = Literal["forward", "backward", "reflexive"]
FORWARD: ArrowType = "forward"
BACKWARD: ArrowType = "backward"
REFLEXIVE: ArrowType = "reflexive"
ARROW_TYPES: tuple[ArrowType, ...] = (FORWARD, BACKWARD, REFLEXIVE)
