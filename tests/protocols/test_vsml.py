"""VSML as a library protocol: the agent graph on library networks (layered and not), compiled ==
interpreted in float64, the hand-written dense VSML of the same equations gives the same
predictions and losses tick by tick, settings errors."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import mlp_network, random_dag_network
from agentgraph.protocols.base import resolve
from agentgraph.protocols.vsml import GROUP, vsml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"))
import vsml_dense  # noqa: E402  (the hand-written baseline lives with the benchmarks)


def _params(key, p, graph, scale=1.0):
    learned = p.init(key, graph)
    return jax.tree.map(lambda v: scale * v, learned)


def test_transform_keeps_the_wiring():
    net = mlp_network([4, 3, 2])
    g = vsml().network(net).graph
    assert len(g.agents("vsml_synapse")) == len(net.graph.agents("synapse")) == 18
    assert len(g.agents("vsml_unit")) == len(g.agents("vsml_back")) == 3
    assert len(g.agents("vsml_output")) == len(g.agents("vsml_error")) == 2
    delayed = [a for _, _, _, a in g.arrows("tick") if a.get("delay")]
    assert len(delayed) == 18  # every synapse hears its post-unit's backward message one tick late


@pytest.mark.parametrize("name", ["mlp", "random_dag"])
def test_compiled_equals_interpreted_x64(name):
    net = (mlp_network([3, 4, 2]) if name == "mlp"
           else random_dag_network(3, 5, 2, edge_prob=0.6, parallel_prob=0.3, seed=3))
    p = vsml(msg=4, hidden=6)
    g = p.network(net).graph
    rng = np.random.default_rng(0)
    params = {GROUP: jax.tree.map(lambda v: np.asarray(v, np.float64), _params(jax.random.PRNGKey(1), p, g, 2.0))}
    st = interpreter.init_state(g, 2)
    for a in g.agents("vsml_synapse"):
        st[a]["c0"] = rng.normal(size=6)
    n_in, n_out = len(g.agents("vsml_input")), len(g.agents("vsml_error"))
    with jax.enable_x64(True):
        prog = compile(g, dtype=jnp.float64)
        sc = prog.from_agents(st)
        for t in range(3):  # the third tick hears backward messages made at the second
            b = {"x": rng.normal(size=(2, n_in)), "y": np.eye(n_out)[rng.integers(0, n_out, 2)]}
            r = interpreter.step(g, st, params, b)
            st = r.state
            sc, loss = prog.step(params, sc, b)
            assert abs(float(loss) - r.loss) < 1e-10
        got = prog.to_agents(sc)
    for a in g.agents():
        for f, v in st[a].items():
            np.testing.assert_allclose(got[a][f], v, atol=1e-10, err_msg=f"{a} {f}")
    assert np.abs(st[g.agents("vsml_synapse")[0]]["h"]).max() > 1e-3


def test_agent_graph_equals_the_dense_vsml_tick_by_tick():
    sizes, B, T, H, M = (5, 4, 3), 2, 6, 16, 8
    p = vsml(msg=M, hidden=H)
    net = p.network(mlp_network(list(sizes)))
    g = net.graph
    params = _params(jax.random.PRNGKey(2), p, g, 1.5)
    rng = np.random.default_rng(1)
    c0 = [rng.normal(0, 0.5, (sizes[l], sizes[l + 1], H)).astype(np.float32) for l in range(2)]
    prog = compile(g)
    agents = prog.to_agents(prog.init(B))
    for l in range(2):
        for i in range(sizes[l]):
            for j in range(sizes[l + 1]):
                agents[("w", l, i, j)]["c0"] = c0[l][i, j]
    xs = rng.normal(size=(T, B, sizes[0])).astype(np.float32)
    ys = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], (T, B))]
    state = prog.from_agents(agents)
    zs, losses = [], []
    for t in range(T):
        state, loss = prog.step({GROUP: params}, state, {"x": xs[t], "y": ys[t]})
        zs.append(np.asarray(prog.read(state, list(net.readout.agents), "z")))
        losses.append(float(loss))
    _, z_ref, l_ref = vsml_dense.episode(params, vsml_dense.init_state([jnp.asarray(c) for c in c0], B, M),
                                         jnp.asarray(xs), jnp.asarray(ys))
    np.testing.assert_allclose(np.stack(zs), np.asarray(z_ref), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses, np.asarray(l_ref).mean(axis=1), rtol=1e-4, atol=1e-6)
    assert np.abs(np.stack(zs)[-1] - np.stack(zs)[0]).max() > 1e-3  # the network changed as it learned


def test_resolve_and_errors():
    p = resolve({"rule": "vsml", "msg": 6, "hidden": 8})
    assert p.name == "vsml" and p.settings["hidden"] == 8
    with pytest.raises(AgentGraphError, match=r"protocol\.msg must be at least 2"):
        vsml(msg=1)
    with pytest.raises(AgentGraphError, match=r"protocol\.output_index"):
        vsml(msg=4, output_index=4)
