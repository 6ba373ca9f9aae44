"""A hand-written dense BLUR step (layered networks) in JAX: the baseline of ``bench_compiler.py``'s
BLUR part, written from the equations of ``agentgraph/protocols/blur.py``'s docstring on
``[B, n, k]`` neuron states and ``[n_in, n_out, k]`` synapse arrays (not from the kinds).

``tests/benchmarks/test_blur_dense.py`` checks it computes what the compiled agent graph does.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from agentgraph.protocols.blur import init_genome
    >>> g = init_genome(3, jax.random.PRNGKey(0))
    >>> W, Bias = [jnp.zeros((4, 2, 3))], [jnp.zeros((2, 3))]
    >>> W, Bias = blur_step(g, W, Bias, jnp.ones((5, 4)), jnp.ones((5, 2)))
    >>> W[0].shape
    (4, 2, 3)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SIGMAS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "identity": lambda z: z}


def blur_step(g, W, Bias, x, y, sigma: str = "tanh"):
    """One inner step: ``x [B, n_0]``, ``y [B, n_L]`` (labels into channel 1 of the outputs),
    ``W[l] [n_l, n_{l+1}, k]``, ``Bias[l] [n_{l+1}, k]``. Returns the new ``(W, Bias)``; updates
    are means over the batch."""
    s = SIGMAS[sigma]
    L, k = len(W), W[0].shape[-1]
    e0 = jnp.zeros(k).at[0].set(1.0)
    A = [jnp.zeros((x.shape[0], W[0].shape[0], k)).at[:, :, 0].set(x)]
    for l in range(L):  # forward, the neurons' states start at zero
        u = jnp.einsum("kc,bic->bik", g["nu"], A[l])
        A.append(s(g["eta"] * (jnp.einsum("bik,ijk->bjk", u, W[l]) + Bias[l] * (g["nu"] @ e0))))
    A[L] = A[L].at[:, :, 1].set(y)
    W_new, B_new = list(W), list(Bias)
    bias_in = g["nu_t"].T @ e0
    for l in reversed(range(L)):
        post = A[l + 1]  # after its own backward
        mt = jnp.einsum("kc,bjc->bjk", g["mu_t"], post)
        B_new[l] = Bias[l] + (g["f_t"] - 1) * Bias[l] + g["eta_t"] * bias_in * mt.mean(0)
        pre = jnp.einsum("ck,bic->bik", g["nu_t"], A[l])  # A[l] still holds the forward state the synapses stored
        W_new[l] = W[l] + (g["f_t"] - 1) * W[l] + g["eta_t"] * jnp.einsum("bik,bjk->ijk", pre, mt) / x.shape[0]
        if l > 0:
            m = jnp.einsum("bjk,ijk->bik", jnp.einsum("kc,bjc->bjk", g["mu"], post), W[l])
            A[l] = s(g["f"] * A[l] + g["eta"] * m)
    return W_new, B_new



def blur_unroll(g, W, Bias, xs, ys, sigma: str = "tanh"):
    """``T`` steps by ``lax.scan``: ``xs [T, B, n_0]``, ``ys [T, B, n_L]``; returns ``(W, Bias)``."""
    def body(carry, xy):
        return blur_step(g, *carry, *xy, sigma=sigma), None

    return jax.lax.scan(body, (list(W), list(Bias)), (xs, ys))[0]
