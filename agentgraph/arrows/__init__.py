"""Arrow kinds: types (forward, backward, reflexive), ports, message sizes and aggregations."""

from agentgraph.arrows.ports import AGGREGATIONS, Aggregation, Port, aggregate
from agentgraph.arrows.types import ARROW_TYPES, BACKWARD, FORWARD, REFLEXIVE, ArrowType

__all__ = [
    "AGGREGATIONS",
    "ARROW_TYPES",
    "Aggregation",
    "ArrowType",
    "BACKWARD",
    "FORWARD",
    "Port",
    "REFLEXIVE",
    "aggregate",
]
