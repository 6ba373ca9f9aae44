"""A hand-written dense VSML (layered networks) in JAX, written from the equations in
``agentgraph/protocols/vsml/__init__.py``'s docstring on ``[B, n_in, n_out, H]`` LSTM states per
layer (not from the kinds): the baseline of the VSML speed comparison, and the reference
``tests/protocols/test_vsml.py`` checks the agent graph against.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from agentgraph.learners.lstm import init_lstm
    >>> p = init_lstm(jax.random.PRNGKey(0), 16, 16, 8)
    >>> st = init_state([jnp.zeros((3, 2, 16))], batch=1, msg=8)
    >>> st, z, loss = tick(p, st, jnp.ones((1, 3)), jnp.array([[1.0, 0.0]]))
    >>> z.shape, loss.shape
    ((1, 2), (1,))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agentgraph.learners.lstm import lstm_step


def init_state(c0, batch: int, msg: int = 8, rand_fraction: float = 0.5):
    """``c0[l] [n_l, n_{l+1}, H]`` per-synapse initial cells (the first ``rand`` channels used).
    Returns ``{"h", "c": [[B, n_l, n_{l+1}, H]], "bwd": [[B, n_{l+1}, M]], "c0", "started"}``."""
    H = c0[0].shape[-1]
    rand = int(H * rand_fraction)
    mask = (jnp.arange(H) < rand).astype(c0[0].dtype)
    c = [jnp.broadcast_to(w * mask, (batch, *w.shape)) for w in c0]
    return {"h": [jnp.zeros_like(x) for x in c], "c": c,
            "bwd": [jnp.zeros((batch, w.shape[1], msg), c0[0].dtype) for w in c0]}


def tick(p, st, x, y, micro_ticks: int = 2, index: int = 1, bound: float = 100.0):
    """One example: ``x [B, n_0]``, ``y [B, n_L]`` (one-hot). Returns ``(state, z [B, n_L],
    loss [B])``: the prediction before the label is heard and its cross-entropy."""
    M = st["bwd"][0].shape[-1]
    fwd = jnp.zeros((*x.shape, M), x.dtype).at[..., 0].set(x)  # [B, n_0, M]
    h, c, bwd = list(st["h"]), list(st["c"]), list(st["bwd"])
    L = len(h)
    for l in range(L):
        n_in, n_out = h[l].shape[1:3]
        inp = jnp.concatenate([jnp.broadcast_to(fwd[:, :, None], (*fwd.shape[:2], n_out, M)),
                               jnp.broadcast_to(bwd[l][:, None], (fwd.shape[0], n_in, n_out, M))], -1)
        hl, cl = h[l], c[l]
        for _ in range(micro_ticks):
            hl, cl = lstm_step(p, inp, hl, cl)
        h[l], c[l] = hl, cl
        f_out = hl @ p["w_fwd"] + p["b_fwd"]
        b_out = hl @ p["w_bwd"] + p["b_bwd"]
        if l > 0:  # heard by layer l-1 at the next tick
            bwd[l - 1] = b_out.mean(axis=2)
        fwd = f_out.mean(axis=1)
    z = bound * jnp.tanh(fwd[..., index] / bound)
    lse = jax.nn.logsumexp(z, axis=-1, keepdims=True)
    loss = (y * (lse - z)).sum(-1)
    err = jnp.exp(z - lse) - y
    bwd[L - 1] = jnp.zeros((*z.shape, M), z.dtype).at[..., 0].set(err).at[..., 1].set(y)
    return {"h": h, "c": c, "bwd": bwd}, z, loss


def episode(p, st, xs, ys, **kw):
    """``T`` ticks (``lax.scan``): ``xs [T, B, n_0]``, ``ys [T, B, n_L]`` → ``(state, z [T, B, n_L],
    losses [T, B])``."""
    def body(s, xy):
        s, z, loss = tick(p, s, *xy, **kw)
        return s, (z, loss)

    st, (z, losses) = jax.lax.scan(body, st, (xs, ys))
    return st, z, losses
