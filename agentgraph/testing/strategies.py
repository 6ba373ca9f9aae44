"""Hypothesis strategies for agent graphs, their states, params and batches.

* :func:`agent_graphs` — random valid :class:`~agentgraph.AgentGraph` s: non-layered DAGs of
  forward arrows and, in an independent random order, of backward arrows; parallel arrows;
  reflexive self-loops; isolated agents; fan-in from 0 to many; random ports, output names,
  groups, agent names and unique identity codes.
  With a :class:`~agentgraph.arrows.Schedule` (see :func:`schedules`), arrows of every type it
  runs, and with ``max_delayed`` delayed arrows that close cycles (self-loops included).
* :func:`schedules` — random schedules: phase orders, repeated phases, user-named types.
* :func:`states`, :func:`group_params`, :func:`batches` — what a step of such a graph needs.
* :func:`malformed_graphs` — graphs and inputs that are invalid in exactly one way, each with
  the names its error message must contain (:class:`Malformed`, :class:`Case`).

Conventions: agents are declared in one random order, arrows in another; the forward arrows go
from earlier to later agents of a random permutation, the backward arrows likewise in an
independent permutation, so both subgraphs are acyclic but neither follows declaration order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

import networkx as nx
import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from agentgraph.arrows.ports import Port
from agentgraph.arrows.schedule import DEFAULT_SCHEDULE, DELAYED, Phase, Schedule
from agentgraph.graph import AgentGraph
from agentgraph.interpreter import StepResult, init_state, step
from agentgraph.nodes.base import Kind
from agentgraph.testing.kinds import Mixer, Probe, mixer_kinds, probe_kinds, test_kinds

__all__ = [
    "Case",
    "DEFAULT_GROUPS",
    "KindsArg",
    "MALFORMED_CATEGORIES",
    "MALFORMED_VARIANTS",
    "Malformed",
    "VIAS",
    "agent_graphs",
    "agent_names",
    "batches",
    "group_params",
    "kind_pool",
    "malformed_graphs",
    "schedules",
    "states",
]

#: Group names :func:`agent_graphs` draws from (besides ``None``, the kind's default group).
DEFAULT_GROUPS: tuple[str, ...] = ("g0", "g1", "g2")

#: ``"probe"``, ``"mixer"``, ``"any"`` (both families of :mod:`agentgraph.testing.kinds`), or an
#: explicit sequence of kind instances.
KindsArg = Literal["probe", "mixer", "any"] | Sequence[Kind]


def agent_names() -> st.SearchStrategy[Hashable]:
    """Agent names of mixed types: small ints, short strings and ``("u"|"v", int)`` tuples.

    Mixing types catches code that sorts or compares names (it must not).

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=10, database=None, deadline=None)
        ... @given(agent_names())
        ... def check(name):
        ...     assert hash(name) == hash(name) and name is not None
        >>> check()
    """
    return st.one_of(
        st.integers(0, 99),
        st.text("abcdefgh", min_size=1, max_size=3),
        st.tuples(st.sampled_from(("u", "v")), st.integers(0, 9)),
    )


def kind_pool(kinds: KindsArg, d: int) -> list[Kind]:
    """The kinds an :func:`agent_graphs` graph of message size ``d`` draws its agents from.

    Example:
        >>> [k.name for k in kind_pool("mixer", 2)]
        ['mixer_d2', 'mixer_lse_d2']
    """
    if isinstance(kinds, str):
        table = {"probe": probe_kinds, "mixer": mixer_kinds, "any": test_kinds}
        if kinds not in table:
            raise InvalidArgument(f"kinds={kinds!r}; use 'probe', 'mixer', 'any' or a list of Kinds.")
        return list(table[kinds](d))
    pool = list(kinds)
    if not pool or not all(isinstance(k, Kind) for k in pool):
        raise InvalidArgument(f"kinds={kinds!r} must be a non-empty sequence of Kind instances.")
    return pool


def _declared_state(kind: Kind, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
    """Random initial values: identity codes for probes, every field for mixers."""
    if isinstance(kind, Probe):
        return {f: rng.normal(size=kind.fields[f].shape) for f in ("code", "bcode")}
    if isinstance(kind, Mixer):
        return {f: 0.5 * rng.normal(size=spec.shape) for f, spec in kind.fields.items()}
    return None


def _connect(
    draw: Any,
    arrow_type: str,
    order: Sequence[int],
    kinds: Sequence[Kind],
    max_fan_in: int,
    max_parallel: int,
) -> list[tuple[int, int, dict[str, Any]]]:
    """Arrows of ``arrow_type`` from earlier to later agents of ``order`` (indices)."""
    arrows: list[tuple[int, int, dict[str, Any]]] = []
    for pos in range(1, len(order)):
        j = order[pos]
        dk = kinds[j]
        if not dk.runs(arrow_type) or not dk.ports(arrow_type):
            continue
        sources = draw(st.lists(st.integers(0, pos - 1), max_size=max_fan_in))
        for q in sources:
            i = order[q]
            sk = kinds[i]
            if not sk.runs(arrow_type):
                continue
            options = [
                (o, p)
                for o, size in sk.outputs(arrow_type).items()
                for p, spec in dk.ports(arrow_type).items()
                if spec.size == size
            ]
            if not options:
                continue
            src_port, port = draw(st.sampled_from(options))
            attrs: dict[str, Any] = {"type": arrow_type, "port": port, "src_port": src_port}
            if len(dk.ports(arrow_type)) == 1 and draw(st.booleans()):
                attrs["port"] = None  # let the graph fill in the only port
            for _ in range(draw(st.integers(1, max_parallel))):
                arrows.append((i, j, dict(attrs)))
    return arrows


@st.composite
def schedules(
    draw: Any,
    sweep_types: Sequence[str] = ("forward", "backward", "t1", "t2"),
    self_types: Sequence[str] = ("reflexive", "s1"),
    max_phases: int = 6,
    max_repeat: int = 2,
) -> Schedule:
    """Random schedules: 1..``max_phases`` phases drawn from ``sweep_types`` (sweeps) and
    ``self_types`` (self-loop phases), in random order, types possibly repeated, each phase
    repeated 1..``max_repeat`` times; the loss is read after a random phase or at the end.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=10, database=None, deadline=None)
        ... @given(schedules())
        ... def check(s):
        ...     assert 1 <= len(s.phases) <= 6 and sum(p.loss for p in s.phases) <= 1
        >>> check()
    """
    options = [(t, False) for t in sweep_types] + [(t, True) for t in self_types]
    picks = draw(st.lists(st.sampled_from(options), min_size=1, max_size=max_phases))
    loss_at = draw(st.integers(-1, len(picks) - 1))
    return Schedule(tuple(
        Phase(t, repeat=draw(st.integers(1, max_repeat)), self_loops=is_self, loss=(i == loss_at))
        for i, (t, is_self) in enumerate(picks)
    ))


def _delayed(draw: Any, arrow_type: str, n: int, kinds: Sequence[Kind], count: int) -> list[tuple[int, int, dict]]:
    """Up to ``count`` delayed arrows of ``arrow_type`` between any two agents (self-loops and
    back-edges included: they close cycles through delayed arrows)."""
    arrows = []
    for _ in range(draw(st.integers(0, count)) if n else 0):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        sk, dk = kinds[i], kinds[j]
        if not (sk.runs(arrow_type) and dk.runs(arrow_type)):
            continue
        options = [(o, p) for o, size in sk.outputs(arrow_type).items()
                   for p, spec in dk.ports(arrow_type).items() if spec.size == size]
        if options:
            src_port, port = draw(st.sampled_from(options))
            arrows.append((i, j, {"type": arrow_type, "port": port, "src_port": src_port, "delay": True}))
    return arrows


@st.composite
def agent_graphs(
    draw: Any,
    *,
    min_agents: int = 0,
    max_agents: int = 12,
    max_parallel: int = 3,
    max_fan_in: int = 4,
    reflexive: bool = True,
    backward: bool = True,
    kinds: KindsArg = "probe",
    message_size: int | None = None,
    names: st.SearchStrategy[Hashable] | None = None,
    groups: Sequence[str] = DEFAULT_GROUPS,
    schedule: Schedule | st.SearchStrategy[Schedule] | None = None,
    max_delayed: int = 0,
) -> AgentGraph:
    """Random valid agent graphs.

    Args:
        min_agents, max_agents: bounds on the number of agents.
        max_parallel: arrows between the same pair with the same ports come in bundles of
            1..``max_parallel`` parallel arrows.
        max_fan_in: each agent draws up to this many sources per arrow type (repeats allowed,
            each then bundled), so a port may receive up to ``max_fan_in * max_parallel``
            messages.
        reflexive: draw 0..2 reflexive self-loops per agent whose kind has a reflexive function.
        backward: draw backward arrows (otherwise only forward and reflexive ones).
        kinds: ``"probe"``, ``"mixer"``, ``"any"`` or a sequence of kinds (see :func:`kind_pool`).
            Arrows are only drawn between output/port pairs of equal size.
        message_size: ``d`` for the test kinds (default: drawn from 1..3). Kind names carry it.
        names: strategy for agent names (default: :func:`agent_names`).
        groups: group names to draw from, besides ``None`` (the kind's default group).
        schedule: the graph's schedule, or a strategy drawing one (e.g. :func:`schedules`);
            arrows are drawn for every type it runs (``backward``/``reflexive`` still switch
            those two off). Default: the library's schedule.
        max_delayed: per sweep type, up to this many delayed arrows between random agents.

    Returns:
        a validated :class:`~agentgraph.AgentGraph` whose ``kinds`` include the pool. Probe
        agents declare random ``code`` and ``bcode`` (unique with probability 1); mixer agents
        declare random values for every field.

    Example:
        >>> from hypothesis import given, settings
        >>> import networkx as nx
        >>> @settings(max_examples=10, database=None, deadline=None)
        ... @given(agent_graphs(max_agents=5, kinds="any"))
        ... def check(g):
        ...     fwd = nx.DiGraph([(s, d) for s, d, _, _ in g.arrows("forward")])
        ...     assert nx.is_directed_acyclic_graph(fwd)
        ...     assert all(s == d for s, d, _, _ in g.arrows("reflexive"))
        >>> check()
    """
    if not 0 <= min_agents <= max_agents:
        raise InvalidArgument(f"need 0 <= min_agents <= max_agents, got {min_agents}, {max_agents}.")
    if max_parallel < 1 or max_fan_in < 0:
        raise InvalidArgument("need max_parallel >= 1 and max_fan_in >= 0.")
    d = draw(st.integers(1, 3)) if message_size is None else int(message_size)
    pool = kind_pool(kinds, d)
    n = draw(st.integers(min_agents, max_agents))
    agent_list = draw(st.lists(names or agent_names(), min_size=n, max_size=n, unique=True))
    agent_kinds = [draw(st.sampled_from(pool)) for _ in range(n)]
    agent_groups = [draw(st.sampled_from((None, *groups))) for _ in range(n)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    if isinstance(schedule, st.SearchStrategy):
        schedule = draw(schedule)
    schedule = DEFAULT_SCHEDULE if schedule is None else schedule
    arrows = []
    for t in schedule.sweep_types():
        if t == "backward" and not backward:
            continue
        order = draw(st.permutations(range(n)))
        arrows += _connect(draw, t, order, agent_kinds, max_fan_in, max_parallel)
        arrows += _delayed(draw, t, n, agent_kinds, max_delayed)
    for t in schedule.self_types():
        if t == "reflexive" and not reflexive:
            continue
        for i, k in enumerate(agent_kinds):
            if k.runs(t):
                arrows += [(i, i, {"type": t})] * draw(st.integers(0, 2))

    g = AgentGraph(kinds=pool, schedule=schedule)
    for name, k, grp in zip(agent_list, agent_kinds, agent_groups, strict=True):
        g.add_agent(name, k.name, group=grp, state=_declared_state(k, rng))
    for idx in rng.permutation(len(arrows)):
        i, j, a = arrows[idx]
        g.add_arrow(agent_list[i], agent_list[j], a["type"], port=a.get("port"), src_port=a.get("src_port", "out"),
                    delay=a.get("delay", False))
    return g.validate()


@st.composite
def states(draw: Any, graph: AgentGraph, batch_size: int, *, per_agent: bool = False) -> dict:
    """A random state for ``graph``: :func:`~agentgraph.interpreter.init_state` with every
    per-example field (and, if ``per_agent``, every per-agent field) replaced by values drawn
    from a standard normal (scaled by 0.5), so examples of a batch differ; so are the messages
    in flight on delayed arrows.

    Returns:
        ``{agent: {field: array}}`` — per-example fields ``[batch_size, *shape]``.

    Example:
        >>> from hypothesis import given, settings
        >>> from agentgraph.testing.kinds import mixer_kinds
        >>> g = AgentGraph(kinds=mixer_kinds(2)); _ = g.add_agent("m", "mixer_d2")
        >>> @settings(max_examples=5, database=None, deadline=None)
        ... @given(states(g, 3))
        ... def check(s):
        ...     assert s["m"]["h"].shape == (3, 2) and s["m"]["w"].shape == (2,)
        >>> check()
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = init_state(graph, batch_size)
    for key, v in out.pop(DELAYED, {}).items():  # messages in flight on delayed arrows
        out.setdefault(DELAYED, {})[key] = 0.5 * rng.normal(size=np.shape(v))
    for agent, fields in out.items():
        if agent == DELAYED:
            continue
        kind = graph.kind_of(agent)
        for f, v in fields.items():
            if kind.fields[f].per_example or per_agent:
                fields[f] = 0.5 * rng.normal(size=np.shape(v))
    return out


@st.composite
def group_params(draw: Any, graph: AgentGraph) -> dict[str, dict[str, float]]:
    """Random params for the groups of ``graph``'s mixer agents (some groups left out, so their
    agents get ``None`` and use :data:`~agentgraph.testing.kinds.MIXER_DEFAULTS`).

    Returns:
        ``{group: {"scale": float, "lr": float, "decay": float}}``.

    Example:
        >>> from hypothesis import given, settings
        >>> from agentgraph.testing.kinds import mixer_kinds
        >>> g = AgentGraph(kinds=mixer_kinds(1)); _ = g.add_agent("m", "mixer_d1", group="g0")
        >>> @settings(max_examples=5, database=None, deadline=None)
        ... @given(group_params(g))
        ... def check(p):
        ...     assert set(p) <= {"g0"}
        >>> check()
    """
    mixer_groups = sorted({graph.group_of(a) for a in graph.agents() if isinstance(graph.kind_of(a), Mixer)})
    out: dict[str, dict[str, float]] = {}
    for grp in mixer_groups:
        if draw(st.booleans()):
            out[grp] = {
                "scale": draw(st.floats(0.25, 2.0)),
                "lr": draw(st.floats(0.0, 0.5)),
                "decay": draw(st.floats(0.0, 1.0)),
            }
    return out


@st.composite
def batches(draw: Any, graph: AgentGraph, batch_size: int) -> dict[str, np.ndarray]:
    """A finite batch for the external kinds of ``graph`` (``{}`` if it has none).

    Returns:
        ``{key: [batch_size, n]}`` with ``n`` one more than the largest slot read from ``key``.

    Example:
        >>> from hypothesis import given, settings
        >>> g = AgentGraph(); _ = g.add_agent("x", "input", slot=2)
        >>> @settings(max_examples=5, database=None, deadline=None)
        ... @given(batches(g, 4))
        ... def check(b):
        ...     assert b["x"].shape == (4, 3)
        >>> check()
    """
    widths: dict[str, int] = {}
    for agent in graph.agents():
        key = graph.kind_of(agent).external
        if key is not None:
            widths[key] = max(widths.get(key, 0), int(graph.nx.nodes[agent]["slot"]) + 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return {key: rng.normal(size=(batch_size, w)) for key, w in sorted(widths.items())}


# ------------------------------------------------------------------------------------------------
# Malformed graphs and inputs
# ------------------------------------------------------------------------------------------------

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


_TYPES = ("forward", "backward")
_KINDS_1 = tuple(test_kinds(1))
_KINDS_2 = tuple(test_kinds(2))


def _is_test_agent(g: nx.MultiDiGraph, n: Hashable) -> bool:
    return g.nodes[n].get("kind") in {k.name for k in _KINDS_1}


def _kind(name: str) -> Kind:
    return {k.name: k for k in (*_KINDS_1, *_KINDS_2)}[name]


def _sub(g: nx.MultiDiGraph, t: str) -> nx.DiGraph:
    sub = nx.DiGraph()
    sub.add_nodes_from(g.nodes)
    sub.add_edges_from((s, d) for s, d, a in g.edges(data="type") if a == t)
    return sub


def _acyclic_pair(draw: Any, g: nx.MultiDiGraph, t: str, agents: Sequence[Hashable]) -> tuple[Hashable, Hashable]:
    """Two distinct agents ``(a, b)`` such that adding ``a -> b`` of type ``t`` keeps ``t`` acyclic."""
    pos = {n: i for i, n in enumerate(nx.topological_sort(_sub(g, t)))}
    a, b = draw(st.lists(st.sampled_from(list(agents)), min_size=2, max_size=2, unique=True))
    return (a, b) if pos[a] < pos[b] else (b, a)


def _port(draw: Any, kind_name: str, t: str) -> str:
    return draw(st.sampled_from(sorted(_kind(kind_name).ports(t))))


def _arrow(draw: Any, g: nx.MultiDiGraph, s: Hashable, d: Hashable, t: str) -> dict[str, Any]:
    return {"type": t, "port": _port(draw, g.nodes[d]["kind"], t), "src_port": "out"}


@st.composite
def _base_case(draw: Any) -> Case:
    """A small valid case, message size 1, possibly with input agents reading ``batch["x"]``."""
    g = draw(agent_graphs(min_agents=2, max_agents=5, max_parallel=2, max_fan_in=2, kinds="any", message_size=1))
    G = g.to_networkx()
    test_agents = list(G.nodes)
    n_inputs = draw(st.integers(0, 2))
    for i in range(n_inputs):
        name = ("in", i)
        G.add_node(name, kind="input", slot=i)
        dst = draw(st.sampled_from(test_agents))
        G.add_edge(name, dst, **_arrow(draw, G, name, dst, "forward"))
    B = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch = {"x": rng.normal(size=(B, n_inputs))} if n_inputs else {}
    return Case(graph=G, kinds=_KINDS_1 + _KINDS_2, batch=batch, batch_size=B)


def _with_input(draw: Any, case: Case) -> tuple[Case, list[Hashable]]:
    """``case`` with at least one input agent; returns it and its input agents in node order."""
    G = case.graph
    inputs = [n for n, k in G.nodes(data="kind") if k == "input"]
    if inputs:
        return case, inputs
    G = G.copy()
    name = ("in", 0)
    G.add_node(name, kind="input", slot=0)
    dst = draw(st.sampled_from([n for n in G.nodes if _is_test_agent(G, n)]))
    G.add_edge(name, dst, **_arrow(draw, G, name, dst, "forward"))
    batch = {"x": np.linspace(-1.0, 1.0, case.batch_size)[:, None]}
    return dataclasses.replace(case, graph=G, batch=batch), [name]


_DROP = object()  # marks an attribute to remove


def _set_node(G: nx.MultiDiGraph, n: Hashable, **changes: Any) -> nx.MultiDiGraph:
    """A copy of ``G`` with node ``n``'s attributes changed (``_DROP`` removes one)."""
    H = G.copy()
    attrs = dict(H.nodes[n])
    for k, v in changes.items():
        if v is _DROP:
            attrs.pop(k, None)
        else:
            attrs[k] = v
    H.nodes[n].clear()
    H.nodes[n].update(attrs)
    return H


def _cycle(draw: Any, base: Case, t: str, variant: str) -> Malformed:
    G = base.graph.copy()
    agents = [n for n in G.nodes if _is_test_agent(G, n)]
    if variant == "self-loop":
        a = draw(st.sampled_from(agents))
        G.add_edge(a, a, **_arrow(draw, G, a, a, t))
        return Malformed(
            f"{t}_cycle", variant, f"{t} arrow from {a!r} to itself", dataclasses.replace(base, graph=G),
            base, (repr(a),),
        )
    sub = _sub(G, t).subgraph(agents)
    closable = [(v, u) for u, v in sub.edges]  # adding v -> u closes a cycle through u -> v
    if closable:
        a, b = draw(st.sampled_from(closable))
        G.add_edge(a, b, **_arrow(draw, G, a, b, t))
        how = f"the new arrow {a!r} -> {b!r} closes a cycle"
    else:
        a, b = draw(st.lists(st.sampled_from(agents), min_size=2, max_size=2, unique=True))
        G.add_edge(a, b, **_arrow(draw, G, a, b, t))
        G.add_edge(b, a, **_arrow(draw, G, b, a, t))
        how = f"new arrows {a!r} -> {b!r} -> {a!r} form a cycle"
    return Malformed(
        f"{t}_cycle", variant, f"{t} arrows: {how}", dataclasses.replace(base, graph=G), base, (repr(a), repr(b)),
    )


def _forward_cycle(draw: Any, base: Case, variant: str) -> Malformed:
    return _cycle(draw, base, "forward", variant)


def _backward_cycle(draw: Any, base: Case, variant: str) -> Malformed:
    return _cycle(draw, base, "backward", variant)


def _unknown_kind(draw: Any, base: Case, variant: str) -> Malformed:
    n = draw(st.sampled_from(list(base.graph.nodes)))
    kind = {"misspelt": "Probe_sum_d1", "other size": "probe_sum_d3", "empty": "", "trailing space":
            "probe_sum_d1 ", "made up": "no_such_kind"}[variant]
    G = _set_node(base.graph, n, kind=kind)
    return Malformed(
        "unknown_kind", variant, f"agent {n!r} has unknown kind {kind!r}", dataclasses.replace(base, graph=G),
        base, (repr(n),),
    )


def _bad_arrow_end(draw: Any, base: Case, variant: str) -> Malformed:
    """A new arrow into a port the destination lacks, or from an output the source lacks."""
    base, inputs = _with_input(draw, base) if "input" in variant else (base, [])
    G = base.graph.copy()
    t = draw(st.sampled_from(_TYPES))
    agents = [n for n in G.nodes if _is_test_agent(G, n)]
    a, b = _acyclic_pair(draw, G, t, agents)
    attrs = _arrow(draw, G, a, b, t)
    if variant == "port":
        attrs["port"] = draw(st.sampled_from(["nope", "X", "in_x", "", "out"]))
    elif variant == "src_port":
        attrs["src_port"] = draw(st.sampled_from(["nope", "x", "m", ""]))
    elif variant == "backward into input":  # inputs have no backward ports
        b = draw(st.sampled_from(inputs))
        attrs = {"type": "backward", "port": "m", "src_port": "out"}
    else:  # backward out of an input: inputs send nothing backward
        a = draw(st.sampled_from(inputs))
        attrs = {"type": "backward", "port": _port(draw, G.nodes[b]["kind"], "backward"), "src_port": "out"}
    G.add_edge(a, b, **attrs)
    return Malformed(
        "bad_arrow_end", variant, f"arrow {a!r} -> {b!r} {attrs}", dataclasses.replace(base, graph=G), base,
        (repr(a), repr(b)),
    )


def _size_mismatch(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph.copy()
    new = ("new", 0)
    G.add_node(new, kind=draw(st.sampled_from(_KINDS_2)).name)
    t, direction = variant.split()
    other = draw(st.sampled_from([n for n in base.graph.nodes if _is_test_agent(G, n)]))
    a, b = (new, other) if direction == "from-size-2" else (other, new)
    G.add_edge(a, b, **_arrow(draw, G, a, b, t))
    return Malformed(
        "size_mismatch", variant, f"{t} arrow {a!r} -> {b!r} joins message sizes 1 and 2",
        dataclasses.replace(base, graph=G), base, (repr(a), repr(b)),
    )


def _bad_state(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph
    n = draw(st.sampled_from([x for x in G.nodes if _is_test_agent(G, x)]))
    kind = _kind(G.nodes[n]["kind"])
    f = draw(st.sampled_from(sorted(kind.fields)))
    shape = kind.fields[f].shape
    state = dict(G.nodes[n].get("state") or {})
    if variant == "shape":
        state[f] = np.zeros(draw(st.sampled_from([(*shape, 1), (2, *shape), (*shape, 3)])))
    elif variant == "unknown field":
        f = draw(st.sampled_from(["bogus", "in_zz", "W"]))
        state[f] = 0.0
    elif variant in ("nan", "inf"):
        v = np.zeros(shape)
        v.flat[0] = np.nan if variant == "nan" else draw(st.sampled_from([np.inf, -np.inf]))
        state[f] = v
    else:
        state[f] = draw(st.sampled_from(["abc", [[1.0], [2.0, 3.0]], {"a": 1}]))
    H = _set_node(G, n, state=state)
    return Malformed(
        "bad_state", variant, f"agent {n!r} declares a bad value for field {f!r}", dataclasses.replace(base, graph=H),
        base, (repr(n),), bulk_culprits=None if variant in ("nan", "inf") else (repr(f),),
    )


def _bad_reflexive(draw: Any, base: Case, variant: str) -> Malformed:
    if variant == "kind without reflexive":
        base, inputs = _with_input(draw, base)
        G = base.graph.copy()
        a = b = draw(st.sampled_from(inputs))
    else:
        G = base.graph.copy()
        agents = [n for n in G.nodes if _is_test_agent(G, n)]
        a, b = draw(st.lists(st.sampled_from(agents), min_size=2, max_size=2, unique=True))
    G.add_edge(a, b, type="reflexive", port=None, src_port="out")
    return Malformed(
        "bad_reflexive", variant, f"reflexive arrow {a!r} -> {b!r}", dataclasses.replace(base, graph=G), base,
        (repr(a), repr(b)),
    )


def _bad_slot(draw: Any, base: Case, variant: str) -> Malformed:
    base, inputs = _with_input(draw, base)
    G = base.graph
    n = draw(st.sampled_from(inputs))
    culprits = (repr(n),)
    if variant == "missing":
        H = _set_node(G, n, slot=_DROP)
    elif variant == "negative":
        H = _set_node(G, n, slot=draw(st.sampled_from([-1, -7])))
    elif variant.startswith("slot="):
        H = _set_node(G, n, slot={"slot=str": "abc", "slot=float": 0.5, "slot=list": [0]}[variant])
    elif variant == "duplicate":
        H = G.copy()
        other = ("in", 99)
        H.add_node(other, kind="input", slot=G.nodes[n]["slot"])
        culprits = (repr(n), repr(other))
    elif variant == "out of range":
        H = _set_node(G, n, slot=int(np.shape(base.batch["x"])[1]) + draw(st.integers(0, 3)))
    else:  # a slot on an agent whose kind reads no data
        n = draw(st.sampled_from([x for x in G.nodes if _is_test_agent(G, x)]))
        H = _set_node(G, n, slot=0)
        culprits = (repr(n),)
    return Malformed(
        "bad_slot", variant, f"agent {n!r}: {variant} slot", dataclasses.replace(base, graph=H), base, culprits,
    )


def _bad_batch(draw: Any, base: Case, variant: str) -> Malformed:
    base, inputs = _with_input(draw, base)
    G = base.graph
    x = np.array(base.batch["x"], dtype=np.float64)
    B, cols = x.shape
    if variant in ("nan", "inf"):
        n = draw(st.sampled_from(inputs))
        x[draw(st.integers(0, B - 1)), G.nodes[n]["slot"]] = np.nan if variant == "nan" else np.inf
        batch: Any = {"x": x}
        culprits = (repr(n),)
    elif variant == "missing key":
        batch = {"y": x}
        culprits = (repr(inputs[0]),)  # the first agent (in declaration order) that reads it
    elif variant == "rows":
        batch = {"x": np.zeros((B + draw(st.integers(1, 2)), cols))}
        culprits = ("batch['x']",)
    elif variant == "ndim":
        batch = {"x": draw(st.sampled_from([np.zeros(cols), np.zeros((B, cols, 1, 1)), np.float64(1.0)]))}
        culprits = ("batch['x']",)
    else:
        batch = {"x": np.full((B, cols), "a", dtype=object)}
        culprits = ("batch['x']",)
    return Malformed(
        "bad_batch", variant, f"batch['x'] is bad: {variant}", dataclasses.replace(base, batch=batch), base, culprits,
    )


_GARBAGE_NODE: dict[str, tuple[str, Any]] = {
    "kind=int": ("kind", 5), "kind=None": ("kind", None), "kind=list": ("kind", ["probe_sum_d1"]),
    "no kind": ("kind", _DROP), "group=int": ("group", 7), "group=list": ("group", ["g0"]),
    "state=str": ("state", "code"), "state=int": ("state", 5), "state=list": ("state", [1.0, 2.0]),
    "extra attribute": ("colour", "red"),
}


def _garbage_node(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph
    n = draw(st.sampled_from([x for x in G.nodes if _is_test_agent(G, x)]))
    attr, value = _GARBAGE_NODE[variant]
    vias = ("networkx",) if variant in ("no kind", "extra attribute") else VIAS  # not expressible in Python
    H = _set_node(G, n, **{attr: value})
    return Malformed(
        "garbage_node", variant, f"agent {n!r} has attribute {attr}={value!r}", dataclasses.replace(base, graph=H),
        base, (repr(n),), vias,
    )


_GARBAGE_ARROW: dict[str, tuple[str, Any]] = {
    "type=str": ("type", "sideways"), "type=None": ("type", None), "type=int": ("type", 1),
    "type=list": ("type", ["forward"]), "no type": ("type", _DROP), "port=int": ("port", 0),
    "port=list": ("port", ["x"]), "src_port=None": ("src_port", None), "src_port=int": ("src_port", 0),
    "src_port=list": ("src_port", ["out"]), "extra attribute": ("weight", 1.0),
}


def _garbage_arrow(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph.copy()
    t = draw(st.sampled_from(_TYPES))
    agents = [n for n in G.nodes if _is_test_agent(G, n)]
    a, b = _acyclic_pair(draw, G, t, agents)
    attrs = _arrow(draw, G, a, b, t)
    attr, value = _GARBAGE_ARROW[variant]
    if value is _DROP:
        attrs.pop(attr)
    else:
        attrs[attr] = value
    vias = ("networkx",) if variant in ("no type", "extra attribute") else VIAS
    G.add_edge(a, b, **attrs)
    return Malformed(
        "garbage_arrow", variant, f"arrow {a!r} -> {b!r} has {attr}={value!r}", dataclasses.replace(base, graph=G),
        base, (repr(a), repr(b)), vias,
    )


def _missing_agent(draw: Any, base: Case, variant: str) -> Malformed:
    t = draw(st.sampled_from(_TYPES))
    agents = [n for n in base.graph.nodes if _is_test_agent(base.graph, n)]
    a = draw(st.sampled_from(agents))
    ghost = ("ghost", draw(st.integers(0, 3)))
    attrs = {"type": t, "port": _port(draw, base.graph.nodes[a]["kind"], t), "src_port": "out"}
    s, d = (ghost, a) if draw(st.booleans()) else (a, ghost)
    if variant == "node without attributes":  # what networkx makes of an edge to a new node
        G = base.graph.copy()
        G.add_edge(s, d, **attrs)
        return Malformed(
            "missing_agent", variant, f"arrow {s!r} -> {d!r} creates bare node {ghost!r}",
            dataclasses.replace(base, graph=G), base, (repr(ghost),),
        )
    return Malformed(
        "missing_agent", variant, f"arrow {s!r} -> {d!r} names undeclared agent {ghost!r}",
        dataclasses.replace(base, extra_arrows=((s, d, attrs),)), base, (repr(ghost),), ("api", "bulk"),
    )


def _duplicate_agent(draw: Any, base: Case, variant: str) -> Malformed:
    n = draw(st.sampled_from(list(base.graph.nodes)))
    attrs = dict(base.graph.nodes[n])
    return Malformed(
        "duplicate_agent", variant, f"agent {n!r} declared twice",
        dataclasses.replace(base, extra_agents=((n, attrs),)), base, (repr(n),), ("api", "bulk"),
    )


#: Per-example fields a step overwrites before reading them (NaN there is harmless).
_OVERWRITTEN = frozenset({"in_x", "in_a", "in_b", "bin_m", "bin_a", "bin_b", "x", "h"})


def _bad_step_state(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph
    agents = [n for n in G.nodes if _is_test_agent(G, n)]
    if variant.startswith("first agent"):
        n = agents[0]  # the agent whose per-example fields define the batch size
    else:
        # not the first agent in declaration order: the batch size is read from the first one
        n = draw(st.sampled_from(agents[1:]))
    kind = _kind(G.nodes[n]["kind"])
    per_example = [x for x in kind.fields if kind.fields[x].per_example]  # declaration order
    if variant == "nan":  # fields the step reads before overwriting them
        f = draw(st.sampled_from(sorted(f for f in kind.fields if f not in _OVERWRITTEN)))
    else:
        f = draw(st.sampled_from(sorted(kind.fields)))

    def edit(state: dict) -> dict:
        state = {k: dict(v) for k, v in state.items()}
        if variant == "missing agent":
            del state[n]
        elif variant == "missing field":
            del state[n][f]
        elif variant == "extra field":
            state[n]["bogus"] = np.zeros(())
        elif variant == "shape":
            state[n][f] = np.zeros((*np.shape(state[n][f]), 2))
        elif variant == "batch rows":
            g = per_example[0]
            state[n][g] = np.zeros((np.shape(state[n][g])[0] + 1, *kind.fields[g].shape))
        elif variant == "nan":
            state[n][f] = np.full(np.shape(state[n][f]), np.nan)
        elif variant == "first agent: leading extra field":
            state[n] = {"bogus": np.zeros(()), **state[n]}
        else:  # "first agent: scalar per-example field"
            state[n][per_example[0]] = np.float64(0.0)
        return state

    return Malformed(
        "bad_step_state", variant, f"the state passed to step is bad at agent {n!r} ({variant}, field {f!r})",
        dataclasses.replace(base, state_edit=edit), base, (repr(n),),
    )


def _bad_batch_size(draw: Any, base: Case, variant: str) -> Malformed:
    size = {"0": 0, "-1": -1, "str": "two", "None": None}[variant]
    return Malformed(
        "bad_batch_size", variant, f"init_state with batch_size={size!r}",
        dataclasses.replace(base, batch_size=size), base, (),
    )


def _bad_params(draw: Any, base: Case, variant: str) -> Malformed:
    params = {"str": "lr", "int": 5, "list": [1.0]}[variant]
    return Malformed(
        "bad_params", variant, f"step with params={params!r}", dataclasses.replace(base, params=params), base, (),
    )


class _Nameless(Kind):
    forward_ports = {"x": Port(1)}
    forward_outputs = {"out": 1}


class _BadPort(Kind):
    name = "bad_port"
    forward_ports = {"x": 3}  # type: ignore[dict-item]
    forward_outputs = {"out": 1}


class _BadOutput(Kind):
    name = "bad_output"
    forward_ports = {"x": Port(1)}
    forward_outputs = {"out": 0}


def _bad_kind(draw: Any, base: Case, variant: str) -> Malformed:
    bad, culprit = {
        "string": ("probe_sum_d1", repr("probe_sum_d1")),
        "class": (Probe, "Probe"),
        "nameless": (_Nameless(), "_Nameless"),
        "port not a Port": (_BadPort(), "bad_port"),
        "output size 0": (_BadOutput(), "bad_output"),
    }[variant]
    return Malformed(
        "bad_kind", variant, f"the kinds passed to the graph include {bad!r}",
        dataclasses.replace(base, kinds=(*base.kinds, bad)), base, (culprit,),
    )


def _not_a_digraph(draw: Any, base: Case, variant: str) -> Malformed:
    if variant == "undirected":
        bad: Any = nx.MultiGraph(base.graph)
    elif variant == "dict":
        bad = dict(base.graph.nodes(data=True))
    else:
        bad = list(base.graph.edges)
    return Malformed(
        "not_a_digraph", variant, f"from_networkx given a {type(bad).__name__}",
        dataclasses.replace(base, graph=bad), base, (), ("networkx",),
    )


_DEFECTS: dict[str, tuple[Callable[[Any, Case, str], Malformed], tuple[str, ...]]] = {
    "forward_cycle": (_forward_cycle, ("self-loop", "cycle")),
    "backward_cycle": (_backward_cycle, ("self-loop", "cycle")),
    "unknown_kind": (_unknown_kind, ("made up", "misspelt", "other size", "empty", "trailing space")),
    "bad_arrow_end": (_bad_arrow_end, ("port", "src_port", "backward into input", "backward from input")),
    "size_mismatch": (_size_mismatch, tuple(f"{t} {d}" for t in _TYPES for d in ("from-size-2", "into-size-2"))),
    "bad_state": (_bad_state, ("shape", "unknown field", "nan", "inf", "non-numeric")),
    "bad_reflexive": (_bad_reflexive, ("not a self-loop", "kind without reflexive")),
    "bad_slot": (_bad_slot, (
        "missing", "negative", "slot=str", "slot=float", "slot=list", "duplicate", "out of range", "on non-input",
    )),
    "bad_batch": (_bad_batch, ("nan", "inf", "missing key", "rows", "ndim", "non-numeric")),
    "garbage_node": (_garbage_node, tuple(_GARBAGE_NODE)),
    "garbage_arrow": (_garbage_arrow, tuple(_GARBAGE_ARROW)),
    "missing_agent": (_missing_agent, ("node without attributes", "undeclared endpoint")),
    "duplicate_agent": (_duplicate_agent, ("same name twice",)),
    "bad_step_state": (_bad_step_state, (
        "missing agent", "missing field", "extra field", "shape", "batch rows", "nan",
        "first agent: leading extra field", "first agent: scalar per-example field",
    )),
    "bad_batch_size": (_bad_batch_size, ("0", "-1", "str", "None")),
    "bad_params": (_bad_params, ("str", "int", "list")),
    "bad_kind": (_bad_kind, ("string", "class", "nameless", "port not a Port", "output size 0")),
    "not_a_digraph": (_not_a_digraph, ("undirected", "dict", "edge list")),
}

#: Every defect family :func:`malformed_graphs` can draw.
MALFORMED_CATEGORIES: tuple[str, ...] = tuple(_DEFECTS)

#: ``{category: variants}``: every exact defect :func:`malformed_graphs` can draw.
MALFORMED_VARIANTS: dict[str, tuple[str, ...]] = {c: v for c, (_, v) in _DEFECTS.items()}


@st.composite
def malformed_graphs(
    draw: Any,
    *,
    categories: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
) -> Malformed:
    """Graphs and step inputs that are invalid in exactly one way.

    Each example starts from a small valid :class:`Case` (test kinds of message size 1, maybe
    input agents reading ``batch["x"]``) and breaks one thing: a forward or backward cycle, an
    unknown kind, an arrow into a port the kind lacks (or from an output it lacks), a message
    size mismatch, a bad initial state (shape, unknown field, NaN/inf, not numeric), a reflexive
    arrow that is not a self-loop (or on a kind without a reflexive function), a bad ``slot``,
    a bad batch (NaN/inf, missing key, wrong shape), garbage attribute values, an arrow to an
    undeclared agent, a duplicate agent, a bad state or ``params`` passed to ``step``, a bad
    batch size, a bad kind object, or something that is not a directed graph.

    Args:
        categories: restrict to these defect families (default: all of
            :data:`MALFORMED_CATEGORIES`).
        variants: restrict to these exact defects (names from :data:`MALFORMED_VARIANTS`);
            families with none of them are dropped.

    Returns:
        a :class:`Malformed`: ``m.case.run(via)`` should raise
        :class:`~agentgraph.AgentGraphError` naming every string of ``m.culprits``, for each
        ``via`` in ``m.vias``; ``m.base.run(via)`` should succeed.

    Example:
        >>> from hypothesis import given, settings
        >>> from agentgraph import AgentGraphError
        >>> @settings(max_examples=5, database=None, deadline=None)
        ... @given(malformed_graphs(categories=["forward_cycle"]))
        ... def check(m):
        ...     try:
        ...         m.case.run("networkx")
        ...     except AgentGraphError as e:
        ...         assert all(c in str(e) for c in m.culprits)
        ...     else:
        ...         raise AssertionError("no error")
        >>> check()
    """
    cats = MALFORMED_CATEGORIES if categories is None else tuple(categories)
    unknown = [c for c in cats if c not in _DEFECTS]
    if unknown:
        raise InvalidArgument(f"unknown categories {unknown}; choose from {MALFORMED_CATEGORIES}.")
    choices = [
        (c, v) for c in cats for v in MALFORMED_VARIANTS[c] if variants is None or v in variants
    ]
    if not choices:
        raise InvalidArgument(f"no defect matches categories={categories!r}, variants={variants!r}.")
    category, variant = draw(st.sampled_from(choices))
    base = draw(_base_case())
    return _DEFECTS[category][0](draw, base, variant)
