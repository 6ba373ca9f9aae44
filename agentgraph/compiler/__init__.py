"""The compiler: lower an agent graph to a pure-JAX :class:`Program` (see docs/compiler.md)."""

from agentgraph.compiler.plan import Plan, make_plan
from agentgraph.compiler.program import Program, compile

__all__ = ["Plan", "Program", "compile", "make_plan"]
