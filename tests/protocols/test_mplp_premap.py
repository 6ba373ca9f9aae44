"""Premaps: a kind's per-port function of its aggregated message, which the compiler may run once
per sender. Results must equal applying it per receiver (the interpreter's way), bit for bit in
meaning: same numbers with and without it, in every lowering."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import compile, mlp, random_dag
from agentgraph.arrows.ports import Port
from agentgraph.graph import AgentGraph
from agentgraph.interpreter import step
from agentgraph.nodes import L2Loss
from agentgraph.nodes.base import Field, Kind
from agentgraph.protocols import mplp


def _params(g, cfg, sharing, seed=1):
    params = mplp.init_params(g, jax.random.PRNGKey(seed), cfg, sharing=sharing)
    for grp in params:  # non-trivial normalisation, so a premap that drops it shows
        F = params[grp]["in_mean"].shape[0]
        params[grp]["in_mean"] = 0.1 * jnp.arange(F, dtype=jnp.float32) - 0.2
        params[grp]["in_inv_std"] = 1.0 + 0.05 * jnp.arange(F, dtype=jnp.float32)
        params[grp]["out_scale"] = jnp.asarray(0.3)
    return params


def _lowerings(prog, kind: str, port: str) -> set[str]:
    return {p.lowering for w in prog.plan.backward for b in w if b.kind == kind for p in b.ports if p.port == port}


CASES = [  # (network, stateful learners, sharing, lowering of the synapses' message port, check grads)
    ("mlp", True, "group", "tile", False),  # gradients: the dag case (one compile each costs ~30 s)
    ("mlp", False, "all", "tile", False),
    ("dag", True, "kind", "gather", True),
    ("dag", False, "group", "gather", False),
]


@pytest.mark.parametrize("net,stateful,sharing,lowering,grads", CASES)
def test_mplp_premap_on_equals_off(net, stateful, sharing, lowering, grads):
    base = (mlp([5, 4, 3], activation="sigmoid", loss="cross_entropy", init_std=0.5, seed=0) if net == "mlp"
            else random_dag(3, 4, 2, edge_prob=0.5, loss="l2", init_std=0.5, seed=3))
    on = mplp.MPLPConfig(k=3, hidden=2, stateful=stateful, premap=True)
    off = dataclasses.replace(on, premap=False)
    g_on, g_off = base.with_kinds(mplp.kinds(on, sharing)), base.with_kinds(mplp.kinds(off, sharing))
    p_on, p_off = _params(g_on, on, sharing), _params(g_off, off, sharing)
    rng = np.random.default_rng(0)
    n_in, n_out = (5, 3) if net == "mlp" else (3, 2)
    T, B = 3, 2
    y = (np.eye(n_out)[rng.integers(0, n_out, (T, B))] if net == "mlp" else rng.normal(size=(T, B, n_out)))
    batches = {"x": jnp.asarray(rng.normal(size=(T, B, n_in)), jnp.float32), "y": jnp.asarray(y, jnp.float32)}
    prog_on, prog_off = compile(g_on), compile(g_off)
    assert lowering in _lowerings(prog_on, "synapse", "m")
    s_on, l_on = prog_on.unroll(p_on, prog_on.init(B), batches)
    s_off, l_off = prog_off.unroll(p_off, prog_off.init(B), batches)
    np.testing.assert_allclose(np.asarray(l_on), np.asarray(l_off), rtol=2e-5, atol=1e-6)
    for k in s_on:
        for f in s_on[k]:
            np.testing.assert_allclose(np.asarray(s_on[k][f]), np.asarray(s_off[k][f]), rtol=2e-5, atol=2e-6)
    if not grads:
        return
    # and the meta-gradient through the unroll is the same
    loss = lambda prog: lambda p: prog.unroll(p, prog.init(B), batches)[1].sum()  # noqa: E731
    g1, g2 = jax.jit(jax.grad(loss(prog_on)))(p_on), jax.jit(jax.grad(loss(prog_off)))(p_off)  # one compile each
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)
    assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(g1)) > 1e-4


def test_mplp_premap_interpreter_equals_compiled_x64():
    cfg = mplp.MPLPConfig(k=2, hidden=2, premap=True)
    g = mlp([3, 2, 2], activation="tanh", loss="cross_entropy", init_std=0.5, seed=1).with_kinds(mplp.kinds(cfg))
    params = _params(g, cfg, "group")
    rng = np.random.default_rng(1)
    batch = {"x": rng.normal(size=(2, 3)), "y": np.eye(2)[[0, 1]]}
    with jax.enable_x64(True):
        prog = compile(g)
        s0 = prog.init(2)
        r = step(g, prog.to_agents(s0), params, batch)
        s, loss = prog.step(jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params), s0, batch)
        assert abs(float(loss) - r.loss) < 1e-10
        got = prog.to_agents(s)
        err = max(float(np.max(np.abs(got[a][f] - v))) for a, d in r.state.items() for f, v in d.items())
        assert err < 1e-9


class _Affine(Kind):
    """Premaps its backward message ``m [1]`` to ``[2]``: ``(3m + 1, m**2 - 2)`` (not linear, and
    non-zero at m = 0, so a port with no arrows must still see ``premap(0)``)."""

    name = "affine"
    fields = {"x": Field(per_example=True), "seen": Field(shape=(2,), per_example=True)}
    forward_ports = {"x": Port(1, "sum")}
    backward_ports = {"m": Port(1, "mean")}
    forward_outputs = {"out": 1}
    backward_outputs = {"out": 1}

    def forward(self, params, state, inputs):
        return {**state, "x": inputs["x"][0]}, inputs["x"]

    def premaps(self, sweep):
        return {"m": 2} if sweep == "backward" else {}

    def premap(self, params, sweep, port, message):
        return jnp.stack([3.0 * message[0] + 1.0, message[0] ** 2 - 2.0])

    def backward(self, params, state, messages):
        v = messages["m"]
        return {**state, "seen": v}, v[:1] * state["x"], {}


def test_user_premap_in_every_lowering_and_on_empty_ports():
    g = AgentGraph(kinds=[_Affine()])
    # a fan-out (one sender, four receivers: repeat/tile/gather lowerings), a receiver with two
    # senders (premap after the mean) and one with none (zeros, so it must see premap(0))
    g.add_agent("src", "affine")
    g.add_agent("t", "target", slot=0)
    g.add_agent("loss", "l2")
    g.add_arrow("t", "loss", "forward", port="target")
    for a in [("r", i) for i in range(4)] + ["two", "none"]:
        g.add_agent(a, "affine")
        g.add_arrow(a, "loss", "forward", port="pred")
    for i in range(4):
        g.add_arrow("src", ("r", i), "forward", port="x")
        g.add_arrow("src", ("r", i), "backward", port="m")
    g.add_arrow("loss", "src", "backward", port="m")
    g.add_arrow(("r", 0), "two", "backward", port="m")
    g.add_arrow(("r", 1), "two", "backward", port="m")
    rng = np.random.default_rng(2)
    B = 3
    batch = {"y": rng.normal(size=(B, 1))}
    with jax.enable_x64(True):
        for dense in (True, False):
            prog = compile(g, dense=dense)
            s0 = prog.init(B)
            s0["affine"]["x"] = jnp.asarray(rng.normal(size=s0["affine"]["x"].shape))
            r = step(g, prog.to_agents(s0), None, batch)
            s, loss = prog.step(None, s0, batch)
            got = prog.to_agents(s)
            for a in ("src", ("r", 2), "two", "none"):
                np.testing.assert_allclose(got[a]["seen"], r.state[a]["seen"], atol=1e-12)
            np.testing.assert_allclose(got["none"]["seen"], np.tile([1.0, -2.0], (B, 1)), atol=1e-12)
