"""The gradient protocol on a tied-kernel agent-graph CNN (``agentgraph.builders.cnn``) equals
``jax.grad`` + SGD of the hand-written ``lax.conv`` CNN (``benchmarks/baselines/cnn_dense.py``),
and on an Elman network tied across time (``agentgraph.builders.elman``) the hand-written
``lax.scan`` network (``rnn_dense.py``), in float64, step after step, in the interpreter and
compiled (DESIGN.md §5)."""

from __future__ import annotations

import pathlib
import sys

import jax
import numpy as np
import pytest

from agentgraph import compile
from agentgraph.builders import Conv, Pool, cnn, elman
from agentgraph.interpreter import init_state, step
from agentgraph.protocols import gradient

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"))
import cnn_dense  # noqa: E402  (the hand-written baselines live with the benchmarks)
import rnn_dense  # noqa: E402

#: two conv layers (one padded), one pooling layer, a dense head
LAYERS = (Conv(2, kernel=3, stride=1, padding=1), Pool(2), Conv(2, kernel=2))
SHAPE, N_OUT, B, LR = (1, 5, 5), 3, 2, 0.3


def _batch(seed):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(B, 25)), "y": np.eye(N_OUT)[rng.integers(0, N_OUT, B)]}


def _dev(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for (U, V) in zip(a, b) for u, v in zip(U, V))


@pytest.mark.parametrize("mode, activation", [("avg", "relu"), ("max", "tanh")])
def test_gradient_protocol_cnn_equals_handwritten_lax_conv_sgd(mode, activation):
    layers = (LAYERS[0], Pool(2, mode=mode), LAYERS[2])
    g = cnn(SHAPE, layers, N_OUT, activation, "cross_entropy", init_std=0.4, seed=1)
    params = gradient.params(g, LR)
    s_int = init_state(g, B)
    with jax.enable_x64(True):
        ref = [tuple(map(np.asarray, wb)) for wb in cnn_dense.params_of(s_int, SHAPE, layers, N_OUT)]
        prog = compile(g)
        s_c = prog.init(B)
        for t in range(3):
            b = _batch(t)
            new_ref, ref_loss = cnn_dense.sgd_step(ref, b["x"], b["y"], LR, SHAPE, layers, N_OUT, activation)
            s_c, loss_c = prog.step(params, s_c, b)
            assert abs(float(loss_c) - float(ref_loss)) < 1e-9
            got = cnn_dense.params_of(prog.to_agents(s_c), SHAPE, layers, N_OUT)
            assert _dev(got, new_ref) < 1e-9
            if t < 2:  # the interpreter (slow): two steps
                r = step(g, s_int, params, b)
                s_int = r.state
                assert abs(r.loss - float(ref_loss)) < 1e-9
                assert _dev(cnn_dense.params_of(s_int, SHAPE, layers, N_OUT), new_ref) < 1e-9
            moved = _dev(new_ref, ref)
            assert moved > 1e-4  # the step did something
            ref = new_ref


def test_gradient_protocol_elman_equals_handwritten_lax_scan_bptt():
    n_in, H, n_out, T = 2, 3, 2, 4
    g = elman(n_in, H, n_out, T, "tanh", "l2", init_std=0.5, seed=2)
    params = gradient.params(g, 0.2)
    s_int = init_state(g, B)
    with jax.enable_x64(True):
        ref = rnn_dense.params_of(s_int, n_in, H, n_out)
        prog = compile(g)
        s_c = prog.init(B)
        for t in range(3):
            rng = np.random.default_rng(10 + t)
            b = {"x": rng.normal(size=(B, T * n_in)), "y": rng.normal(size=(B, n_out))}
            new_ref, ref_loss = rnn_dense.sgd_step(ref, b["x"], b["y"], 0.2, T)
            s_c, loss_c = prog.step(params, s_c, b)
            assert abs(float(loss_c) - float(ref_loss)) < 1e-9
            got = rnn_dense.params_of(prog.to_agents(s_c), n_in, H, n_out)
            assert max(float(np.max(np.abs(got[k] - np.asarray(new_ref[k])))) for k in ref) < 1e-9
            r = step(g, s_int, params, b)
            s_int = r.state
            got = rnn_dense.params_of(s_int, n_in, H, n_out)
            assert max(float(np.max(np.abs(got[k] - np.asarray(new_ref[k])))) for k in ref) < 1e-9
            assert max(float(np.max(np.abs(np.asarray(new_ref[k]) - np.asarray(ref[k])))) for k in ref) > 1e-4
            ref = new_ref
