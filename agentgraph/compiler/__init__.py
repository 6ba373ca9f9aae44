"""The compiler: lower an agent graph to a pure-JAX :class:`Program` (see docs/compiler.md)."""

from agentgraph.compiler.plan import Bucket, Plan, make_bucket, make_plan
from agentgraph.compiler.program import Program, compile, stack_arrays
from agentgraph.graph.waves import generations

__all__ = ["Bucket", "Plan", "Program", "compile", "generations", "make_bucket", "make_plan", "stack_arrays"]
