"""Item 6: the gradient protocol, interpreted, equals jax.grad + SGD (float64, 1e-9)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import mlp, random_dag
from agentgraph.builders import mlp_weights
from agentgraph.interpreter import init_state, run, step
from agentgraph.nodes import ACTIVATIONS
from agentgraph.protocols import gradient
from agentgraph.testing import oracle

TOL = 1e-9


def dense_loss(weights, x, y, activation, output_activation, loss):
    """A hand-written dense MLP: mean over the batch of the summed elementwise loss."""
    act = ACTIVATIONS[activation][0]
    h = x
    for l, (W, b) in enumerate(weights):
        h = h @ W + b
        if l < len(weights) - 1:
            h = act(h)
        elif output_activation is not None:
            h = ACTIVATIONS[output_activation][0](h)
    if loss == "cross_entropy":
        per = -(y * jax.nn.log_softmax(h)).sum(axis=1)
    else:
        per = (0.5 * (y - h) ** 2).sum(axis=1)
    return per.mean()


def _batch(rng, B, n_in, n_out, loss):
    x = rng.normal(size=(B, n_in))
    if loss == "cross_entropy":
        y = np.eye(n_out)[rng.integers(0, n_out, B)]
    else:
        y = rng.normal(size=(B, n_out))
    return {"x": x, "y": y}


CASES = [
    # sizes, activation, loss, output_activation
    ((3, 4, 2), "sigmoid", "cross_entropy", None),
    ((2, 3, 3, 1), "tanh", "l2", None),
    ((3, 4, 2), "relu", "l2", "sigmoid"),
    ((3, 3, 3), "relu", "cross_entropy", None),
    ((2, 3, 2), "identity", "l2", "tanh"),
    ((3, 4, 2), "step", "cross_entropy", None),
    ((3, 4, 2), "hard_sigmoid", "l2", None),
]


@pytest.mark.parametrize("sizes,activation,loss,out_act", CASES)
def test_mlp_steps_equal_dense_sgd(sizes, activation, loss, out_act):
    """Three interpreted steps == three SGD steps of jax.grad on a hand-written dense MLP."""
    rng = np.random.default_rng(len(sizes) * 7 + len(activation))
    g = mlp(sizes, activation=activation, loss=loss, output_activation=out_act, init_std=0.5, seed=3)
    B, lr = 4, 0.3
    state = init_state(g, B)
    with jax.enable_x64(True):
        weights = [(jnp.asarray(W, jnp.float64), jnp.asarray(b, jnp.float64)) for W, b in mlp_weights(state, sizes)]
        grad = jax.grad(dense_loss)
        for _ in range(3):
            batch = _batch(rng, B, sizes[0], sizes[-1], loss)
            r = step(g, state, gradient.params(g, lr), batch)
            expected_loss = float(dense_loss(weights, batch["x"], batch["y"], activation, out_act, loss))
            assert abs(r.loss - expected_loss) < TOL
            gw = grad(weights, batch["x"], batch["y"], activation, out_act, loss)
            weights = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(weights, gw)]
            state = r.state
            for (W, b), (Wi, bi) in zip(weights, mlp_weights(state, sizes)):
                np.testing.assert_allclose(Wi, np.asarray(W), rtol=0, atol=TOL)
                np.testing.assert_allclose(bi, np.asarray(b), rtol=0, atol=TOL)
    # the step really moved the weights (so the comparison is not vacuous) unless blocked by step
    w0 = mlp_weights(init_state(g, B), sizes)[-1][0]
    assert np.abs(mlp_weights(state, sizes)[-1][0] - w0).max() > 1e-4


@pytest.mark.parametrize("seed,loss,activation", [(0, "l2", "tanh"), (1, "cross_entropy", "sigmoid"), (2, "l2", "relu")])
def test_random_dag_step_equals_autodiff_sgd(seed, loss, activation):
    """One interpreted step on a non-layered random DAG == jax.grad of the graph's forward + SGD."""
    g = random_dag(3, 6, 2, edge_prob=0.4, parallel_prob=0.3, activation=activation, loss=loss, seed=seed)
    # the graph really is non-layered and has parallel arrows
    syn_into = [(s, d) for s, d, _, a in g.arrows("forward") if s[0] == "w"]
    assert len(syn_into) > len(set(syn_into)), "expected parallel arrows"
    rng = np.random.default_rng(seed)
    B, lr = 3, 0.2
    state = init_state(g, B)
    batch = _batch(rng, B, 3, 2, loss)
    r = step(g, state, gradient.params(g, lr), batch)
    ref = oracle.sgd_reference(g, state, lr, batch)
    moved = 0.0
    for agent, fields in ref.items():
        for f, v in fields.items():
            np.testing.assert_allclose(r.state[agent][f], v, rtol=0, atol=TOL, err_msg=f"{agent} {f}")
            moved = max(moved, float(np.abs(v - state[agent][f]).max()))
    assert moved > 1e-4


def test_gradient_protocol_learns():
    """Sanity: repeated interpreted steps reduce an L2 regression loss."""
    g = mlp([1, 8, 1], activation="tanh", loss="l2", init_std=0.5, seed=0)
    x = np.linspace(-1, 1, 16)[:, None]
    batch = {"x": x, "y": np.sin(2 * x)}
    _, losses = run(g, init_state(g, 16), gradient.params(g, lr=0.2), [batch] * 30)
    assert losses[-1] < 0.5 * losses[0]
