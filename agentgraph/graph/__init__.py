"""`AgentGraph`: a directed multigraph of stateful agents joined by typed arrows.

The graph *is* a networkx multidigraph — :meth:`AgentGraph.to_networkx` and
:meth:`AgentGraph.from_networkx` convert both ways, and :attr:`AgentGraph.nx` is a (cached)
networkx view — but it is stored column-wise (one NumPy array per attribute, agents in
declaration order), so graphs of millions of per-scalar agents build, validate and compile in
seconds. Agents can be declared one by one (:meth:`add_agent`, :meth:`add_arrow`, validated by
pydantic) or in blocks (:meth:`add_agents`, :meth:`add_arrows`, validated vectorised).

One concept a module: :mod:`~agentgraph.graph.specs` (declarations), :mod:`~agentgraph.graph.columns`
(the column store a graph owns), :mod:`~agentgraph.graph.arrays` (the column arrays read from it),
:mod:`~agentgraph.graph.validate`, :mod:`~agentgraph.graph.waves` (topological
waves), :mod:`~agentgraph.graph.nx_io` (the networkx round trip) and
:mod:`~agentgraph.graph.agent_graph` (the class itself).

networkx attributes
-------------------
Node attributes
    ``kind`` (str, required) — the name of the agent's :class:`~agentgraph.nodes.Kind`.
    ``group`` (str, default: the kind's name) — the parameter-sharing key: every agent of a group
    receives the same protocol parameters.
    ``state`` (dict field → array-like, optional) — initial values of some state fields; the rest
    take the field's default.
    ``slot`` (int) — for kinds that read external data (inputs, targets): the batch column.
    ``ties`` (dict field → tie name, optional) — the agent shares that per-agent field with the
    other members of the tie (:mod:`~agentgraph.graph.ties`); a tie whose reduction is not
    ``"sum"`` is listed in the graph attribute ``ties`` (dict tie name → reduction).

Edge attributes (one edge = one arrow; parallel edges are parallel arrows)
    ``type`` — ``"forward"``, ``"backward"`` or ``"reflexive"`` (a self-loop).
    ``port`` — the destination's input port (may be omitted when the destination kind has a
    single port of that type; ``None`` for reflexive arrows).
    ``src_port`` (default ``"out"``) — which of the source's outputs of that type the arrow carries.
"""


from agentgraph.graph.agent_graph import AgentGraph
from agentgraph.graph.arrays import GraphArrays
from agentgraph.graph.specs import AgentSpec, ArrowSpec

__all__ = ["AgentGraph", "AgentSpec", "ArrowSpec", "GraphArrays"]
