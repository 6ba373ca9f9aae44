"""Hypothesis strategies for valid agent graphs, their schedules, states, params and batches.

* :func:`agent_graphs` — random valid :class:`~agentgraph.AgentGraph` s: non-layered DAGs of
  forward arrows and, in an independent random order, of backward arrows; parallel arrows;
  reflexive self-loops; isolated agents; fan-in from 0 to many; random ports, output names,
  groups, agent names and unique identity codes.
  With a :class:`~agentgraph.arrows.Schedule` (see :func:`schedules`), arrows of every type it
  runs, with ``max_delayed`` delayed arrows that close cycles (self-loops included), and with
  ``max_ties`` random tie groups (:mod:`agentgraph.graph.ties`).
* :func:`schedules` — random schedules: phase orders, repeated phases, user-named types.
* :func:`states`, :func:`group_params`, :func:`batches` — what a step of such a graph needs.

Graphs and inputs invalid in exactly one way are in :mod:`agentgraph.testing.malformed`
(:func:`~agentgraph.testing.malformed.malformed_graphs`); their names are still importable from
here.

Conventions: agents are declared in one random order, arrows in another; the forward arrows go
from earlier to later agents of a random permutation, the backward arrows likewise in an
independent permutation, so both subgraphs are acyclic but neither follows declaration order.
"""

from __future__ import annotations

import importlib
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from agentgraph.arrows.schedule import DEFAULT_SCHEDULE, DELAYED, Phase, Schedule
from agentgraph.graph import AgentGraph
from agentgraph.interpreter import init_state
from agentgraph.nodes.base import Kind
from agentgraph.testing.kinds import Mixer, Probe, mixer_kinds, probe_kinds, test_kinds

__all__ = [
    "DEFAULT_GROUPS",
    "KindsArg",
    "agent_graphs",
    "agent_names",
    "batches",
    "group_params",
    "kind_pool",
    "schedules",
    "states",
]

#: Names that moved to :mod:`agentgraph.testing.cases` and :mod:`agentgraph.testing.malformed`,
#: still importable from here (``from agentgraph.testing.strategies import Case`` works).
_MOVED = {
    "VIAS": "cases", "Case": "cases", "Malformed": "cases", "MALFORMED_CATEGORIES": "malformed",
    "MALFORMED_VARIANTS": "malformed", "malformed_graphs": "malformed",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"agentgraph.testing.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    max_ties: int = 0,
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
        max_ties: up to this many tie groups: a random per-agent field of a random kind, shared
            by a random subset (one or more) of that kind's agents, with a random reduction and
            a random shared initial value.

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
    _tie_groups(draw, g, agent_list, agent_kinds, max_ties, rng)
    return g.validate()


def _tie_groups(draw: Any, g: AgentGraph, agent_list: Sequence[Hashable], agent_kinds: Sequence[Kind],
                max_ties: int, rng: np.random.Generator) -> None:
    """Up to ``max_ties`` random ties on ``g`` (see :func:`agent_graphs`)."""
    from agentgraph.graph.ties import REDUCTIONS

    used: set[tuple[int, str]] = set()
    tieable = sorted({k.name for k in agent_kinds if any(not f.per_example for f in k.fields.values())})
    for _ in range(draw(st.integers(0, max_ties)) if tieable else 0):
        kname = draw(st.sampled_from(tieable))
        kind = g.kinds[kname]
        field = draw(st.sampled_from(sorted(f for f, spec in kind.fields.items() if not spec.per_example)))
        free = [i for i, k in enumerate(agent_kinds) if k.name == kname and (i, field) not in used]
        if not free:
            continue
        chosen = draw(st.lists(st.sampled_from(free), min_size=1, max_size=len(free), unique=True))
        used.update((i, field) for i in chosen)
        g.tie([agent_list[i] for i in chosen], field, reduction=draw(st.sampled_from(REDUCTIONS)),
              value=0.5 * rng.normal(size=kind.fields[field].shape))


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
    ties, names = graph.ties(), graph.arrays().names
    for t, f in enumerate(ties.fields):  # tied agents hold one value
        members = [names[r] for r in ties.members(t).tolist()]
        for m in members[1:]:
            out[m][f] = np.array(out[members[0]][f])
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
