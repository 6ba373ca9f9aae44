"""A hand-written JAX CNN (``lax.conv_general_dilated``, NCHW / OIHW) and its SGD step: the
baseline of ``benchmarks/bench_cnn.py`` and the oracle of ``tests/benchmarks/test_cnn_dense.py``,
which checks that the gradient protocol on :func:`agentgraph.builders.cnn` computes exactly this.

Written from the layer definitions only (not from the kinds): conv → bias → activation, average
or max pooling by ``lax.reduce_window``, dense layers on the map flattened in (c, y, x) order, a
softmax cross-entropy (per example ``Σ_j −t_j log p_j``) or L2 (``½ Σ_j r_j²``) head, batch mean.

Example:
    >>> import jax, numpy as np
    >>> from agentgraph.builders import Conv, Pool
    >>> spec = ((1, 6, 6), (Conv(2, 3), Pool(2)), 3)
    >>> p = init_params(jax.random.PRNGKey(0), *spec)
    >>> forward(p, np.zeros((4, 36)), *spec).shape
    (4, 3)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.builders import Conv, Dense, Pool, layer_spec
from agentgraph.nodes.activations import ACTIVATIONS


def init_params(key, input_shape, layers, n_out, std: float = 0.1):
    """``[(W, b), ...]`` per conv layer (``W [Co, Ci, k, k]``, ``b [Co]``) and dense layer
    (``W [n_in, n_out]``, ``b [n_out]``), weights ``~ N(0, std)``, biases 0."""
    C, H, W = input_shape
    out, n = [], None
    for s in map(layer_spec, layers):
        key, k1 = jax.random.split(key)
        if isinstance(s, Conv):
            out.append((std * jax.random.normal(k1, (s.channels, C, s.kernel, s.kernel)), jnp.zeros(s.channels)))
            C, H, W = s.channels, s.out_size(H), s.out_size(W)
        elif isinstance(s, Pool):
            H, W = s.out_size(H), s.out_size(W)
        else:
            n_in = n if n is not None else C * H * W
            out.append((std * jax.random.normal(k1, (n_in, s.units)), jnp.zeros(s.units)))
            n = s.units
    key, k1 = jax.random.split(key)
    n_in = n if n is not None else C * H * W
    out.append((std * jax.random.normal(k1, (n_in, n_out)), jnp.zeros(n_out)))
    return out


def forward(params, x, input_shape, layers, n_out, activation: str = "relu"):
    """Logits (cross-entropy head) or predictions (L2 head) ``[B, n_out]`` of ``x [B, C·H·W]``."""
    act = ACTIVATIONS[activation][0]
    h = jnp.reshape(x, (x.shape[0], *input_shape))
    i = 0
    for s in map(layer_spec, layers):
        if isinstance(s, Conv):
            W, b = params[i]
            i += 1
            h = jax.lax.conv_general_dilated(h, W.astype(h.dtype), (s.stride, s.stride), [(s.padding, s.padding)] * 2,
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
            h = act(h + b[None, :, None, None])
        elif isinstance(s, Pool):
            st = s.stride or s.size
            if s.mode == "avg":
                h = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 1, s.size, s.size), (1, 1, st, st), "VALID") / s.size ** 2
            else:
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, s.size, s.size), (1, 1, st, st), "VALID")
        else:
            W, b = params[i]
            i += 1
            h = act(h.reshape(h.shape[0], -1) @ W + b)
    W, b = params[i]
    return h.reshape(h.shape[0], -1) @ W + b


def loss(params, x, y, input_shape, layers, n_out, activation: str = "relu", head: str = "cross_entropy"):
    """Batch mean of the per-example loss."""
    z = forward(params, x, input_shape, layers, n_out, activation)
    if head == "cross_entropy":
        return jnp.mean(-jnp.sum(y * jax.nn.log_softmax(z), axis=1))
    return jnp.mean(0.5 * jnp.sum((z - y) ** 2, axis=1))


def sgd_step(params, x, y, lr, input_shape, layers, n_out, activation: str = "relu", head: str = "cross_entropy"):
    """``(params − lr · ∇loss, loss)``."""
    value, g = jax.value_and_grad(loss)(params, x, y, input_shape, layers, n_out, activation, head)
    return jax.tree.map(lambda p, d: p - lr * d, params, g), value


def params_of(state: Mapping[Hashable, Mapping[str, np.ndarray]], input_shape, layers, n_out) -> list:
    """The ``[(W, b), ...]`` of a :func:`~agentgraph.builders.cnn` graph's per-agent state
    (interpreter layout ``{agent: {field: value}}``: each kernel entry read from one of its uses)."""
    C, H, W = input_shape
    out, l, n = [], 0, None
    for s in map(layer_spec, layers):
        if isinstance(s, Conv):
            Ho, Wo = s.out_size(H), s.out_size(W)
            K = np.zeros((s.channels, C, s.kernel, s.kernel))
            for co in range(s.channels):
                for ci in range(C):
                    for i in range(s.kernel):
                        for j in range(s.kernel):
                            use = next(("cw", l, co, ci, i, j, y, x) for y in range(Ho) for x in range(Wo)
                                       if ("cw", l, co, ci, i, j, y, x) in state)
                            K[co, ci, i, j] = state[use]["w"]
            out.append((K, np.array([state[("cb", l, co, 0, 0)]["b"] for co in range(s.channels)])))
            C, H, W, l = s.channels, Ho, Wo, l + 1
        elif isinstance(s, Pool):
            H, W = s.out_size(H), s.out_size(W)
        else:
            n_in = n if n is not None else C * H * W
            out.append(_dense_of(state, l, n_in, s.units))
            n, l = s.units, l + 1
    out.append(_dense_of(state, l, n if n is not None else C * H * W, n_out))
    return out


def _dense_of(state, l: int, n_in: int, n_out: int):
    W = np.array([[state[("w", l, i, j)]["w"] for j in range(n_out)] for i in range(n_in)])
    return W, np.array([state[("b", l, j)]["b"] for j in range(n_out)])

