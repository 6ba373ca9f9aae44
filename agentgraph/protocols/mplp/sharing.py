"""How MPLP's learners are shared and initialised: which agents share a learner and a
normalisation (per group, per role, or one for everything), the meta-parameters and the measured
normalisation of a graph, and what every group receives at each inner step (:func:`assemble`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from agentgraph.errors import AgentGraphError
from agentgraph.learners.gru import init_gru
from agentgraph.learners.mlp import init_mlp
from agentgraph.nodes.activations import ACTIVATIONS
from agentgraph.nodes.registry import default_kinds
from agentgraph.protocols.mplp.agents import PARAM_FIELDS, MPLPConfig, n_features

__all__ = ["SHARING", "assemble", "init_meta", "init_norm", "init_params", "role", "share_keys"]


#: How learners are shared: one per group (e.g. per layer), one per role across the graph, or one
#: for everything (inputs and carries padded, normalisation shared too).
SHARING = ("group", "kind", "all")


def role(kind: str) -> str:
    """The MPLP role of a library kind: ``synapse``, ``bias``, ``softmax``, ``loss`` or
    ``activation`` — what learners are shared by, so a protocol moves between activations.

    Example:
        >>> role("sigmoid"), role("cross_entropy"), role("synapse")
        ('activation', 'loss', 'synapse')
    """
    if kind in ("l2", "cross_entropy"):
        return "loss"
    if kind in ACTIVATIONS:
        return "activation"
    return kind


def _renamed(group: str, kind: str) -> str:
    if group == kind:
        return role(kind)
    if group.startswith(kind + ":"):
        return role(kind) + group[len(kind):]
    return group


def share_keys(graph, sharing: str = "group") -> dict[str, tuple[str, str, str]]:
    """``{group: (learner key, normalisation key, kind)}`` for every learning group of ``graph``.

    Learner keys: ``group`` mode — the group with its kind replaced by its :func:`role`
    (``"sigmoid:0"`` → ``"activation:0"``); ``kind`` mode — the role; ``all`` — ``"all"``.
    Normalisation is per group except in ``all`` mode.

    Example:
        >>> from agentgraph import mlp
        >>> share_keys(mlp([2, 3, 2]), "kind")["sigmoid:0"]
        ('activation', 'activation:0', 'sigmoid')
    """
    if sharing not in SHARING:
        raise AgentGraphError(f"Unknown sharing {sharing!r}; choose one of {SHARING} (config field 'sharing').")
    A = graph.arrays()
    out: dict[str, tuple[str, str, str]] = {}
    for g, kd in sorted(set(zip(A.group.tolist(), A.kind.tolist()))):
        gname, kname = A.group_names[g], A.kind_names[kd]
        base = default_kinds().get(kname)
        if base is None or not base.runs("backward") or kname == "softmax_norm":
            continue
        if gname in out:
            raise AgentGraphError(
                f"Group {gname!r} mixes kinds {out[gname][2]!r} and {kname!r}; MPLP learners are per kind, "
                "so give agents of different kinds different groups."
            )
        renamed = _renamed(gname, kname)
        learner = {"group": renamed, "kind": role(kname), "all": "all"}[sharing]
        out[gname] = (learner, "all" if sharing == "all" else renamed, kname)
    return out


def init_meta(graph, key: jax.Array, config: MPLPConfig = MPLPConfig(), sharing: str = "group",
              weight_std: float = 0.05) -> dict[str, Any]:
    """Trainable MPLP parameters: ``{learner key: {"learner": ..., "out_scale": ()}}`` with
    ``out_scale = 0.2 * weight_std``.

    Example:
        >>> import jax
        >>> from agentgraph import mlp
        >>> sorted(init_meta(mlp([2, 3, 2]), jax.random.PRNGKey(0), sharing="kind"))
        ['activation', 'bias', 'loss', 'softmax', 'synapse']
    """
    keys = share_keys(graph, sharing)
    if sharing == "all":
        config = config.padded()
    wanted: dict[str, str] = {}
    for lkey, _, kname in keys.values():
        wanted.setdefault(lkey, kname)
    out = {}
    for (lkey, kname), gk in zip(sorted(wanted.items()), jax.random.split(key, max(1, len(wanted)))):
        F = config.in_size or n_features(kname, config.k, config.grad_input)
        carry = config.carry_size or (1 if kname in PARAM_FIELDS else 0) + config.hidden + config.k
        if config.stateful:
            learner = init_gru(gk, F, carry, config.mlp)
        else:
            kf, kg = jax.random.split(gk)
            learner = {"f": init_mlp(kf, [F, *config.mlp, 1]), "g": init_mlp(kg, [F, *config.mlp, config.k])}
        out[lkey] = {"learner": learner, "out_scale": jnp.asarray(0.2 * weight_std, jnp.float32)}
    return out


def init_norm(graph, config: MPLPConfig = MPLPConfig(), sharing: str = "group") -> dict[str, Any]:
    """Identity normalisation ``{norm key: {"in_mean": [F], "in_inv_std": [F], "out_mean": ()}}``
    (replaced by measured values before meta-training, see :mod:`agentgraph.protocols.mplp.calibration`).

    Example:
        >>> from agentgraph import mlp
        >>> init_norm(mlp([2, 3, 2]))["synapse:0"]["in_mean"].shape
        (6,)
    """
    out = {}
    for _, nkey, kname in share_keys(graph, sharing).values():
        # in "all" mode one normalisation serves every kind: as wide as the widest inputs
        F = config.k + 4 if sharing == "all" else n_features(kname, config.k, config.grad_input)
        out[nkey] = {"in_mean": jnp.zeros((F,)), "in_inv_std": jnp.ones((F,)), "out_mean": jnp.zeros(())}
    return out


def assemble(meta: dict, norm: dict, keys: dict[str, tuple[str, str, str]]) -> dict[str, Any]:
    """The per-group params a compiled MPLP program takes, from shared pieces.

    Example:
        >>> import jax
        >>> from agentgraph import mlp
        >>> g = mlp([2, 3, 2]); keys = share_keys(g, "kind")
        >>> p = assemble(init_meta(g, jax.random.PRNGKey(0), sharing="kind"), init_norm(g, sharing="kind"), keys)
        >>> p["synapse:0"]["learner"] is p["synapse:1"]["learner"]
        True
    """
    out = {}
    for group, (lkey, nkey, kname) in keys.items():
        if lkey not in meta:
            raise AgentGraphError(f"The protocol has no learner {lkey!r} for group {group!r} (kind {kname!r}).")
        if nkey not in norm:
            raise AgentGraphError(f"The protocol has no normalisation {nkey!r} for group {group!r}.")
        out[group] = {**meta[lkey], **norm[nkey]}
    return out


def init_params(graph, key: jax.Array, config: MPLPConfig = MPLPConfig(), weight_std: float = 0.05,
                sharing: str = "group") -> dict[str, Any]:
    """Fresh per-group MPLP parameters (identity normalisation) — ``assemble(init_meta, init_norm)``.

    Example:
        >>> import jax
        >>> from agentgraph import mlp
        >>> p = init_params(mlp([2, 3, 2]), jax.random.PRNGKey(0))
        >>> sorted(p)[:3], p["synapse:0"]["in_mean"].shape
        (['bias:0', 'bias:1', 'cross_entropy'], (6,))
    """
    return assemble(init_meta(graph, key, config, sharing, weight_std), init_norm(graph, config, sharing),
                    share_keys(graph, sharing))
