"""Configs of the earlier layouts: where each moved option lives now.

Options that belong to one component moved into that component's section (issue 31): the
``hint_cv`` objective's weights into ``meta.objective``, the random DAG's settings into
``net: {kind: random_dag}``, the plateau studies' schedules into ``schedules:``, continual
learning's sequence length into ``data.continual``; MPLP's meta-training options into
``protocol:`` before that. Two uses:

* a config a user writes in the old layout is refused, every moved option named with its new
  place (:func:`moved_messages`, called by :class:`~agentgraph.meta.config.TrainConfig`);
* a config stored in a checkpoint or an exported protocol is rewritten into today's layout
  (:func:`upgrade_config`, called wherever a stored config is read back), so it loads and
  computes as before.

Example:
    >>> upgrade_config({"meta": {"hint_weight": 0.5, "cv_weight": 0.5, "curriculum": [[0, 2]]}, "data": {"sequence": 1}})
    {'meta': {'objective': {'hint_weight': 0.5, 'cv_weight': 0.5}}, 'data': {'continual': {'tasks': 1}}, 'schedules': {'unroll': [[0, 2]]}}
"""

from __future__ import annotations

import copy
from typing import Any

from agentgraph.meta.net_config import net_model
from agentgraph.meta.objectives import DEFAULT_OBJECTIVE

__all__ = ["MOVED", "MOVED_TO_PROTOCOL", "moved_messages", "upgrade_config"]

#: Options of the layout before the sections by component, and their places now (dotted paths).
MOVED: dict[str, str] = {
    "meta.hint_weight": "meta.objective.hint_weight",
    "meta.cv_weight": "meta.objective.cv_weight",
    "meta.graph_pool": "net.pool",
    "meta.curriculum": "schedules.unroll",
    "meta.truncation": "schedules.truncation",
    "meta.meta_lr_schedule": "schedules.meta_lr",
    "data.sequence": "data.continual.tasks",
}
_NOTES = {
    "meta.hint_weight": " (a setting of the hint_cv objective: meta.objective: {kind: hint_cv, hint_weight: ...})",
    "meta.cv_weight": " (a setting of the hint_cv objective: meta.objective: {kind: hint_cv, cv_weight: ...})",
    "meta.graph_pool": " (with net.kind random_dag or your seeded builder)",
}

#: Options that moved from ``meta`` into the MPLP protocol's own section, and their new names.
MOVED_TO_PROTOCOL = {"imitation_steps": "imitation_steps", "imitation_lr": "imitation_lr",
                     "imitation_unroll": "imitation_unroll", "imitation_meta_lr": "imitation_meta_lr",
                     "calibration_rounds": "calibration_rounds", "calibration_blend": "calibration_blend",
                     "grad_input_anneal": "grad_input_anneal"}

#: The fields of the earlier single ``net:`` model, which held every builder's settings.
_OLD_NET = ("sizes", "activation", "loss", "init_std", "n_hidden", "edge_prob", "parallel_prob", "args")


def _has(data: dict, dotted: str) -> bool:
    section, key = dotted.split(".")
    return isinstance(data.get(section), dict) and key in data[section]


def moved_messages(data: Any) -> list[str]:
    """One message per option of ``data`` (a config mapping) that moved, naming its new place.

    Example:
        >>> moved_messages({"meta": {"hint_weight": 0.5}})
        ['meta.hint_weight moved: write it as meta.objective.hint_weight (a setting of the hint_cv objective: meta.objective: {kind: hint_cv, hint_weight: ...})']
    """
    if not isinstance(data, dict):
        return []
    out = [f"{old} moved: write it as {new}{_NOTES.get(old, '')}" for old, new in MOVED.items() if _has(data, old)]
    out += [f"meta.{k} is an MPLP option now: write it as protocol.{new}" for k, new in MOVED_TO_PROTOCOL.items()
            if _has(data, f"meta.{k}")]
    return out


def _objective_kind(meta: dict) -> str:
    obj = meta.get("objective", DEFAULT_OBJECTIVE)
    return obj if isinstance(obj, str) else obj.get("kind", DEFAULT_OBJECTIVE)


def _set(data: dict, dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    node = data
    for part in head:
        child = node.get(part)
        if isinstance(child, str):  # a shorthand section: objective: hint_cv
            child = {"kind": child}
        elif child is None:
            child = {}
        node[part] = child
        node = child
    node[last] = value


def upgrade_config(data: dict[str, Any]) -> dict[str, Any]:
    """A stored config (a checkpoint's, an exported protocol's) in today's layout: every option
    of :data:`MOVED` at its new place, and the settings the earlier layout stored for components
    that did not read them dropped (the hint weights of other objectives, a random DAG's settings
    in an ``mlp``'s section, an ``mlp``'s graph pool of 1). The same run computes the same numbers
    from it. A config already in today's layout comes back unchanged.

    Example:
        >>> old = {"net": {"kind": "mlp", "sizes": [4, 2], "n_hidden": 20, "edge_prob": 0.3, "args": {}},
        ...        "meta": {"objective": "heldout", "hint_weight": 0.7, "cv_weight": 0.3, "graph_pool": 1}}
        >>> upgrade_config(old)
        {'net': {'kind': 'mlp', 'sizes': [4, 2]}, 'meta': {'objective': 'heldout'}}
        >>> upgrade_config(upgrade_config(old)) == upgrade_config(old)
        True
    """
    out = copy.deepcopy(data)
    meta, net = out.get("meta"), out.get("net")
    kind = net.get("kind", "mlp") if isinstance(net, dict) else "mlp"
    if isinstance(meta, dict):
        if _objective_kind(meta) != "hint_cv":  # stored, never read
            meta.pop("hint_weight", None)
            meta.pop("cv_weight", None)
        if "pool" not in net_model(kind).model_fields:  # an mlp is one graph
            meta.pop("graph_pool", None)
    for old, new in MOVED.items():
        if _has(out, old):
            section, key = old.split(".")
            _set(out, new, out[section].pop(key))
    if isinstance(net, dict):
        fields = net_model(kind).model_fields
        for key in _OLD_NET:
            if key not in fields:
                net.pop(key, None)
    return out
