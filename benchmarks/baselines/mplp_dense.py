"""A hand-written dense implementation of MPLP on layered networks — the speed baseline.

The same maths as the compiled MPLP kinds on an :func:`~agentgraph.mlp` graph, written the way an
expert would by hand: weights as matrices ``W_l [I, J]``, every agent's learner run as one
batched call per layer over ``[B, I, J, features]`` tensors. Benchmarks compare the compiled
program against it, and a test checks both give the same numbers.

Stateful (GRU) and stateless (``f``/``g`` MLP) learners on ``mlp(sizes, activation,
"cross_entropy" | "l2")`` graphs with ``output_activation=None`` are covered (the learner's kind is
read from its parameters). :mod:`maml_mplp_dense` builds the MAML + MPLP meta-step on these pieces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from agentgraph.learners.gru import gru_step
from agentgraph.learners.mlp import apply_mlp
from agentgraph.nodes.activations import ACTIVATIONS

__all__ = ["forward", "init_state", "step", "unroll"]


def init_state(weights: Sequence[tuple[jax.Array, jax.Array]], batch_size: int, carry: Mapping[str, int] | None,
               n_out: int) -> dict:
    """Dense state: ``{"W": [...], "b": [...], "c": {carries}}`` with zero carries.

    ``carry`` gives each learner's carry size: ``{"synapse", "bias", "act", "softmax", "loss"}``;
    ``None`` for stateless learners (no carries).
    """
    B = batch_size
    if carry is None:
        return {"W": [w for w, _ in weights], "b": [b for _, b in weights], "c": {}}
    c = {"loss": jnp.zeros((B, n_out, carry["loss"])), "softmax": jnp.zeros((B, n_out, carry["softmax"]))}
    for l, (W, b) in enumerate(weights):
        I, J = W.shape
        c[f"w{l}"] = jnp.zeros((B, I, J, carry["synapse"]))
        c[f"b{l}"] = jnp.zeros((B, J, carry["bias"]))
        if l < len(weights) - 1:
            c[f"a{l}"] = jnp.zeros((B, J, carry["act"]))
    return {"W": [w for w, _ in weights], "b": [b for _, b in weights], "c": c}


def _learn(p: Mapping[str, Any], feats: jax.Array, c: dict, key: str, k: int):
    """Run one learner on ``feats [..., F]``; its new carry goes to ``c[key]`` (stateful only).
    Returns ``(message [..., k], raw update [...])``."""
    x = (feats - p["in_mean"]) * p["in_inv_std"]
    if "f" in p["learner"]:  # stateless: update MLP f, message MLP g, tanh outputs
        return apply_mlp(p["learner"]["g"], x, "relu", "tanh"), apply_mlp(p["learner"]["f"], x, "relu", "tanh")[..., 0]
    c[key] = gru_step(p["learner"], x, c[key])
    return c[key][..., -k:], c[key][..., 0]


def forward(Ws: Sequence[jax.Array], bs: Sequence[jax.Array], x: jax.Array, y: jax.Array, *, activation: str,
            loss: str) -> dict:
    """The network's forward sweep and loss on a batch, densely.

    Args:
        Ws, bs: ``W_l [I, J]``, ``b_l [J]``.
        x, y: ``[B, n_in]``, ``[B, n_out]`` (one-hot for ``cross_entropy``).

    Returns:
        ``{"total": () mean over the batch of the summed loss, "h": [B, n_out] logits / outputs,
        "zs": [B, J] per layer (before bias), "pres": hidden pre-activations, "ins": each layer's
        input, "lval", "pred", "last": [B, n_out] (the loss learner's own inputs)}``.

    Example:
        >>> import jax.numpy as jnp
        >>> f = forward([jnp.ones((2, 3)), jnp.ones((3, 1))], [jnp.zeros(3), jnp.zeros(1)], jnp.ones((4, 2)),
        ...             jnp.zeros((4, 1)), activation="relu", loss="l2")
        >>> float(f["total"]), f["h"].shape
        (18.0, (4, 1))
    """
    act = ACTIVATIONS[activation][0]
    L = len(Ws)
    h, zs, pres, ins = x, [], [], [x]
    for l in range(L):
        z = h @ Ws[l]
        zs.append(z)
        h = z + bs[l]
        if l < L - 1:
            pres.append(h)
            h = act(h)
            ins.append(h)
    if loss == "cross_entropy":
        lse = jax.nn.logsumexp(h, -1, keepdims=True)
        pred = jnp.exp(h - lse)
        lval = -y * jnp.log(pred)
        last = jnp.log(jnp.clip(pred, 1e-7, 1 - 1e-7))
    else:
        lse = None
        pred = h
        lval = 0.5 * (y - pred) ** 2
        last = y - pred
    return {"total": lval.sum(-1).mean(), "h": h, "lse": lse, "zs": zs, "pres": pres, "ins": ins, "lval": lval,
            "pred": pred, "last": last}


def step(params: Mapping[str, Any], state: dict, batch: Mapping[str, jax.Array], *, activation: str,
         loss: str, k: int, act_group: str) -> tuple[dict, jax.Array]:
    """One MPLP inner step on dense tensors; returns ``(state, loss)`` like ``Program.step``."""
    x, y = batch["x"], batch["y"]
    Ws, bs, c = state["W"], state["b"], dict(state["c"])
    L = len(Ws)
    fw = forward(Ws, bs, x, y, activation=activation, loss=loss)
    h, zs, pres, ins, total = fw["h"], fw["zs"], fw["pres"], fw["ins"], fw["total"]
    # backward: loss -> (softmax) -> bias L-1 -> synapses L-1 -> act L-2 -> bias L-2 -> ...
    m, _ = _learn(params[loss], jnp.stack([fw["lval"], fw["pred"], y, fw["last"]], -1), c, "loss", k)
    if loss == "cross_entropy":
        mx, lse = h.max(-1, keepdims=True), fw["lse"]
        d = h - mx
        f = jnp.concatenate([m, jnp.stack([h, d, jnp.exp(d), jnp.broadcast_to(jnp.exp(lse - mx), h.shape)], -1)], -1)
        m, _ = _learn(params["softmax"], f, c, "softmax", k)
    newW, newb = list(Ws), list(bs)
    for l in reversed(range(L)):
        B, J = zs[l].shape
        I = Ws[l].shape[0]
        pb = params[f"bias:{l}"]
        f = jnp.concatenate([m, jnp.broadcast_to(bs[l], (B, J))[..., None], zs[l][..., None]], -1)
        mb, ub = _learn(pb, f, c, f"b{l}", k)
        newb[l] = bs[l] + ((ub - pb["out_mean"]) * pb["out_scale"]).mean(0)
        pw = params[f"synapse:{l}"]
        f = jnp.concatenate([
            jnp.broadcast_to(mb[:, None, :, :], (B, I, J, k)),
            jnp.broadcast_to(Ws[l][None, :, :, None], (B, I, J, 1)),
            jnp.broadcast_to(ins[l][:, :, None, None], (B, I, J, 1)),
        ], -1)
        mw, uw = _learn(pw, f, c, f"w{l}", k)
        newW[l] = Ws[l] + ((uw - pw["out_mean"]) * pw["out_scale"]).mean(0)
        if l > 0:
            ma = mw.mean(2)  # mean over the J synapses each unit feeds (eq. 5)
            f = jnp.concatenate([ma, pres[l - 1][..., None]], -1)
            m, _ = _learn(params[f"{act_group}:{l - 1}"], f, c, f"a{l - 1}", k)
    return {"W": newW, "b": newb, "c": c}, total


def unroll(params, state, batches, **kw):
    """``T`` steps as a ``lax.scan`` with ``jax.checkpoint`` on the body; ``(state, losses [T])``."""
    body = jax.checkpoint(lambda s, b: step(params, s, b, **kw))
    return jax.lax.scan(body, state, batches)
