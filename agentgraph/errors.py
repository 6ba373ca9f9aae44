"""The project's one exception type.

Every problem agentgraph detects in what a user declared or passed in — a graph, a kind, a
batch, a config — raises :class:`AgentGraphError`. Its message names the culprit (the agent,
the arrow, the field) and says how to fix it.
"""

from __future__ import annotations

__all__ = ["AgentGraphError"]


class AgentGraphError(ValueError):
    """A declared graph, kind or input is invalid; the message names the culprit and the fix.

    Subclasses ``ValueError`` so generic callers that catch ``ValueError`` keep working.

    Example:
        >>> from agentgraph import AgentGraph, AgentGraphError
        >>> g = AgentGraph()
        >>> try:
        ...     g.add_agent("a", kind="no-such-kind")
        ... except AgentGraphError as e:
        ...     print("unknown kind" in str(e))
        True
    """
