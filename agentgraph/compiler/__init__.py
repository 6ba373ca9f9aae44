"""The compiler: lower an agent graph to a pure-JAX :class:`Program` (see docs/compiler.md).

One concept a module: :mod:`~agentgraph.compiler.plan` (numbering, waves, blocks: the static
plan and its index arrays), :mod:`~agentgraph.compiler.lowerings` (how a port gathers and
aggregates), :mod:`~agentgraph.compiler.step` (blocks run wave by wave: one inner step),
:mod:`~agentgraph.compiler.program` (:class:`Program`, a registered pytree, and
:func:`compile`), :mod:`~agentgraph.compiler.buckets` (padded buckets and :func:`compile_pool`:
many graphs, one executable).
"""

from agentgraph.compiler.buckets import Bucket, compile_pool, make_bucket
from agentgraph.compiler.plan import Plan, make_plan
from agentgraph.compiler.program import Program, compile
from agentgraph.graph.waves import generations

__all__ = ["Bucket", "Plan", "Program", "compile", "compile_pool", "generations", "make_bucket", "make_plan"]
