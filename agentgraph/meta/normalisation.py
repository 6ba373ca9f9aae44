"""Learner-input normalisation, measured before meta-training and then frozen (MPLP §3).

Each learner input *tensor* (the ``k``-channel message, the weight, the stored input, ...) gets
one scalar mean and one scalar ``1/std`` (1 where ``std < 1e-5``), measured over simulated inner
loops with the current (initially untrained) protocol, and the weight update's mean is measured
so it can be subtracted. Each round runs one inner loop with the normalisation measured so far;
rounds are blended ``new = blend * old + (1 - blend) * measured``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.compiler import compile
from agentgraph.meta.config import TrainConfig
from agentgraph.meta.gradient_input import with_gradient
from agentgraph.meta.setup import Setup, group_rows, with_params
from agentgraph.protocols import mplp

__all__ = ["calibrate", "initial_norm", "remeasure_inputs", "tensor_ids"]


def tensor_ids(kind: str, k: int, grad_input: bool = False) -> np.ndarray:
    """Which input tensor each learner input channel belongs to (the message's ``k`` channels
    are one tensor).

    Example:
        >>> tensor_ids("synapse", 3).tolist()
        [0, 0, 0, 1, 2]
    """
    F = mplp.n_features(kind, k, grad_input)
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


def calibrate(setup: Setup, meta: dict, norm: dict, sample, key: jax.Array, pool: dict,
              rounds: int, blend: float = 0.5) -> dict:
    """Measure the normalisation over ``rounds`` simulated inner loops; returns the new ``norm``.

    Args:
        setup: the meta-training setup.
        meta: the (untrained) protocol.
        norm: the starting normalisation (identity from :func:`~agentgraph.protocols.mplp.init_norm`).
        sample: ``key -> task`` sampler.
        key: PRNG key.
        pool: prior pool (``{"w": [P, n], "b": [P, m]}``); round ``r`` uses network ``r % P``.
        rounds, blend: as in the module docstring.
    """
    if rounds == 0:
        return norm
    sharing = setup.cfg.protocol.sharing
    rec_cfg = dataclasses.replace(setup.config, record=True)
    g = setup.graph.with_kinds(mplp.kinds(rec_cfg, sharing))
    prog = compile(g)
    rows_of = group_rows(g, prog, setup.keys)

    @jax.jit
    def simulate(params, task, w0, b0):
        B = task["train"]["x"].shape[1]
        state = with_params(prog.init(B), w0, b0)

        def body(s, batch):  # a gradient input is measured at full scale
            s, _ = prog.step(params, with_gradient(setup, s, batch, 1.0), batch)
            return s, {k: (s[k]["feat"], s[k]["raw"]) for k in s if "feat" in s[k]}

        _, rec = jax.lax.scan(body, state, task["train"])
        return rec

    norm = jax.tree.map(np.asarray, norm)
    P = pool["w"].shape[0]
    for r in range(rounds):
        params = mplp.assemble(meta, jax.tree.map(jnp.asarray, norm), setup.keys)
        task = sample(jax.random.fold_in(key, r))
        rec = jax.device_get(simulate(params, task, pool["w"][r % P], pool["b"][r % P]))
        measured: dict[str, dict[str, Any]] = {}
        collected: dict[str, list] = {}
        for group, (kname, rws) in rows_of.items():
            feat, raw = rec[kname]
            nkey = setup.keys[group][1]
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
                                   tensor_ids(kname, setup.config.k, setup.config.grad_input))
            raws = [rw for kn, _, rw in parts if kn in ("synapse", "bias")]
            out_mean = float(np.concatenate([x.reshape(-1) for x in raws]).mean()) if raws else 0.0
            measured[nkey] = {"in_mean": mean, "in_inv_std": inv, "out_mean": np.asarray(out_mean)}
        for nkey, m in measured.items():
            if r == 0:
                norm[nkey] = {k: np.asarray(v, np.float32) for k, v in m.items()}
            else:
                norm[nkey] = {k: np.asarray(blend * norm[nkey][k] + (1 - blend) * m[k], np.float32) for k in m}
    return jax.tree.map(jnp.asarray, norm)


def initial_norm(cfg: TrainConfig, setup: Setup, sample: Callable[[jax.Array], dict]) -> tuple[dict, dict, dict]:
    """The normalisation meta-training measures at its start for ``cfg`` on ``setup``'s network:
    the untrained protocol of ``run.seed`` run over ``meta.calibration_rounds`` inner loops on the
    seed's prior pool. Returns ``(meta, norm, pool)``: that untrained protocol, the measured
    normalisation and the pool (``{"w": [P, n], "b": [P, m]}``).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.setup import make_setup
        >>> from agentgraph.meta.tasks import task_family
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...                     "meta": {"inner_steps": 2, "calibration_rounds": 1}})
        >>> meta, norm, pool = initial_norm(cfg, make_setup(cfg), task_family(cfg).sample)
        >>> sorted(norm["synapse:0"])
        ['in_inv_std', 'in_mean', 'out_mean']
    """
    from agentgraph.meta.setup import prior_pool

    k_meta, k_pool, k_cal, _ = jax.random.split(jax.random.PRNGKey(cfg.run.seed), 4)
    sharing = cfg.protocol.sharing
    meta = mplp.init_meta(setup.graph, k_meta, setup.config, sharing, weight_std=cfg.net.init_std)
    norm = mplp.init_norm(setup.graph, setup.config, sharing)
    pool = prior_pool(setup, k_pool, cfg.meta.prior_pool)
    if cfg.protocol.rule == "mplp":
        norm = calibrate(setup, meta, norm, sample, k_cal, pool, cfg.meta.calibration_rounds,
                         cfg.meta.calibration_blend)
    return meta, norm, pool


def remeasure_inputs(cfg: TrainConfig, setup: Setup, norm: dict, sample: Callable[[jax.Array], dict]) -> dict:
    """A trained protocol's normalisation with the *input* statistics measured again on
    ``setup``'s network (``agentgraph eval --remeasure``), for moving a protocol to a network
    whose learner inputs are distributed differently (a wider layer sums more inputs).

    The statistics are measured exactly as meta-training measured them at its start
    (:func:`initial_norm`: the *untrained* protocol of ``run.seed``, ``meta.calibration_rounds``
    inner loops), only on the new network, so the trained learners see inputs scaled as in
    training; measuring with the trained protocol instead would change the statistics the
    learners were trained under. Nothing is learned; the learned update offset ``out_mean`` is
    kept. On the training network it gives back the checkpoint's statistics.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.setup import make_setup
        >>> from agentgraph.meta.tasks import task_family
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
        ...                     "meta": {"inner_steps": 2, "calibration_rounds": 1}})
        >>> s = make_setup(cfg)
        >>> _, norm, _ = initial_norm(cfg, s, task_family(cfg).sample)
        >>> new = remeasure_inputs(cfg, s, norm, task_family(cfg).sample)
        >>> bool((new["synapse:0"]["in_mean"] == norm["synapse:0"]["in_mean"]).all())
        True
    """
    _, new, _ = initial_norm(cfg, setup, sample)
    return {k: {**new[k], "out_mean": norm[k]["out_mean"]} for k in new}
