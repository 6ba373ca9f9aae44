"""Validation of an :class:`~agentgraph.graph.AgentGraph`, vectorised over its arrays: kinds,
initial states, slots, arrows (types, ports, output names, message sizes) and cycles.

Every error is an :class:`~agentgraph.errors.AgentGraphError` that names the first offending
agent or arrow and says how to fix it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from agentgraph.arrows.schedule import DELAYED
from agentgraph.errors import AgentGraphError
from agentgraph.graph.arrays import GraphArrays
from agentgraph.graph.ties import check_ties
from agentgraph.graph.waves import generations

if TYPE_CHECKING:
    from agentgraph.graph.agent_graph import AgentGraph

__all__ = [
    "check_arrow_combo", "check_arrows", "check_slots", "check_states", "cycle_error", "unknown_kind",
    "validate_graph",
]


def validate_graph(graph: AgentGraph) -> None:
    """Check the whole of ``graph`` (uncached; see :meth:`AgentGraph.validate`).

    Raises:
        AgentGraphError: naming the first offending agent or arrow and how to fix it.
    """
    a = graph.arrays()
    names = a.names
    if DELAYED in graph:
        raise AgentGraphError(f"No agent may be named {DELAYED!r}: the state keeps delayed messages under that key.")
    for k, kname in enumerate(a.kind_names):
        if kname not in graph.kinds:
            raise unknown_kind(graph, names[int(np.flatnonzero(a.kind == k)[0])], kname)
    check_states(graph, a)
    check_slots(graph, a)
    check_types(graph, a)
    check_arrows(graph, a)
    check_ties(graph, a)
    for t in graph.schedule.sweep_types():
        m = a.type_mask(t, delayed=False)
        generations(len(names), a.src[m], a.dst[m], on_cycle=lambda nodes, t=t, m=m: cycle_error(graph, t, m, nodes))


def check_types(graph: AgentGraph, a: GraphArrays) -> None:
    """Every arrow's type is run by the graph's schedule."""
    run = set(graph.schedule.types())
    for code in np.unique(a.type):
        t = a.type_names[code]
        if t not in run:
            e = int(np.flatnonzero(a.type == code)[0])
            raise AgentGraphError(
                f"Arrow {a.names[a.src[e]]!r} -> {a.names[a.dst[e]]!r} has type {t!r}, which no phase of "
                f"the graph's schedule runs ({graph.schedule}); add Phase({t!r}) to the schedule "
                "(AgentGraph(schedule=...) or graph.with_schedule(...))."
            )


def unknown_kind(graph: AgentGraph, agent: Hashable, name: Any) -> AgentGraphError:
    """The error for ``agent`` declared with kind ``name``, which ``graph`` does not know."""
    return AgentGraphError(
        f"Agent {agent!r} has unknown kind {name!r}. Known kinds: {sorted(graph.kinds)}. "
        "Register a user-defined kind with AgentGraph(kinds=[MyKind()]) or graph.add_kind()."
    )


def check_states(graph: AgentGraph, a: GraphArrays) -> None:
    """Every declared initial state names a field of the agent's kind, with the field's shape."""
    names = a.names
    for rows, f, vals in graph.state_declarations():
        for k in np.unique(a.kind[rows]):
            kind = graph.kinds[a.kind_names[k]]
            first = names[int(rows[a.kind[rows] == k][0])]
            spec = kind.fields.get(f)
            if spec is None:
                raise AgentGraphError(
                    f"Agent {first!r} of kind {kind.name!r} declares unknown state field {f!r}; "
                    f"kind {kind.name!r} has fields {sorted(kind.fields)}."
                )
            if vals.shape[1:] != spec.shape:
                raise AgentGraphError(
                    f"Agent {first!r} of kind {kind.name!r}: state field {f!r} has shape "
                    f"{vals.shape[1:]}, but the kind declares shape {spec.shape}."
                )


def check_slots(graph: AgentGraph, a: GraphArrays) -> None:
    """Agents of external kinds (and only those) have a slot, distinct per batch key."""
    names = a.names
    for k, kname in enumerate(a.kind_names):
        kind = graph.kinds[kname]
        members = np.flatnonzero(a.kind == k)
        if kind.external is None:
            bad = members[a.slot[members] >= 0]
            if len(bad):
                raise AgentGraphError(
                    f"Agent {names[bad[0]]!r} of kind {kname!r} has a slot but its kind reads no external data."
                )
            continue
        bad = members[a.slot[members] < 0]
        if len(bad):
            raise AgentGraphError(
                f"Agent {names[bad[0]]!r} of kind {kname!r} reads batch[{kind.external!r}] and needs "
                "a non-negative int 'slot' (its column)."
            )
    by_key: dict[str, list[np.ndarray]] = {}
    for k, kname in enumerate(a.kind_names):
        ext = graph.kinds[kname].external
        if ext is not None:
            by_key.setdefault(ext, []).append(np.flatnonzero(a.kind == k))
    for key, parts in by_key.items():
        members = np.concatenate(parts)
        slots = a.slot[members]
        order = np.argsort(slots, kind="stable")
        dup = np.flatnonzero(slots[order][1:] == slots[order][:-1])
        if len(dup):
            i, j = members[order[dup[0]]], members[order[dup[0] + 1]]
            raise AgentGraphError(
                f"Agents {names[i]!r} and {names[j]!r} both read column {a.slot[i]} of "
                f"batch[{key!r}]; give each a distinct slot."
            )


def check_arrows(graph: AgentGraph, a: GraphArrays) -> None:
    """:func:`check_arrow_combo` once per distinct (type, kinds, ports, self-loop) combination."""
    if len(a.src) == 0:
        return
    combos = np.stack([a.type.astype(np.int64), a.kind[a.src], a.kind[a.dst],
                       a.port.astype(np.int64), a.src_port.astype(np.int64), (a.src == a.dst).astype(np.int64),
                       a.delay.astype(np.int64)], 1)
    uniq, first = np.unique(combos, axis=0, return_index=True)
    for (t, sk, dk, p, sp, loop, dl), e in zip(uniq, first):
        check_arrow_combo(
            graph, a.names[a.src[e]], a.names[a.dst[e]], a.type_names[t],
            None if p < 0 else a.strings[p], a.strings[sp], kinds=(a.kind_names[sk], a.kind_names[dk]),
            delay=bool(dl),
        )


def check_arrow_combo(graph: AgentGraph, s: Hashable, d: Hashable, t: str, port: str | None, src_port: str,
                      kinds: tuple[str, str] | None = None, delay: bool = False) -> None:
    """Check one arrow ``s -> d`` of type ``t`` into ``port`` from output ``src_port``.

    ``kinds`` (source and destination kind names) saves looking the agents' kinds up.
    """
    label = f"Arrow {s!r} -> {d!r} [{t}{', delayed' if delay else ''}]"
    if kinds is None:
        sk, dk = graph.kind_of(s), graph.kind_of(d)
    else:
        sk, dk = graph.kinds[kinds[0]], graph.kinds[kinds[1]]
    if graph.schedule.is_self(t):
        if s != d:
            raise AgentGraphError(f"{label}: a {t} arrow must be a self-loop (src == dst): {t!r} is a self-loop phase of the schedule.")
        if delay:
            raise AgentGraphError(f"{label}: arrows of the self-loop type {t!r} carry no messages and cannot be delayed.")
        if not sk.runs(t):
            fn = t if t == "reflexive" else "act"
            raise AgentGraphError(
                f"{label}: kind {sk.name!r} has no {t} function; implement "
                f"{type(sk).__name__}.{fn}{'' if t == 'reflexive' else f' and list {t!r} in acts_on'} or remove the arrow."
            )
        return
    if s == d and not delay:
        raise AgentGraphError(
            f"{label}: a {t} arrow from an agent to itself is a cycle; use a reflexive arrow, or make it "
            "delayed (delay=True) to deliver at the next step."
        )
    ports = dk.ports(t)
    if dk.external is not None and port == "data":
        raise AgentGraphError(
            f"{label}: port 'data' of {d!r} ({dk.name}) is fed by batch[{dk.external!r}]; "
            "arrows cannot deliver into it."
        )
    if port not in ports:
        raise AgentGraphError(
            f"{label}: kind {dk.name!r} of agent {d!r} has no {t} port {port!r}; its {t} ports "
            f"are {sorted(ports)}."
        )
    if not dk.runs(t):
        raise AgentGraphError(f"{label}: kind {dk.name!r} does not run in the {t} phase.")
    outs = sk.outputs(t)
    if src_port not in outs or not sk.runs(t):
        raise AgentGraphError(
            f"{label}: kind {sk.name!r} of agent {s!r} sends no {t} output {src_port!r}; its "
            f"{t} outputs are {sorted(outs)}."
        )
    if outs[src_port] != ports[port].size:
        raise AgentGraphError(
            f"{label}: message size mismatch — {s!r} ({sk.name}) sends {t} output "
            f"{src_port!r} of size {outs[src_port]}, but port {port!r} of {d!r} ({dk.name}) "
            f"takes size {ports[port].size}."
        )


def cycle_error(graph: AgentGraph, t: str, mask: np.ndarray, nodes: np.ndarray) -> AgentGraphError:
    """The error naming one cycle among the ``t`` arrows (``mask``) left over ``nodes``."""
    a = graph.arrays()
    keep = np.zeros(len(a.names), bool)
    keep[nodes] = True
    m = mask & keep[a.src] & keep[a.dst]
    sub = nx.DiGraph()
    sub.add_edges_from(zip(a.src[m].tolist(), a.dst[m].tolist()))
    cycle = nx.find_cycle(sub)
    path = " -> ".join(repr(a.names[e[0]]) for e in cycle) + f" -> {a.names[cycle[0][0]]!r}"
    return AgentGraphError(
        f"The {t} arrows form a cycle: {path}. Every cycle must pass through a delayed arrow; "
        f"remove one of these arrows or declare it with delay=True (a self-update belongs on a reflexive arrow)."
    )
