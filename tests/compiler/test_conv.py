"""The convolution lowering (agentgraph.compiler.conv): a verified "conv" hint lowers a tied
synapse layer to lax.conv_general_dilated, and the result equals the interpreter and the generic
tied lowering (float64), gradients through the unroll included; hints that do not verify, and
kinds that do not declare linear maths, fall back to the generic lowering."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraph, compile
from agentgraph.builders import Conv, Pool, as_network, cnn
from agentgraph.protocols import gradient
from agentgraph.protocols.base import resolve
from agentgraph.testing import compare


def _lowerings(prog) -> set[str]:
    return {p.lowering for _, waves in prog.plan.sweeps for w in waves for b in w for p in b.ports}


def _batches(g, n=3, B=2, seed=0):
    rng = np.random.default_rng(seed)
    n_in, n_out = len(g.agents("input")), len(g.agents("target"))
    return [{"x": rng.normal(size=(B, n_in)), "y": np.eye(n_out)[rng.integers(0, n_out, B)]} for _ in range(n)]


CASES = {
    "pad-pool-conv": ((1, 6, 6), [Conv(2, 3, 1, 1), Pool(2), Conv(2, 2)]),
    "maxpool-3": ((2, 6, 6), [Conv(2, 3, 1, 1), Pool(3, mode="max")]),
    "stride-2ch": ((2, 7, 7), [Conv(3, 3, 2, 1), Conv(2, 2, 1, 0)]),
    "dense-after": ((1, 5, 5), [Conv(2, 3, 2, 0), {"type": "dense", "units": 4}]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_lowering_equals_interpreter_and_generic_x64(name):
    shape, layers = CASES[name]
    g = cnn(shape, layers, 3, "tanh", "cross_entropy", init_std=0.4, seed=1)
    n_conv = sum(isinstance(s, Conv) for s in layers)
    with jax.enable_x64(True):
        prog = compile(g)
    assert sum(b.conv is not None for w in prog.plan.backward for b in w) == n_conv
    assert "conv" in _lowerings(prog)
    if any(isinstance(s, Pool) and s.mode == "avg" for s in layers):  # window reads are reshapes, not gathers
        assert {"pool", "unpool"} <= _lowerings(prog)
    assert prog.plan.piecewise == ("backward", "forward")
    params, bs = gradient.params(g, 0.3), _batches(g)
    c = compare(g, params, bs)
    assert c.worst < 1e-10, c
    generic = compare(g, params, bs, linear=False)
    assert generic.worst < 1e-10


def test_conv_lowering_gradient_through_the_unroll_equals_generic():
    g = cnn((1, 6, 6), [Conv(2, 3, 1, 1), Pool(2), Conv(2, 2)], 3, "relu", "cross_entropy", init_std=0.4, seed=2)
    bs = _batches(g, n=2, B=3, seed=1)
    stacked = jax.tree.map(lambda *v: jnp.stack(v), *bs)
    with jax.enable_x64(True):
        progs = {lin: compile(g, linear=lin) for lin in (True, False)}
        assert "conv" in _lowerings(progs[True]) and "conv" not in _lowerings(progs[False])

        def final_loss(log_lr, prog):
            params = {grp: {"lr": jnp.exp(log_lr)} for grp in g.groups()}
            s, losses = prog.unroll(params, prog.init(3), stacked)
            return prog.forward(params, s, bs[0])[1] + losses.sum()

        # jit: one compile of the whole value-and-gradient, not op by op
        vals = {lin: jax.jit(jax.value_and_grad(final_loss), static_argnums=1)(jnp.log(0.2), prog)
                for lin, prog in progs.items()}
    np.testing.assert_allclose(float(vals[True][0]), float(vals[False][0]), rtol=1e-10)
    np.testing.assert_allclose(float(vals[True][1]), float(vals[False][1]), rtol=1e-9)
    assert abs(float(vals[True][1])) > 1e-6


def test_a_hint_that_does_not_hold_is_ignored():
    g = cnn((1, 5, 5), [Conv(2, 3, 1, 1)], 2, "tanh", "l2", init_std=0.4)
    h = g.hints("conv")[0]
    plain = AgentGraph.from_networkx(g.to_networkx())  # hints do not travel through networkx
    assert not plain.hints("conv")
    with jax.enable_x64(True):
        assert "conv" not in _lowerings(compile(plain))
        right = plain.copy()
        right.add_hint("conv", **h)
        assert "conv" in _lowerings(compile(right))
        wrong = plain.copy()
        wrong.add_hint("conv", **{**h, "stride": 2})  # a false geometry: fails verification
        assert "conv" not in _lowerings(compile(wrong))
    assert compare(wrong, gradient.params(wrong, 0.3), _batches(wrong)).worst < 1e-10
    extra = cnn((1, 5, 5), [Conv(2, 3, 1, 1)], 2, "tanh", "l2", init_std=0.4)
    use = int(extra.hints("conv")[0]["synapses"][0, 0, 1, 1, 2, 2])
    extra.add_arrow(extra.arrays().names[use], ("cb", 0, 1, 0, 0), "forward", port="x")  # one arrow too many
    with jax.enable_x64(True):
        assert "conv" not in _lowerings(compile(extra))
    assert compare(extra, gradient.params(extra, 0.3), _batches(extra)).worst < 1e-10


def test_kinds_without_linear_declarations_keep_the_generic_lowering():
    g = cnn((1, 5, 5), [Conv(2, 3, 1, 1), Conv(2, 3, 2)], 3, "relu", "cross_entropy", init_std=0.3)
    m = resolve({"rule": "mplp"}).network(as_network(g, 0.3)).graph
    assert "conv" not in _lowerings(compile(m))
