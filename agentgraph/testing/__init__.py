"""Public hypothesis strategies and small kinds for testing agent graphs.

* :mod:`agentgraph.testing.kinds` — probe kinds (send identity codes, record inboxes) and mixer
  kinds (nonlinear, stateful, parameterised), for message size ``d``.
* :mod:`agentgraph.testing.declarations` — :func:`check_declarations`: a kind's linear /
  outer-product declarations (what the compiler lowers to matmuls) against its own functions.
* :mod:`agentgraph.testing.strategies` — :func:`agent_graphs` (random valid graphs),
  :func:`schedules`, :func:`states`, :func:`group_params`, :func:`batches`.
* :mod:`agentgraph.testing.malformed` — :func:`malformed_graphs`: graphs and inputs invalid in
  exactly one way (:class:`Malformed`, :class:`Case` from :mod:`agentgraph.testing.cases`; the
  defects in :mod:`~agentgraph.testing.graph_defects` and :mod:`~agentgraph.testing.input_defects`).
* :mod:`agentgraph.testing.oracle` — the autodiff oracle protocols are checked against.
* :mod:`agentgraph.testing.compare` — :func:`compare` (a compiled program against the
  interpreter, step by step) and :func:`state_deviation` (two states, scratch fields skipped).

Example:
    >>> from hypothesis import given, settings
    >>> from agentgraph.interpreter import init_state, step
    >>> @settings(max_examples=5, database=None, deadline=None)
    ... @given(agent_graphs(max_agents=4))
    ... def check(g):
    ...     r = step(g, init_state(g, 2), None, {}, trace=True)
    ...     assert set(r.state) == set(g.agents())
    >>> check()
"""

from agentgraph.testing.compare import Comparison, compare, state_deviation
from agentgraph.testing.declarations import check_declarations
from agentgraph.testing.kinds import (
    MIXER_DEFAULTS,
    Mixer,
    Probe,
    mixer_kinds,
    probe_kinds,
    test_kinds,
)
from agentgraph.testing.cases import VIAS, Case, Malformed
from agentgraph.testing.malformed import MALFORMED_CATEGORIES, MALFORMED_VARIANTS, malformed_graphs
from agentgraph.testing.strategies import (
    DEFAULT_GROUPS,
    KindsArg,
    agent_graphs,
    agent_names,
    batches,
    group_params,
    kind_pool,
    schedules,
    states,
)

__all__ = [
    "Comparison",
    "check_declarations",
    "compare",
    "state_deviation",
    "Case",
    "DEFAULT_GROUPS",
    "KindsArg",
    "MALFORMED_CATEGORIES",
    "MALFORMED_VARIANTS",
    "MIXER_DEFAULTS",
    "Malformed",
    "Mixer",
    "Probe",
    "VIAS",
    "agent_graphs",
    "agent_names",
    "batches",
    "group_params",
    "kind_pool",
    "malformed_graphs",
    "mixer_kinds",
    "probe_kinds",
    "schedules",
    "states",
    "test_kinds",
]
