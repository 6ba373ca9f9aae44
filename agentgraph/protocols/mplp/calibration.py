"""Learner-input normalisation, measured before meta-training and then frozen (MPLP §3).

Each learner input *tensor* (the ``k``-channel message, the weight, the stored input, ...) gets
one scalar mean and one scalar ``1/std`` (1 where ``std < 1e-5``), measured over simulated inner
loops with the current (initially untrained) protocol, and the weight update's mean is measured
so it can be subtracted. Each round runs one inner loop with the normalisation measured so far;
rounds are blended ``new = blend * old + (1 - blend) * measured``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.compiler import Program, compile
from agentgraph.inner import Inner
from agentgraph.protocols.mplp import agents as mk
from agentgraph.protocols.mplp import sharing as sh
from agentgraph.protocols.mplp.gradient_input import with_gradient

__all__ = ["calibrate", "group_rows", "recording_program", "tensor_ids"]


def group_rows(graph: Any, prog: Program, keys: dict) -> dict[str, tuple[str, np.ndarray]]:
    """``{group: (kind, rows)}``: where each learning group's agents live in ``prog``'s state
    (``state[kind][field][rows]``), for the groups of ``keys`` (:func:`~agentgraph.protocols.mplp.share_keys`).

    Example:
        >>> from agentgraph import compile, mlp
        >>> g = mlp([1, 4, 1], loss="l2")
        >>> kind, rows = group_rows(g, compile(g), sh.share_keys(g))["synapse:0"]
        >>> kind, len(rows)
        ('synapse', 4)
    """
    A = graph.arrays()
    out = {}
    for group, (_, _, kname) in keys.items():
        agents = np.flatnonzero((A.group == A.group_names.index(group)) & (A.kind == A.kind_names.index(kname)))
        out[group] = (kname, prog.rows.row[agents])
    return out


def recording_program(inner: Inner, config: mk.MPLPConfig, sharing: str) -> tuple[Any, Program]:
    """``(graph, program)``: ``inner``'s library network with MPLP kinds that record their raw
    learner inputs ``feat`` and raw updates ``raw`` (compiled once per context)."""
    g = inner.base.graph.with_kinds(mk.kinds(dataclasses.replace(config, record=True), sharing))
    return g, inner.memo(("mplp.record", config, sharing), lambda: compile(g))


def tensor_ids(kind: str, k: int, grad_input: bool = False) -> np.ndarray:
    """Which input tensor each learner input channel belongs to (the message's ``k`` channels
    are one tensor).

    Example:
        >>> tensor_ids("synapse", 3).tolist()
        [0, 0, 0, 1, 2]
    """
    F = mk.n_features(kind, k, grad_input)
    if kind in ("l2", "cross_entropy"):
        return np.arange(F)
    return np.r_[np.zeros(k, int), 1 + np.arange(F - k)]


def _stats(x: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-tensor mean and 1/std of ``x [..., F]``, broadcast back to channels."""
    x = x.reshape(-1, x.shape[-1])
    mean = np.zeros(x.shape[1])
    inv = np.ones(x.shape[1])
    for t in np.unique(ids):
        ch = ids == t
        v = x[:, ch]
        mu, sd = float(v.mean()), float(v.std())
        mean[ch] = mu
        inv[ch] = 1.0 / sd if sd >= 1e-5 else 1.0
    return mean, inv


def calibrate(inner: Inner, config: mk.MPLPConfig, sharing: str, meta: dict, norm: dict,
              sample: Callable[[jax.Array], dict], key: jax.Array, pool: dict, rounds: int,
              blend: float = 0.5) -> dict:
    """Measure the normalisation over ``rounds`` simulated inner loops; returns the new ``norm``.

    Args:
        inner: the compiled networks (:class:`~agentgraph.inner.Inner`).
        config, sharing: the learners' shape and sharing.
        meta: the (untrained) protocol.
        norm: the starting normalisation (identity from :func:`~agentgraph.protocols.mplp.init_norm`).
        sample: ``key -> task`` sampler.
        key: PRNG key.
        pool: prior pool (weights with a leading ``[P]`` axis); round ``r`` uses network ``r % P``.
        rounds, blend: as in the module docstring.
    """
    if rounds == 0:
        return norm
    g, prog = recording_program(inner, config, sharing)
    keys = sh.share_keys(g, sharing)
    rows_of = group_rows(g, prog, keys)

    @jax.jit
    def simulate(params, task, w0):
        state = inner.start(w0, task["train"]["x"].shape[1], prog)

        def body(s, batch):  # a gradient input is measured at full scale
            s, _ = prog.step(params, with_gradient(inner, s, batch, 1.0), batch)
            return s, {k: (s[k]["feat"], s[k]["raw"]) for k in s if "feat" in s[k]}

        _, rec = jax.lax.scan(body, state, task["train"])
        return rec

    norm = jax.tree.map(np.asarray, norm)
    P = jax.tree.leaves(pool)[0].shape[0]
    for r in range(rounds):
        params = sh.assemble(meta, jax.tree.map(jnp.asarray, norm), keys)
        task = sample(jax.random.fold_in(key, r))
        rec = jax.device_get(simulate(params, task, jax.tree.map(lambda v: v[r % P], pool)))
        measured: dict[str, dict[str, Any]] = {}
        collected: dict[str, list] = {}
        for group, (kname, rws) in rows_of.items():
            feat, raw = rec[kname]
            nkey = keys[group][1]
            collected.setdefault(nkey, []).append((kname, feat[:, rws], raw[:, rws]))
        for nkey, parts in collected.items():
            kname = parts[0][0]
            F = norm[nkey]["in_mean"].shape[0]
            if sharing == "all":  # one normalisation for all kinds: pool channel-wise over kinds
                mean, inv = np.zeros(F), np.ones(F)
                feats = [np.pad(f.reshape(-1, f.shape[-1]), ((0, 0), (0, F - f.shape[-1]))) for _, f, _ in parts]
                allf = np.concatenate(feats)
                for c in range(F):
                    mu, sd = allf[:, c].mean(), allf[:, c].std()
                    mean[c], inv[c] = mu, (1.0 / sd if sd >= 1e-5 else 1.0)
            else:
                mean, inv = _stats(np.concatenate([f.reshape(-1, f.shape[-1]) for _, f, _ in parts]),
                                   tensor_ids(kname, config.k, config.grad_input))
            raws = [rw for kn, _, rw in parts if kn in mk.PARAM_FIELDS]
            out_mean = float(np.concatenate([x.reshape(-1) for x in raws]).mean()) if raws else 0.0
            measured[nkey] = {"in_mean": mean, "in_inv_std": inv, "out_mean": np.asarray(out_mean)}
        for nkey, m in measured.items():
            if r == 0:
                norm[nkey] = {k: np.asarray(v, np.float32) for k, v in m.items()}
            else:
                norm[nkey] = {k: np.asarray(blend * norm[nkey][k] + (1 - blend) * m[k], np.float32) for k in m}
    return jax.tree.map(jnp.asarray, norm)
