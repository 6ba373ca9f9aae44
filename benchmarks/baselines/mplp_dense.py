"""A hand-written dense implementation of MPLP on layered networks — the speed baseline.

The same maths as the compiled MPLP kinds on an :func:`~agentgraph.mlp` graph, written the way an
expert would by hand: weights as matrices ``W_l [I, J]``, every agent's learner run as one
batched call per layer over ``[B, I, J, features]`` tensors. Benchmarks compare the compiled
program against it, and a test checks both give the same numbers.

Only the stateful (GRU) learner on ``mlp(sizes, activation, "cross_entropy" | "l2")`` graphs
with ``output_activation=None`` is covered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from agentgraph.learners.gru import gru_step
from agentgraph.nodes.activations import ACTIVATIONS

__all__ = ["init_state", "step", "unroll"]


def init_state(weights: Sequence[tuple[jax.Array, jax.Array]], batch_size: int, carry: Mapping[str, int],
               n_out: int) -> dict:
    """Dense state: ``{"W": [...], "b": [...], "c": {carries}}`` with zero carries.

    ``carry`` gives each learner's carry size: ``{"synapse", "bias", "act", "softmax", "loss"}``.
    """
    B = batch_size
    c = {"loss": jnp.zeros((B, n_out, carry["loss"])), "softmax": jnp.zeros((B, n_out, carry["softmax"]))}
    for l, (W, b) in enumerate(weights):
        I, J = W.shape
        c[f"w{l}"] = jnp.zeros((B, I, J, carry["synapse"]))
        c[f"b{l}"] = jnp.zeros((B, J, carry["bias"]))
        if l < len(weights) - 1:
            c[f"a{l}"] = jnp.zeros((B, J, carry["act"]))
    return {"W": [w for w, _ in weights], "b": [b for _, b in weights], "c": c}


def _learn(p: Mapping[str, Any], feats: jax.Array, carry: jax.Array, k: int):
    x = (feats - p["in_mean"]) * p["in_inv_std"]
    c = gru_step(p["learner"], x, carry)
    return c, c[..., -k:], c[..., 0]


def step(params: Mapping[str, Any], state: dict, batch: Mapping[str, jax.Array], *, activation: str,
         loss: str, k: int, act_group: str) -> tuple[dict, jax.Array]:
    """One MPLP inner step on dense tensors; returns ``(state, loss)`` like ``Program.step``."""
    act = ACTIVATIONS[activation][0]
    x, y = batch["x"], batch["y"]
    Ws, bs, c = state["W"], state["b"], dict(state["c"])
    L = len(Ws)
    h, zs, pres = x, [], []
    ins = [x]
    for l in range(L):
        z = h @ Ws[l]
        zs.append(z)
        h = z + bs[l]
        if l < L - 1:
            pres.append(h)
            h = act(h)
            ins.append(h)
    if loss == "cross_entropy":
        mx = h.max(-1, keepdims=True)
        lse = jax.nn.logsumexp(h, -1, keepdims=True)
        pred = jnp.exp(h - lse)
        lval = -y * jnp.log(pred)
        last = jnp.log(jnp.clip(pred, 1e-7, 1 - 1e-7))
    else:
        pred = h
        lval = 0.5 * (y - pred) ** 2
        last = y - pred
    total = lval.sum(-1).mean()
    # backward: loss -> (softmax) -> bias L-1 -> synapses L-1 -> act L-2 -> bias L-2 -> ...
    c["loss"], m, _ = _learn(params[loss], jnp.stack([lval, pred, y, last], -1), c["loss"], k)
    if loss == "cross_entropy":
        d = h - mx
        f = jnp.concatenate([m, jnp.stack([h, d, jnp.exp(d), jnp.broadcast_to(jnp.exp(lse - mx), h.shape)], -1)], -1)
        c["softmax"], m, _ = _learn(params["softmax"], f, c["softmax"], k)
    newW, newb = list(Ws), list(bs)
    for l in reversed(range(L)):
        B, J = zs[l].shape
        I = Ws[l].shape[0]
        pb = params[f"bias:{l}"]
        f = jnp.concatenate([m, jnp.broadcast_to(bs[l], (B, J))[..., None], zs[l][..., None]], -1)
        c[f"b{l}"], mb, ub = _learn(pb, f, c[f"b{l}"], k)
        newb[l] = bs[l] + ((ub - pb["out_mean"]) * pb["out_scale"]).mean(0)
        pw = params[f"synapse:{l}"]
        f = jnp.concatenate([
            jnp.broadcast_to(mb[:, None, :, :], (B, I, J, k)),
            jnp.broadcast_to(Ws[l][None, :, :, None], (B, I, J, 1)),
            jnp.broadcast_to(ins[l][:, :, None, None], (B, I, J, 1)),
        ], -1)
        c[f"w{l}"], mw, uw = _learn(pw, f, c[f"w{l}"], k)
        newW[l] = Ws[l] + ((uw - pw["out_mean"]) * pw["out_scale"]).mean(0)
        if l > 0:
            ma = mw.mean(2)  # mean over the J synapses each unit feeds (eq. 5)
            f = jnp.concatenate([ma, pres[l - 1][..., None]], -1)
            c[f"a{l - 1}"], m, _ = _learn(params[f"{act_group}:{l - 1}"], f, c[f"a{l - 1}"], k)
    return {"W": newW, "b": newb, "c": c}, total


def unroll(params, state, batches, **kw):
    """``T`` steps as a ``lax.scan`` with ``jax.checkpoint`` on the body; ``(state, losses [T])``."""
    body = jax.checkpoint(lambda s, b: step(params, s, b, **kw))
    return jax.lax.scan(body, state, batches)
