"""agentgraph: a graph-of-agents simulation engine for learned learning rules.

Declare a directed multigraph of stateful agents joined by typed arrows (:mod:`agentgraph.graph`),
run it with the float64 reference interpreter (:mod:`agentgraph.interpreter`) or compile it to a
few batched JAX kernels (:mod:`agentgraph.compiler`), put a learning rule on it
(:mod:`agentgraph.protocols`: MPLP, backprop, BLUR, or your own through the
:class:`~agentgraph.protocols.base.Protocol` contract) and meta-train the rule end to end
(:mod:`agentgraph.meta`).
"""

from agentgraph import builders, compiler, data, interpreter, learners, meta, models, network, nodes, protocols
from agentgraph.arrows import AGGREGATIONS, ARROW_TYPES, DEFAULT_SCHEDULE, Phase, Port, Schedule
from agentgraph.builders import mlp, random_dag
from agentgraph.compiler import Program, compile
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph, AgentSpec, ArrowSpec
from agentgraph.nodes import Field, Kind

__version__ = "0.1.0"

__all__ = [
    "AGGREGATIONS",
    "ARROW_TYPES",
    "AgentGraph",
    "AgentGraphError",
    "AgentSpec",
    "ArrowSpec",
    "DEFAULT_SCHEDULE",
    "Field",
    "Kind",
    "Phase",
    "Port",
    "Program",
    "Schedule",
    "builders",
    "compile",
    "compiler",
    "data",
    "interpreter",
    "learners",
    "meta",
    "mlp",
    "models",
    "network",
    "nodes",
    "protocols",
    "random_dag",
]
