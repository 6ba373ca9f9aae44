"""The raw declarations of one interpreted step (:class:`Case`), and a case invalid in exactly
one way paired with its valid twin (:class:`Malformed`) — what
:func:`~agentgraph.testing.malformed.malformed_graphs` draws.

A case is declared through one of three routes (:data:`VIAS`): ``from_networkx``, one
``add_agent``/``add_arrow`` per element, or ``add_agents``/``add_arrows`` blocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import networkx as nx
from hypothesis.errors import InvalidArgument

from agentgraph.graph import AgentGraph
from agentgraph.interpreter import StepResult, init_state, step

__all__ = ["VIAS", "Case", "Malformed"]

#: The ways a :class:`Case` can be declared: ``"networkx"`` (:meth:`AgentGraph.from_networkx`),
#: ``"api"`` (one :meth:`~AgentGraph.add_agent` / :meth:`~AgentGraph.add_arrow` per element) and
#: ``"bulk"`` (:meth:`~AgentGraph.add_agents` / :meth:`~AgentGraph.add_arrows`, checked by
#: :meth:`~AgentGraph.validate`).
VIAS: tuple[str, ...] = ("networkx", "api", "bulk")


@dataclasses.dataclass
class Case:
    """Everything one interpreted step needs, as raw declarations.

    Attributes:
        graph: the declaration as a networkx graph (node/edge attributes as in
            :mod:`agentgraph.graph`).
        kinds: the kinds to register (may hold garbage, to test that).
        batch: the batch passed to :func:`~agentgraph.interpreter.step`.
        batch_size: passed to :func:`~agentgraph.interpreter.init_state`.
        params: passed to :func:`~agentgraph.interpreter.step`.
        state_edit: applied to the initial state before stepping (to break it).
        extra_agents: ``(name, attrs)`` declared after the graph's agents (``api``/``bulk`` only).
        extra_arrows: ``(src, dst, attrs)`` declared after the graph's arrows (``api``/``bulk``).
    """

    graph: Any
    kinds: tuple[Any, ...]
    batch: Any
    batch_size: Any = 1
    params: Any = None
    state_edit: Callable[[dict], dict] | None = None
    extra_agents: tuple[tuple[Any, dict], ...] = ()
    extra_arrows: tuple[tuple[Any, Any, dict], ...] = ()

    def build(self, via: str = "networkx") -> AgentGraph:
        """Declare the graph through ``via`` (one of :data:`VIAS`) and validate it."""
        if via == "networkx":
            g = AgentGraph.from_networkx(self.graph, kinds=self.kinds)
        elif via == "api":
            g = AgentGraph(kinds=self.kinds)
            for name, a in [*self.graph.nodes(data=True), *self.extra_agents]:
                g.add_agent(name, a.get("kind"), group=a.get("group"), state=a.get("state"), slot=a.get("slot"))
            for s, d, a in [*self.graph.edges(data=True), *self.extra_arrows]:
                g.add_arrow(s, d, a.get("type"), port=a.get("port"), src_port=a.get("src_port", "out"))
        elif via == "bulk":
            g = AgentGraph(kinds=self.kinds)
            for name, a in [*self.graph.nodes(data=True), *self.extra_agents]:
                state = a.get("state")
                if isinstance(state, Mapping):
                    state = {f: [v] for f, v in state.items()}
                slot = a.get("slot")
                g.add_agents(
                    [name], a.get("kind"), groups=[a.get("group")], states=state,
                    slots=None if slot is None else [slot],
                )
            for s, d, a in [*self.graph.edges(data=True), *self.extra_arrows]:
                g.add_arrows([s], [d], a.get("type"), port=a.get("port"), src_port=a.get("src_port", "out"))
        else:
            raise InvalidArgument(f"via={via!r}; choose one of {VIAS}.")
        return g.validate()

    def run(self, via: str = "networkx") -> StepResult:
        """Build through ``via``, then run one traced interpreter step."""
        g = self.build(via)
        state = init_state(g, self.batch_size)
        if self.state_edit is not None:
            state = self.state_edit(state)
        return step(g, state, self.params, self.batch, trace=True)


@dataclasses.dataclass(frozen=True)
class Malformed:
    """A :class:`Case` that is invalid in exactly one way, and its valid twin.

    Attributes:
        category: the family of defect (e.g. ``"forward_cycle"``, ``"garbage_node"``).
        variant: the exact defect within the family (e.g. ``"kind=list"``).
        description: a sentence saying what is wrong and where.
        case: the broken case; ``case.run(via)`` must raise
            :class:`~agentgraph.AgentGraphError` for every ``via`` in ``vias``.
        base: the same case without the defect; ``base.run(via)`` succeeds.
        culprits: substrings (``repr`` of agent names, or e.g. ``"batch['x']"``) the error
            message must contain.
        vias: the declaration routes that can express the defect.
        bulk_culprits: if not ``None``, replaces ``culprits`` for the ``"bulk"`` route, whose
            calls declare blocks of agents and may name the offending argument (e.g. the state
            field) rather than an agent.
    """

    category: str
    variant: str
    description: str
    case: Case
    base: Case
    culprits: tuple[str, ...]
    vias: tuple[str, ...] = VIAS
    bulk_culprits: tuple[str, ...] | None = None

    def culprits_for(self, via: str) -> tuple[str, ...]:
        """The substrings the error message must contain when the case is declared via ``via``."""
        if via == "bulk" and self.bulk_culprits is not None:
            return self.bulk_culprits
        return self.culprits

    def describe(self) -> str:
        """A multi-line account of the broken case: defect, culprits, agents, arrows, inputs."""
        g = self.case.graph
        lines = [f"{self.category}/{self.variant}: {self.description}", f"culprits: {self.culprits}"]
        if isinstance(g, nx.Graph):
            lines += [f"agent {n!r}: {a}" for n, a in g.nodes(data=True)]
            lines += [f"arrow {s!r} -> {d!r}: {a}" for s, d, a in g.edges(data=True)]
        else:
            lines.append(f"graph: {g!r}")
        lines += [f"extra agent {n!r}: {a}" for n, a in self.case.extra_agents]
        lines += [f"extra arrow {s!r} -> {d!r}: {a}" for s, d, a in self.case.extra_arrows]
        lines.append(f"batch: {self.case.batch!r}, batch_size: {self.case.batch_size!r}, params: {self.case.params!r}")
        return "\n".join(lines)
