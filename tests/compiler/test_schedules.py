"""Declared schedules and delayed arrows: compiled == interpreter on random schedules (random
phase orders, repeated phases, user-named types, self-loop types) and random graphs whose cycles
pass through delayed arrows; the semantics on a hand-worked example; errors naming the culprit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgraph import AgentGraph, AgentGraphError, compile
from agentgraph.arrows import DEFAULT_SCHEDULE, Phase, Port, Schedule
from agentgraph.arrows.schedule import DELAYED
from agentgraph.checkpoint import load, save
from agentgraph.interpreter import init_state, step
from agentgraph.nodes import Field, Kind, L2Loss
from agentgraph.testing import agent_graphs, group_params, schedules, states
from agentgraph.testing.kinds import mixer_kinds

USER_TYPES = ("t1", "t2", "s1")
KINDS = [*mixer_kinds(1, acts_on=USER_TYPES), L2Loss()]


def _graphs():
    return agent_graphs(kinds=KINDS, message_size=1, min_agents=1, max_agents=7, max_fan_in=3,
                        schedule=schedules(), max_delayed=3)


def _err(prog, compiled_state, agents_state) -> float:
    got = prog.to_agents(compiled_state)
    errs = [float(np.max(np.abs(got[a][f] - v), initial=0.0)) for a, d in agents_state.items() if a != DELAYED
            for f, v in d.items()]
    errs += [float(np.max(np.abs(got[DELAYED][k] - v))) for k, v in agents_state.get(DELAYED, {}).items()]
    return max(errs, default=0.0)


@settings(max_examples=14, deadline=None)
@given(data=st.data(), graph=_graphs())
def test_random_schedules_and_delayed_cycles_compiled_equal_interpreter_x64(data, graph):
    B = data.draw(st.integers(1, 2), label="B")
    s0 = data.draw(states(graph, B, per_agent=True), label="state")
    params = data.draw(group_params(graph), label="params")
    r1 = step(graph, s0, params, {}, check_finite=False)
    r2 = step(graph, r1.state, params, {}, check_finite=False)  # delayed messages of step 1 arrive
    with jax.enable_x64(True):
        for dense in (True, False):
            prog = compile(graph, dense=dense)
            s, l1 = prog.step(params, prog.from_agents(s0), {})
            assert abs(float(l1) - r1.loss) < 1e-10
            assert _err(prog, s, r1.state) < 1e-10
            s, l2 = prog.step(params, s, {})
            assert abs(float(l2) - r2.loss) < 1e-10
            assert _err(prog, s, r2.state) < 1e-10


@settings(max_examples=8, deadline=None)
@given(data=st.data(), graph=_graphs())
def test_random_schedules_float32_close_to_interpreter(data, graph):
    s0 = data.draw(states(graph, 2, per_agent=True), label="state")
    params = data.draw(group_params(graph), label="params")
    r = step(graph, s0, params, {}, check_finite=False)
    prog = compile(graph)
    s, loss = prog.step(params, prog.from_agents(s0), {})
    assert abs(float(loss) - r.loss) < 1e-5 * max(1.0, abs(r.loss))
    assert _err(prog, s, r.state) < 1e-5


# -- a hand-worked example: a ring of three accumulators joined by delayed arrows --------------
class Acc(Kind):
    """``v <- v + sum of inputs``; sends ``v`` (after the update) along ``tick`` arrows."""

    name = "acc"
    fields = {"v": Field(per_example=True)}
    acts_on = ("tick",)
    arrow_ports = {"tick": {"x": Port(1, "sum")}}
    arrow_outputs = {"tick": {"out": 1}}

    def act(self, arrow_type, params, state, inbox):
        v = state["v"] + inbox["x"][0]
        return {**state, "v": v}, {"out": jnp.reshape(v, (1,))}, {}


TICK = Schedule((Phase("tick", repeat=2),))


def _ring():
    g = AgentGraph(kinds=[Acc()], schedule=TICK)
    g.add_agents(["a", "b", "c"], "acc", states={"v": [1.0, 10.0, 100.0]})
    for s, d in (("a", "b"), ("b", "c"), ("c", "a")):
        g.add_arrow(s, d, "tick", delay=True)
    return g


def test_delayed_ring_by_hand():
    # tick k: v_i += (what i's predecessor sent at tick k-1; 0 at the first tick)
    v = np.array([1.0, 10.0, 100.0])
    sent = np.zeros(3)
    for _ in range(2 * 3):  # three steps of two ticks
        v = v + np.roll(sent, 1)  # a <- c, b <- a, c <- b
        sent = v.copy()
    g = _ring()
    s = init_state(g, 1)
    for _ in range(3):
        s = step(g, s, None, {}).state
    got = [float(s[a]["v"][0]) for a in "abc"]
    np.testing.assert_allclose(got, v, rtol=0, atol=1e-12)
    prog = compile(g)
    cs = prog.init(1)
    for _ in range(3):
        cs, _ = prog.step(None, cs, {})
    np.testing.assert_allclose(prog.read(cs, ["a", "b", "c"], "v")[0], v, rtol=1e-6)
    # the messages in flight are what each agent sent at its last tick
    np.testing.assert_allclose([s[DELAYED][("tick", a, "out")][0, 0] for a in "abc"], v, rtol=0, atol=1e-12)


def test_delayed_state_checkpoints_vmaps_and_differentiates(tmp_path):
    g = _ring()
    prog = compile(g)
    s = prog.init(2)
    s, _ = prog.step(None, s, {})
    save(tmp_path / "s.npz", s)
    back, _ = load(tmp_path / "s.npz", s)
    assert jax.tree.structure(back) == jax.tree.structure(s)
    np.testing.assert_array_equal(np.asarray(back[DELAYED]["tick/1"]), np.asarray(s[DELAYED]["tick/1"]))
    many = jax.tree.map(lambda v: jnp.stack([v, 2 * v]), s)
    out, _ = jax.vmap(lambda st_: prog.step(None, st_, {}))(many)
    one, _ = prog.step(None, jax.tree.map(lambda v: 2 * v, s), {})
    np.testing.assert_allclose(np.asarray(out["acc"]["v"][1]), np.asarray(one["acc"]["v"]), rtol=1e-6)

    def final(v0):
        st_ = {**prog.init(1), "acc": {"v": v0}}
        st_, _ = prog.unroll(None, st_, {"dummy": jnp.zeros((3, 1, 1))})
        return st_["acc"]["v"].sum()

    v0 = jnp.array([[1.0], [2.0], [3.0]])
    grad = jax.grad(final)(v0)
    eps = 1e-2
    fd = [(final(v0.at[i, 0].add(eps)) - final(v0.at[i, 0].add(-eps))) / (2 * eps) for i in range(3)]
    np.testing.assert_allclose(np.asarray(grad)[:, 0], np.asarray(fd), rtol=1e-3)


def test_default_schedule_spelled_out_is_the_default():
    spelled = Schedule((Phase("forward", loss=True), Phase("backward"), Phase("reflexive", self_loops=True)))
    assert spelled == DEFAULT_SCHEDULE and hash(spelled) == hash(DEFAULT_SCHEDULE)
    from agentgraph import mlp
    g = mlp([2, 3, 1], loss="l2", seed=0)
    assert g.schedule == DEFAULT_SCHEDULE
    assert compile(g).plan == compile(g.with_schedule(spelled)).plan


def test_forward_stops_at_the_loss_phase():
    g = _ring().with_schedule(Schedule((Phase("tick", loss=True), Phase("tick"))))
    prog = compile(g)
    s, _ = prog.forward(None, prog.init(1), {})
    full, _ = prog.step(None, prog.init(1), {})
    r = step(g, init_state(g, 1), None, {}, until_loss=True)
    np.testing.assert_allclose(prog.read(s, ["a"], "v")[0], [r.state["a"]["v"][0]], rtol=1e-6)
    assert float(prog.read(full, ["b"], "v")[0, 0]) != float(prog.read(s, ["b"], "v")[0, 0])


# -- errors name the culprit ---------------------------------------------------------------------
def test_cycle_without_a_delayed_arrow_names_its_agents():
    g = AgentGraph(kinds=[Acc()], schedule=TICK)
    g.add_agents(["a", "b"], "acc")
    g.add_arrow("a", "b", "tick")
    g.add_arrow("b", "a", "tick")
    with pytest.raises(AgentGraphError, match=r"tick arrows form a cycle: .*'a'.*'b'.*delay=True"):
        g.validate()
    g2 = AgentGraph(kinds=[Acc()], schedule=TICK)
    g2.add_agents(["a"], "acc")
    with pytest.raises(AgentGraphError, match="from an agent to itself is a cycle.*delay=True"):
        g2.add_arrow("a", "a", "tick")
    g2.add_arrow("a", "a", "tick", delay=True)  # a delayed self-loop is fine
    g2.validate()


def test_schedule_errors():
    with pytest.raises(AgentGraphError, match="loss is read after one phase only"):
        Schedule((Phase("a", loss=True), Phase("b", loss=True)))
    with pytest.raises(AgentGraphError, match="'a' is a self-loop phase in one place and a sweep"):
        Schedule((Phase("a"), Phase("a", self_loops=True)))
    with pytest.raises(AgentGraphError, match="repeat must be a positive int"):
        Phase("a", repeat=0)
    g = AgentGraph(kinds=[Acc()], schedule=TICK)
    g.add_agents(["a", "b"], "acc")
    with pytest.raises(AgentGraphError, match="unknown arrow type 'tock'.*Phase\\('tock'\\)"):
        g.add_arrow("a", "b", "tock")
    with pytest.raises(AgentGraphError, match="unknown arrow type 'tock'"):
        g.add_arrows(["a"], ["b"], "tock")
    with pytest.raises(AgentGraphError, match="no agent may be named|No agent may be named"):
        bad = AgentGraph(kinds=[Acc()], schedule=TICK)
        bad.add_agent(DELAYED, "acc")
        bad.validate()
    # a type the kind does not act on; a self-loop type with a non-self arrow
    selfy = Schedule((Phase("tick"), Phase("s", self_loops=True)))
    h = AgentGraph(kinds=[Acc()], schedule=selfy)
    h.add_agents(["a", "b"], "acc")
    with pytest.raises(AgentGraphError, match=r"\[s\]: a s arrow must be a self-loop"):
        h.add_arrow("a", "b", "s")
    with pytest.raises(AgentGraphError, match=r"kind 'acc' has no s function.*acts_on"):
        h.add_arrow("a", "a", "s")
    with pytest.raises(AgentGraphError, match="cannot be delayed"):
        h.add_arrow("a", "a", "s", delay=True)
    # dropping a phase a graph's arrows need
    with pytest.raises(AgentGraphError, match="type 'tick', which no phase of the graph's schedule runs"):
        _ring().with_schedule(Schedule((Phase("forward"),)))


def test_kind_declaring_an_unlisted_type_is_rejected():
    class Bad(Kind):
        name = "bad"
        arrow_ports = {"tick": {"x": Port(1)}}

    with pytest.raises(AgentGraphError, match="does not list it in acts_on"):
        AgentGraph(kinds=[Bad()])


def test_schedule_and_delay_round_trip_through_networkx():
    g = _ring()
    h = g.to_networkx()
    assert h.graph["schedule"] == TICK
    assert all(a.get("delay") for _, _, a in h.edges(data=True))
    back = AgentGraph.from_networkx(h, kinds=[Acc()])
    assert back.schedule == TICK and compile(back).plan == compile(g).plan


@settings(max_examples=10, deadline=None)
@given(graph=_graphs())
def test_to_agents_lists_the_same_messages_in_flight_as_the_interpreter(graph):
    """The compiled state keeps whole buffers; ``to_agents`` shows only the delayed arrows' messages."""
    prog = compile(graph)
    got = prog.to_agents(prog.init(2))
    assert set(got.get(DELAYED, {})) == set(init_state(graph, 2).get(DELAYED, {}))


class One(Kind):
    """No fields, no inputs: sends the constant 1 along ``tick`` arrows."""

    name = "one"
    fields: dict = {}
    acts_on = ("tick",)
    arrow_outputs = {"tick": {"out": 1}}

    def act(self, arrow_type, params, state, inbox):
        return state, {"out": jnp.ones((1,))}, {}


def test_a_kind_with_no_fields_and_no_inputs_compiles():
    """A constant source (no state, no ports) runs in a compiled block like any other kind
    (its block size comes from the plan, not from its arrays) and equals the interpreter."""
    g = AgentGraph(kinds=[Acc(), One()], schedule=TICK)
    g.add_agents(["a", "b"], "acc", states={"v": [1.0, 10.0]})
    g.add_agent("k", "one")
    g.add_arrow("k", "a", "tick")
    g.add_arrow("k", "b", "tick")
    r = step(g, init_state(g, 1), {}, {})
    prog = compile(g)
    s, _ = prog.step({}, prog.init(1), {})
    assert _err(prog, s, r.state) < 1e-6
    np.testing.assert_allclose(np.asarray(s["acc"]["v"])[:, 0], [3.0, 12.0])
