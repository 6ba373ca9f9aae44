"""agentgraph: a graph-of-agents simulation engine for learned learning rules.

Declare a directed multigraph of stateful agents joined by typed arrows, check it, run it with
the reference interpreter, and (soon) compile it to batched JAX kernels.
"""

from agentgraph import builders, compiler, data, interpreter, learners, meta, nodes, protocols
from agentgraph.arrows import AGGREGATIONS, ARROW_TYPES, Port
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
    "Field",
    "Kind",
    "Port",
    "Program",
    "builders",
    "compile",
    "compiler",
    "data",
    "interpreter",
    "learners",
    "meta",
    "mlp",
    "nodes",
    "protocols",
    "random_dag",
]
