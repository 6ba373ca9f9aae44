"""Arrow kinds: types (forward, backward, reflexive, or user-named), ports, message sizes,
aggregations, and the schedule of phases that says what runs when."""

from agentgraph.arrows.ports import AGGREGATIONS, Aggregation, Port, aggregate
from agentgraph.arrows.schedule import DEFAULT_SCHEDULE, Phase, Schedule
from agentgraph.arrows.types import ARROW_TYPES, BACKWARD, FORWARD, REFLEXIVE, ArrowType

__all__ = [
    "AGGREGATIONS",
    "ARROW_TYPES",
    "Aggregation",
    "ArrowType",
    "BACKWARD",
    "DEFAULT_SCHEDULE",
    "Phase",
    "Schedule",
    "FORWARD",
    "Port",
    "REFLEXIVE",
    "aggregate",
]
