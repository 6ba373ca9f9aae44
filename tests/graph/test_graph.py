"""Items 2 and 8: declaring agent graphs, the networkx round trip, and validation errors."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from agentgraph import AgentGraph, AgentGraphError, Field, Kind, Port, mlp
from agentgraph.interpreter import init_state, step
from agentgraph.protocols import gradient


def small() -> AgentGraph:
    g = AgentGraph()
    g.add_agent("x", "input", slot=0)
    g.add_agent("w", "synapse", state={"w": 0.5}, group="layer0")
    g.add_agent("b", "bias")
    g.add_agent("y", "target", slot=0)
    g.add_agent("L", "l2")
    g.add_arrow("x", "w", "forward")
    g.add_arrow("w", "b", "forward")
    g.add_arrow("b", "L", "forward", port="pred")
    g.add_arrow("y", "L", "forward", port="target")
    g.add_arrow("L", "b", "backward")
    g.add_arrow("b", "w", "backward")
    return g


def test_declare_and_defaults():
    g = small().validate()
    assert g.group_of("w") == "layer0" and g.group_of("b") == "bias"
    assert g.arrows("forward")[0][3]["port"] == "x"  # single port filled in
    assert g.groups() == ["bias", "input", "l2", "layer0", "target"]


def test_networkx_round_trip_preserves_everything():
    g = mlp([3, 2, 2], activation="tanh", loss="cross_entropy", seed=1)
    h = g.to_networkx()
    assert isinstance(h, nx.MultiDiGraph)
    g2 = AgentGraph.from_networkx(h)
    assert list(g2.nx.nodes(data=True)) == list(h.nodes(data=True))
    assert list(g2.nx.edges(keys=True, data=True)) == list(h.edges(keys=True, data=True))
    # results identical after a step
    b = {"x": np.ones((2, 3)), "y": np.eye(2)}
    r1 = step(g, init_state(g, 2), gradient.params(g, 0.1), b)
    r2 = step(g2, init_state(g2, 2), gradient.params(g2, 0.1), b)
    assert r1.loss == r2.loss


def test_users_can_build_with_networkx_tools():
    h = nx.MultiDiGraph()
    h.add_node("x", kind="input", slot=0)
    for i in range(3):
        h.add_node(("w", i), kind="synapse", state={"w": 0.1 * i})
        h.add_edge("x", ("w", i), type="forward", port="x")
    g = AgentGraph.from_networkx(h)
    assert g.number_of_arrows("forward") == 3


def expect(match: str, fn, *args, **kwargs):
    with pytest.raises(AgentGraphError, match=match):
        fn(*args, **kwargs)


def test_forward_cycle_is_named():
    g = small()
    g.add_arrow("b", "w", "forward")
    expect(r"forward arrows form a cycle: .*'w'.*'b'", g.validate)


def test_backward_cycle_is_named():
    g = small()
    g.add_arrow("w", "b", "backward")
    expect(r"backward arrows form a cycle", g.validate)


def test_unknown_kind():
    expect(r"Agent 'z' has unknown kind 'nope'", AgentGraph().add_agent, "z", "nope")
    h = nx.MultiDiGraph()
    h.add_node("z", kind="nope")
    expect(r"unknown kind 'nope'", AgentGraph.from_networkx, h)


def test_arrow_into_missing_port():
    g = small()
    expect(r"'w' -> 'b'.*no forward port 'nope'", g.add_arrow, "w", "b", "forward", port="nope")


def test_wrong_message_size():
    class Wide(Kind):
        name = "wide"
        forward_ports = {"x": Port(3)}
        forward_outputs = {"out": 3}

        def forward(self, params, state, inputs):
            return state, inputs["x"]

    g = small()
    g.add_kind(Wide())
    g.add_agent("v", "wide")
    expect(r"message size mismatch.*'w'.*size 1.*size 3", g.add_arrow, "w", "v", "forward")


def test_mismatched_state_shape_and_unknown_field():
    g = small()
    expect(r"Agent 'q'.*field 'w' has shape \(2,\).*\(\)", g.add_agent, "q", "synapse", state={"w": [1.0, 2.0]})
    expect(r"unknown state field\(s\) \['v'\]", g.add_agent, "q", "synapse", state={"v": 1.0})


def test_nan_initial_state_and_nan_batch():
    g = small()
    expect(r"'q'.*NaN", g.add_agent, "q", "synapse", state={"w": float("nan")})
    s = init_state(g, 2)
    bad = {"x": np.array([[1.0], [np.nan]]), "y": np.zeros((2, 1))}
    expect(r"batch\['x'\] contains NaN.*example 1.*agent 'x'", step, g, s, gradient.params(g, 0.1), bad)


def test_missing_batch_key_and_slot_errors():
    g = small()
    s = init_state(g, 1)
    expect(r"Batch has no key 'y'", step, g, s, gradient.params(g, 0.1), {"x": np.zeros((1, 1))})
    h = small().to_networkx()
    del h.nodes["x"]["slot"]
    expect(r"'x'.*needs a non-negative int 'slot'", lambda: AgentGraph.from_networkx(h).validate())
    g2 = small()
    g2.add_agent("x2", "input", slot=0)
    expect(r"both read column 0", g2.validate)


def test_reflexive_arrow_rules():
    g = small()
    expect(r"reflexive arrow must be a self-loop", g.add_arrow, "w", "b", "reflexive")
    expect(r"kind 'synapse' has no reflexive function", g.add_arrow, "w", "w", "reflexive")
    expect(r"from an agent to itself is a cycle", g.add_arrow, "w", "w", "forward")


def test_missing_params_names_the_agent():
    g = small()
    expect(r"agent 'b' \(kind 'bias'\).*needs params", step, g, init_state(g, 1), {}, {"x": np.ones((1, 1)), "y": np.ones((1, 1))})


def test_user_kind_errors_name_the_agent():
    class Broken(Kind):
        name = "broken"
        fields = {"s": Field(per_example=True)}
        forward_outputs = {"out": 1}

        def forward(self, params, state, inputs):
            return state, np.zeros(2)  # wrong output size

    g = AgentGraph(kinds=[Broken()])
    g.add_agent("k", "broken")
    expect(r"forward of agent 'k'.*output 'out' of shape \(2,\)", step, g, init_state(g, 1), None, {})


def test_bad_declarations_are_project_errors():
    g = AgentGraph()
    expect(r"agent None", g.add_agent, None, "input")
    g.add_agent("a", "relu")
    expect(r"already exists", g.add_agent, "a", "relu")
    expect(r"does not exist", g.add_arrow, "a", "ghost")
    expect(r"type", g.add_arrow, "a", "a", "sideways")
    expect(r"not a Kind", g.add_kind, object())
    expect(r"directed", AgentGraph.from_networkx, nx.Graph())


def test_with_kinds_substitutes_keep_the_replaced_kinds_name():
    from agentgraph import AgentGraphError
    from agentgraph.builders import mlp
    from agentgraph.nodes import Synapse

    class Renamed(Synapse):
        name = "my_synapse"

    class Same(Synapse):
        pass

    g = mlp([2, 1], loss="l2")
    with pytest.raises(AgentGraphError, match="a substitute keeps the name of the kind it replaces"):
        g.with_kinds({"synapse": Renamed()})
    assert type(g.with_kinds({"synapse": Same()}).kind_of(("w", 0, 0, 0))) is Same
