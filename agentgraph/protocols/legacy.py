"""Checkpoints of the first training format (``agentgraph-train-1``, MPLP and the SGD/MAML
baseline only), read by today's code: their configs and array keys mapped onto the current
layout. The shipped protocols of ``agentgraph/pretrained`` are of that format.

Example:
    >>> cfg = upgrade_config({"protocol": {"rule": "sgd", "sgd_lr": 0.1, "k": 4},
    ...                       "meta": {"maml": True, "imitation_steps": 0}})
    >>> cfg["protocol"], "imitation_steps" in cfg["meta"]
    ({'rule': 'sgd', 'lr': 0.1}, False)
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["LEGACY_FORMAT", "is_legacy", "upgrade_arrays", "upgrade_config"]

LEGACY_FORMAT = "agentgraph-train-1"

_MPLP_FIELDS = ("k", "hidden", "stateful", "mlp", "sharing", "premap", "grad_input")
_MOVED = ("imitation_steps", "imitation_lr", "imitation_unroll", "imitation_meta_lr", "calibration_rounds",
          "calibration_blend", "grad_input_anneal")
#: The weights of the first format's networks: ``pool``/``prior`` leaf -> (kind, field).
_WEIGHTS = {"w": ("synapse", "w"), "b": ("bias", "b")}


def is_legacy(metadata: dict) -> bool:
    """Whether a checkpoint's metadata says it was written in the first training format.

    Example:
        >>> is_legacy({"format": "agentgraph-train-1"}), is_legacy({"format": "agentgraph-train-2"})
        (True, False)
    """
    return metadata.get("format") == LEGACY_FORMAT


def upgrade_config(data: dict[str, Any]) -> dict[str, Any]:
    """A first-format config dict in today's schema: the protocol section keeps only its rule's
    settings (``sgd_lr`` becomes the SGD rule's ``lr``), MPLP's meta-training options move from
    ``meta`` into it. See the module example."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    proto = dict(data.get("protocol", {}))
    meta = dict(data.get("meta", {}))
    rule = proto.get("rule", "mplp")
    moved = {k: meta.pop(k) for k in _MOVED if k in meta}
    if rule == "sgd":
        new = {"rule": "sgd", "lr": proto.get("sgd_lr", 0.05)}
    else:
        new = {"rule": "mplp", **{k: proto[k] for k in _MPLP_FIELDS if k in proto}, **moved}
    data["protocol"], data["meta"] = new, meta
    return data


def upgrade_arrays(flat: dict[str, Any]) -> dict[str, Any]:
    """First-format array keys (``['trainable'][...]``, ``['norm'][...]``, ``['pool']['w']``) as
    today's :class:`~agentgraph.meta.train.TrainState` keys (``.trainable[...]``,
    ``.stats[...]``, ``.pool['synapse']['w']``).

    Example:
        >>> sorted(upgrade_arrays({"['norm']['x']": 1, "['trainable']['prior']['w']": 2}))
        [".stats['x']", ".trainable['prior']['synapse']['w']"]
    """
    out = {}
    for key, v in flat.items():
        m = re.match(r"^\['(trainable|norm|opt_state|pool|pool_extra)'\](.*)$", key)
        if m is None:
            out[key] = v
            continue
        top, rest = m.groups()
        if top == "pool_extra":
            continue  # per-graph pools of a graph pool: today one pool serves every graph
        if top in ("pool",) or (top == "trainable" and rest.startswith("['prior']")):
            head = "['prior']" if top == "trainable" else ""
            leaf = rest[len(head):]
            w = re.match(r"^\['(w|b)'\]$", leaf)
            if w:
                kind, field = _WEIGHTS[w.group(1)]
                rest = f"{head}['{kind}']['{field}']"
        out[f".{'stats' if top == 'norm' else top}{rest}"] = v
    return out
