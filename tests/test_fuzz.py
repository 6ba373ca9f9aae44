"""Fuzzing: malformed graphs and inputs only ever raise AgentGraphError, naming the culprit.

Each case from :func:`agentgraph.testing.malformed_graphs` is a valid graph-plus-inputs with
exactly one defect; it is declared through every route that can express the defect
(``from_networkx``, ``add_agent``/``add_arrow``, ``add_agents``/``add_arrows``), validated,
and stepped with the interpreter. The valid twin must run; the broken one must raise
:class:`AgentGraphError` (never another exception, never hang) whose message names the culprit.

Defects that the core does not handle yet are listed in ``KNOWN_CORE_BUGS``: the fuzz test skips
exactly those (category, variant, route) combinations, and ``test_known_core_bug_still_present``
reproduces each one as an xfail — when a bug is fixed that test fails on purpose, asking for the
entry to be deleted so the fuzz test covers it again.
"""

from __future__ import annotations

import contextlib
import signal

import pytest
from hypothesis import HealthCheck, Phase, find, given, note, settings
from hypothesis import strategies as st

from agentgraph import AgentGraphError
from agentgraph.testing import MALFORMED_VARIANTS, VIAS, Malformed, malformed_graphs

ALL = None  # wildcard in KNOWN_CORE_BUGS

#: ``(category, variants or ALL, vias) -> what goes wrong``, found by this fuzz test.
KNOWN_CORE_BUGS: dict[tuple[str, tuple[str, ...] | None, tuple[str, ...]], str] = {}


def known_bug(m: Malformed, via: str) -> str | None:
    for (category, variants, vias), what in KNOWN_CORE_BUGS.items():
        if m.category == category and (variants is ALL or m.variant in variants) and via in vias:
            return what
    return None


class Hang(Exception):
    """Raised when a case runs past its time limit (not an AgentGraphError: fails the test)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    if not hasattr(signal, "SIGALRM"):  # no alarms on this platform: run without a limit
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_raises_naming_culprit(m: Malformed, via: str) -> None:
    with time_limit(20.0):
        with pytest.raises(AgentGraphError) as info:
            m.case.run(via)
    message = str(info.value)
    for culprit in m.culprits_for(via):
        assert culprit in message, f"{m.description}: error via {via} does not name {culprit}: {message}"


#: Examples per (category, variant): a fifth of the profile's max_examples, at least 3.
EXAMPLES_PER_VARIANT = max(3, settings.default.max_examples // 5)

DEFECTS = [(c, v) for c, vs in MALFORMED_VARIANTS.items() for v in vs]


@pytest.mark.parametrize("category, variant", DEFECTS, ids=[f"{c}-{v}" for c, v in DEFECTS])
@settings(deadline=None, max_examples=EXAMPLES_PER_VARIANT, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_malformed_input_raises_agentgraph_error_naming_the_culprit(category: str, variant: str, data) -> None:
    m = data.draw(malformed_graphs(categories=[category], variants=[variant]), label="malformed")
    note(m.describe())
    assert (m.category, m.variant) == (category, variant)
    for via in m.vias:
        with time_limit(20.0):
            m.base.run(via)  # the valid twin runs: the error below is the defect's
        if known_bug(m, via) is None:
            check_raises_naming_culprit(m, via)


KNOWN = [
    (c, v, via)
    for (c, variants, vias) in KNOWN_CORE_BUGS
    for v in (MALFORMED_VARIANTS[c] if variants is ALL else variants)
    for via in vias
]


@pytest.mark.parametrize("category, variant, via", KNOWN, ids=[f"{c}-{v}-{via}" for c, v, via in KNOWN])
def test_known_core_bug_still_present(category: str, variant: str, via: str) -> None:
    """Reproduces one entry of KNOWN_CORE_BUGS (xfails while the bug is there). When the bug is
    fixed this test fails on purpose: delete it from the entry so the fuzz test covers it again."""
    m = find(
        malformed_graphs(categories=[category], variants=[variant]),
        lambda m: via in m.vias,
        settings=settings(max_examples=100, database=None, deadline=None, phases=[Phase.generate]),
    )
    what = known_bug(m, via)
    assert what is not None
    try:
        check_raises_naming_culprit(m, via)
    except (Exception, pytest.fail.Exception) as e:  # the known bug: any failure, incl. "DID NOT RAISE"
        pytest.xfail(f"known core bug ({what}); {m.description}; {type(e).__name__}: {e}")
    pytest.fail(
        f"KNOWN_CORE_BUGS: ({category!r}, {variant!r}, {via!r}) looks fixed ({m.description} now raises "
        "an AgentGraphError naming the culprit): remove it so the fuzz test covers it again."
    )
