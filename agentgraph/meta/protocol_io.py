"""Loading a learned protocol (meta-parameters + measured stats) out of a training checkpoint,
into the same or another network.

A protocol trained on one network loads into another when every piece of meta-parameters and
stats the new network needs exists in the checkpoint with the same shape — e.g. the same net with
a step activation, or a wider net with the same layers (MPLP's transfer experiments). Anything
else is refused with a list of what differs. Checkpoints of the first training format (the
shipped protocols) are read through :mod:`agentgraph.protocols.legacy`; every stored config in
the layout of today's sections (:func:`~agentgraph.meta.config_upgrade.upgrade_config`).
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph import checkpoint as ckpt
from agentgraph.errors import AgentGraphError
from agentgraph.meta.config import parse_config, upgrade_config
from agentgraph.meta.context import Context, make_context
from agentgraph.meta.state import FORMAT, TrainState
from agentgraph.protocols import legacy

__all__ = ["checkpoint_config", "describe_checkpoint", "export_protocol", "load_prior", "load_protocol", "read_checkpoint"]


def read_checkpoint(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays by today's key paths, metadata with today's config)`` of any checkpoint.

    Example:
        >>> from agentgraph import pretrained
        >>> arrays, header = read_checkpoint(pretrained.path("digits"))
        >>> header["config"]["protocol"]["rule"], any(k.startswith(".stats") for k in arrays)
        ('mplp', True)
    """
    flat, header = ckpt.load(path)
    if legacy.is_legacy(header):
        flat = legacy.upgrade_arrays(flat)
        if "config" in header:
            header = {**header, "config": legacy.upgrade_config(header["config"])}
    if "config" in header:
        header = {**header, "config": upgrade_config(header["config"])}
    return flat, header


def describe_checkpoint(path: str) -> str:
    """What a checkpoint (or an exported protocol) holds, as text: its step, the protocol and its
    settings, the network and task of its config, and its arrays grouped by their first key
    (learned protocol, measured stats, meta-optimiser state, MAML prior, ...) with shapes,
    summary statistics and parameter counts (``agentgraph show``).

    Example:
        >>> from agentgraph import pretrained
        >>> print(describe_checkpoint(pretrained.path("digits")).splitlines()[1])  # doctest: +ELLIPSIS
        protocol: mplp ...
    """
    flat, header = read_checkpoint(path)
    cfg = header.get("config", {})
    proto = dict(cfg.get("protocol", {}))
    rule = proto.pop("rule", "?")
    net, data = cfg.get("net", {}), cfg.get("data", {})
    lines = [f"{path}: " + (f"meta-step {header['step']}" if "step" in header else "no step recorded")
             + (f", format {header['format']}" if "format" in header else ""),
             f"protocol: {rule} " + ", ".join(f"{k}={v}" for k, v in sorted(proto.items())),
             f"network: {net.get('kind', 'mlp')} " + ", ".join(f"{k}={v}" for k, v in sorted(net.items()) if k != "kind"),
             f"task: {data.get('task', '?')}" + (f", image_size {data['image_size']}" if data.get("image_size") else "")]
    groups: dict[str, list[tuple[str, tuple]]] = {}
    for key, v in flat.items():
        parts = ["".join(m) for m in re.findall(r"\.(\w+)|\['([^']*)'\]|\[(\d+)\]", key)] or [key]
        head = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
        groups.setdefault(head, []).append((key, np.shape(v)))
    for head, items in sorted(groups.items()):
        n = sum(int(np.prod(shape)) for _, shape in items)
        lines.append(f"{head}: {len(items)} arrays, {n:,} numbers")
        for key, shape in items[:6]:
            v = np.asarray(flat[key], np.float64)
            stat = (f"  mean {v.mean():.3g}, std {v.std():.3g}, min {v.min():.3g}, max {v.max():.3g}" if v.size and
                    np.all(np.isfinite(v)) else "")
            lines.append(f"    {key} {list(shape)}{stat}")
        if len(items) > 6:
            lines.append(f"    ... {len(items) - 6} more")
    return "\n".join(lines)


def checkpoint_config(path: str):
    """The validated :class:`~agentgraph.meta.config.TrainConfig` a checkpoint was written with.

    Example:
        >>> from agentgraph import pretrained
        >>> checkpoint_config(pretrained.path("digits")).net.sizes
        [64, 10]
    """

    _, header = read_checkpoint(path)
    if "config" not in header:
        raise AgentGraphError(f"{path!r} holds no config: not a checkpoint written by `agentgraph train`.")
    return parse_config(header["config"], f"(from checkpoint {path!r})")


def _fit(path: str, flat: dict, template: Any, prefix: str, what: str) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out, missing, wrong = [], [], []
    for p, leaf in leaves:
        key = prefix + jax.tree_util.keystr(p)
        if key not in flat:
            missing.append(key)
            out.append(leaf)
            continue
        v = np.asarray(flat[key])
        if v.shape != np.shape(leaf):
            wrong.append(f"{key}: checkpoint {v.shape} vs this network {np.shape(leaf)}")
        out.append(jnp.asarray(v, jnp.asarray(leaf).dtype))
    if missing or wrong:
        lines = [f"  missing {m}" for m in missing[:6]] + [f"  shape {w}" for w in wrong[:6]]
        more = len(missing) + len(wrong) - len(lines)
        raise AgentGraphError(
            f"The {what} in {path!r} does not fit this network ({len(missing)} missing, {len(wrong)} with "
            "other shapes):\n" + "\n".join(lines) + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nThe protocol's settings (protocol: section) must be the training run's, and every parameter "
            "group of the new network must exist in the trained one."
        )
    return jax.tree_util.tree_unflatten(treedef, out)


def load_protocol(path: str, ctx: Context) -> tuple[Any, Any]:
    """``(learned, stats)`` for ``ctx``'s network from the checkpoint at ``path``.

    Raises:
        AgentGraphError: a piece the network needs is missing or has another shape (the message
            lists them).

    Example:
        >>> from agentgraph import pretrained
        >>> p = pretrained.path("digits")
        >>> learned, stats = load_protocol(p, make_context(checkpoint_config(p)))
        >>> len(jax.tree.leaves(learned)) > 0 and len(jax.tree.leaves(stats)) > 0
        True
    """
    flat, header = read_checkpoint(path)
    saved = header.get("config", {}).get("protocol", {}).get("rule") if isinstance(header.get("config"), dict) else None
    rule = ctx.cfg.protocol.get("rule") if isinstance(ctx.cfg.protocol, dict) else None
    if saved is not None and rule is not None and saved != rule:
        raise AgentGraphError(
            f"{path!r} holds a protocol of rule {saved!r}, but this config's protocol section has rule {rule!r}: a "
            f"protocol loads only into its own rule. Set the config's protocol rule (and its settings) to the "
            f"checkpoint's, or point at a checkpoint of rule {rule!r}.")
    proto, graph = ctx.protocol, ctx.net.graph
    learned = _fit(path, flat, proto.init(jax.random.PRNGKey(0), graph), ".trainable['protocol']", "protocol")
    stats = _fit(path, flat, proto.init_stats(graph), ".stats", "protocol's stats")
    return learned, stats


def load_prior(path: str, ctx: Context) -> dict[str, Any] | None:
    """The learned initial weights (MAML) in the checkpoint at ``path``, or ``None`` if it holds
    none (checked against ``ctx``'s network).

    Example:
        >>> from agentgraph import pretrained
        >>> p = pretrained.path("digits")
        >>> load_prior(p, make_context(checkpoint_config(p))) is None
        True
    """
    flat, _ = read_checkpoint(path)
    if not any(k.startswith(".trainable['prior']") for k in flat):
        return None
    return _fit(path, flat, ctx.template(), ".trainable['prior']", "learned prior")


def _check_export_destination(src: str, dst: str) -> None:
    """Export writes ``dst`` only if it is new or an earlier exported protocol (see
    :func:`export_protocol`)."""
    if os.path.isdir(dst):
        raise AgentGraphError(f"export: the destination {dst!r} is a directory; give a file path such as "
                              f"{os.path.join(dst, 'protocol.npz')!r}.")
    if not os.path.exists(dst):
        return
    if os.path.exists(src) and os.path.samefile(src, dst):
        raise AgentGraphError(f"export: the destination {dst!r} is the checkpoint being exported; writing it would "
                              "replace the run's checkpoint with a protocol-only file. Choose another path.")
    try:
        _, header = ckpt.load(dst)
    except AgentGraphError:
        header = {}
    if header.get("contents") != "protocol":
        raise AgentGraphError(f"export: {dst!r} exists and is not an exported protocol (it is "
                              f"{'a training checkpoint' if 'step' in header else 'not a file export wrote'}); export "
                              "never writes over a file it does not own. Choose another path, or remove that file.")


def export_protocol(src: str, dst: str, metadata: dict | None = None) -> str:
    """Write only the learned protocol (meta-parameters, stats and any learned prior) of the
    training checkpoint ``src`` to ``dst``, with its config and step (and ``metadata`` merged
    in): a small file :func:`load_protocol` and ``agentgraph eval`` read like the full
    checkpoint (the optimiser state and prior pool are dropped). Returns ``dst``.

    Example:
        >>> import os, tempfile
        >>> from agentgraph.meta.config import parse_config, upgrade_config
        >>> from agentgraph.meta.train import train
        >>> d = tempfile.mkdtemp()
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 3, 1], "loss": "l2"},
        ...     "protocol": {"rule": "sgd"}, "meta": {"inner_steps": 2, "batch": 2, "meta_steps": 1,
        ...     "prior_pool": 2, "maml": True}, "run": {"out_dir": d}})
        >>> ck = train(cfg, progress=False, log=lambda s: None)["checkpoint"]
        >>> p = export_protocol(ck, os.path.join(d, "protocol.npz"))
        >>> os.path.getsize(p) < os.path.getsize(ck)
        True
    """

    _check_export_destination(src, dst)
    _, header = read_checkpoint(src)
    ctx = make_context(checkpoint_config(src))
    learned, stats = load_protocol(src, ctx)
    prior = load_prior(src, ctx)
    trainable = {"protocol": learned, **({"prior": prior} if prior is not None else {})}
    tree = TrainState(jax.device_get(trainable), jax.device_get(stats), (), {})
    ckpt.save(dst, tree, metadata={**header, "format": FORMAT, "exported_from": os.path.basename(src),
                                   "contents": "protocol", **(metadata or {})})
    return dst
