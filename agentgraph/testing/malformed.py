"""The malformed-graph catalogue: :func:`malformed_graphs` draws graphs and step inputs that are
invalid in exactly one way, each a :class:`~agentgraph.testing.cases.Malformed` with the names
its error message must contain.

The defects themselves are in :mod:`~agentgraph.testing.graph_defects` (the declaration) and
:mod:`~agentgraph.testing.input_defects` (what a step is given); :data:`MALFORMED_CATEGORIES`
and :data:`MALFORMED_VARIANTS` list them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from agentgraph.testing._case_edits import KINDS_1, KINDS_2, arrow_attrs
from agentgraph.testing.cases import Case, Malformed
from agentgraph.testing.graph_defects import GRAPH_DEFECTS
from agentgraph.testing.input_defects import INPUT_DEFECTS
from agentgraph.testing.strategies import agent_graphs

__all__ = ["MALFORMED_CATEGORIES", "MALFORMED_VARIANTS", "malformed_graphs"]

_ORDER = (  # the catalogue's order: every category of both tables
    "forward_cycle", "backward_cycle", "unknown_kind", "bad_arrow_end", "size_mismatch", "bad_state",
    "bad_reflexive", "bad_slot", "bad_batch", "garbage_node", "garbage_arrow", "missing_agent",
    "duplicate_agent", "bad_step_state", "bad_batch_size", "bad_params", "bad_kind", "not_a_digraph",
)
_DEFECTS: dict[str, tuple[Callable[[Any, Case, str], Malformed], tuple[str, ...]]] = dict(
    sorted({**GRAPH_DEFECTS, **INPUT_DEFECTS}.items(), key=lambda item: _ORDER.index(item[0]))
)

#: Every defect family :func:`malformed_graphs` can draw.
MALFORMED_CATEGORIES: tuple[str, ...] = tuple(_DEFECTS)

#: ``{category: variants}``: every exact defect :func:`malformed_graphs` can draw.
MALFORMED_VARIANTS: dict[str, tuple[str, ...]] = {c: v for c, (_, v) in _DEFECTS.items()}


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
        G.add_edge(name, dst, **arrow_attrs(draw, G, name, dst, "forward"))
    B = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch = {"x": rng.normal(size=(B, n_inputs))} if n_inputs else {}
    return Case(graph=G, kinds=KINDS_1 + KINDS_2, batch=batch, batch_size=B)


@st.composite
def malformed_graphs(
    draw: Any,
    *,
    categories: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
) -> Malformed:
    """Graphs and step inputs that are invalid in exactly one way.

    Each example starts from a small valid :class:`~agentgraph.testing.cases.Case` (test kinds of message size 1, maybe
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
        a :class:`~agentgraph.testing.cases.Malformed`: ``m.case.run(via)`` should raise
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
