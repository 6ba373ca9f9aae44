"""Property tests: compiled programs == the reference interpreter on random agent graphs.

Random typed multigraphs from :mod:`agentgraph.testing` (non-layered DAGs, parallel arrows,
reflexive arrows, isolated agents, fan-in 0..many, several loss agents), nonlinear stateful
*mixer* kinds with random parameters and states.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgraph import compile
from agentgraph.interpreter import step
from agentgraph.nodes import L2Loss
from agentgraph.testing import agent_graphs, group_params, states
from agentgraph.testing.kinds import mixer_kinds

KINDS_D1 = [*mixer_kinds(1), L2Loss()]


def _graphs(**kw):
    return agent_graphs(kinds=KINDS_D1, message_size=1, min_agents=1, max_agents=9, **kw)


def _err(prog, compiled_state, agents_state) -> float:
    got = prog.to_agents(compiled_state)
    return max((float(np.max(np.abs(got[a][f] - v), initial=0.0)) for a, d in agents_state.items() for f, v in d.items()), default=0.0)


@settings(max_examples=12, deadline=None)
@given(data=st.data(), graph=_graphs())
def test_compiled_equals_interpreter_x64_and_dense_equals_segment(data, graph):
    B = data.draw(st.integers(1, 3), label="B")
    s0 = data.draw(states(graph, B, per_agent=True), label="state")
    params = data.draw(group_params(graph), label="params")
    r = step(graph, s0, params, {}, check_finite=False)
    with jax.enable_x64(True):
        for dense in (True, False):
            prog = compile(graph, dense=dense)
            s, loss = prog.step(params, prog.from_agents(s0), {})
            assert abs(float(loss) - r.loss) < 1e-10
            assert _err(prog, s, r.state) < 1e-10


@settings(max_examples=8, deadline=None)
@given(data=st.data(), graph=_graphs())
def test_compiled_float32_close_to_interpreter(data, graph):
    s0 = data.draw(states(graph, 2, per_agent=True), label="state")
    params = data.draw(group_params(graph), label="params")
    r = step(graph, s0, params, {}, check_finite=False)
    prog = compile(graph)
    s, loss = prog.step(params, prog.from_agents(s0), {})
    assert abs(float(loss) - r.loss) < 1e-5 * max(1.0, abs(r.loss))
    assert _err(prog, s, r.state) < 1e-5


@settings(max_examples=6, deadline=None)
@given(data=st.data(), graph=_graphs())
def test_renaming_agents_changes_nothing(data, graph):
    s0 = data.draw(states(graph, 2, per_agent=True), label="state")
    params = data.draw(group_params(graph), label="params")
    mapping = {a: ("renamed", i) for i, a in enumerate(reversed(graph.agents()))}
    g2 = graph.relabel(mapping)
    p1, p2 = compile(graph), compile(g2)
    s1, l1 = p1.step(params, p1.from_agents(s0), {})
    s2, l2 = p2.step(params, p2.from_agents({mapping[a]: v for a, v in s0.items()}), {})
    assert float(l1) == float(l2)
    a1, a2 = p1.to_agents(s1), p2.to_agents(s2)
    for a, fields in a1.items():
        for f, v in fields.items():
            np.testing.assert_array_equal(v, a2[mapping[a]][f])


@settings(max_examples=4, deadline=None)
@given(data=st.data(), graph=_graphs())
def test_jit_equals_no_jit(data, graph):
    s0 = data.draw(states(graph, 2, per_agent=True), label="state")
    params = data.draw(group_params(graph), label="params")
    prog = compile(graph)
    s_j, l_j = prog.step(params, prog.from_agents(s0), {})
    with jax.disable_jit():
        s_e, l_e = prog.step(params, prog.from_agents(s0), {})
    np.testing.assert_allclose(float(l_j), float(l_e), rtol=1e-6, atol=1e-6)
    for k in s_j:
        for f in s_j[k]:
            np.testing.assert_allclose(np.asarray(s_j[k][f]), np.asarray(s_e[k][f]), rtol=1e-5, atol=1e-6)


@settings(max_examples=5, deadline=None)
@given(data=st.data(), graph=_graphs())
def test_vmap_over_tasks_equals_python_loop(data, graph):
    prog = compile(graph)
    params = data.draw(group_params(graph), label="params")
    tasks = [prog.from_agents(data.draw(states(graph, 2, per_agent=True), label=f"s{i}")) for i in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *tasks)
    s_v, l_v = jax.vmap(lambda s: prog.step(params, s, {}))(stacked)
    for i, s in enumerate(tasks):
        s_i, l_i = prog.step(params, s, {})
        np.testing.assert_allclose(float(l_v[i]), float(l_i), rtol=1e-5, atol=1e-6)
        for k in s_i:
            for f in s_i[k]:
                np.testing.assert_allclose(np.asarray(s_v[k][f][i]), np.asarray(s_i[k][f]), rtol=1e-5, atol=1e-6)
