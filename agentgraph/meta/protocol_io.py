"""Loading a learned protocol (learners + normalisation) out of a training checkpoint, into the
same or another architecture.

A protocol trained on one network loads into another when every learner and normalisation the
new network needs exists in the checkpoint with the same shape — e.g. the same net with a step
activation, or a wider net with the same layers (MPLP's transfer experiments). Anything else is
refused with a list of what differs.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.errors import AgentGraphError
from agentgraph.meta import checkpoint as ckpt
from agentgraph.meta.setup import Setup, make_setup
from agentgraph.protocols import mplp

__all__ = ["export_protocol", "load_prior", "load_protocol"]


def load_prior(path: str, setup: Setup) -> dict[str, Any] | None:
    """The learned MAML prior ``{"w": [n_synapses], "b": [n_biases]}`` in the checkpoint at
    ``path``, or ``None`` if it holds none (checked against ``setup``'s network).

    Example:
        >>> load_prior.__name__
        'load_prior'
    """
    flat, _ = ckpt.load(path)
    w, b = flat.get("['trainable']['prior']['w']"), flat.get("['trainable']['prior']['b']")
    if w is None or b is None:
        return None
    if w.shape != (setup.n_synapses,) or b.shape != (setup.n_biases,):
        raise AgentGraphError(
            f"The MAML prior in {path!r} is for a network with {w.shape[0]} weights and {b.shape[0]} biases; this "
            f"network has {setup.n_synapses} and {setup.n_biases}."
        )
    return {"w": jnp.asarray(w), "b": jnp.asarray(b)}


def load_protocol(path: str, setup: Setup) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(meta, norm)`` for ``setup``'s network from the training checkpoint at ``path``
    (``meta`` is ``None`` for ``protocol.rule: sgd`` runs, which learn only a prior).

    Raises:
        AgentGraphError: a learner or normalisation the network needs is missing or has another
            shape (the message lists them and says which config fields usually differ).
    """
    flat, _ = ckpt.load(path)
    sharing = setup.cfg.protocol.sharing
    if setup.cfg.protocol.rule == "sgd":
        return None, mplp.init_norm(setup.graph, setup.config, sharing)
    template = {
        "trainable": {"protocol": mplp.init_meta(setup.graph, jax.random.PRNGKey(0), setup.config, sharing)},
        "norm": mplp.init_norm(setup.graph, setup.config, sharing),
    }
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out, missing, wrong = [], [], []
    for p, leaf in leaves:
        key = jax.tree_util.keystr(p)
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
            f"The protocol in {path!r} does not fit this network ({len(missing)} missing, {len(wrong)} with "
            "other shapes):\n" + "\n".join(lines) + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nLearners must match in protocol.k, protocol.hidden, protocol.mlp, protocol.stateful, "
            "protocol.sharing and protocol.grad_input (an extra learner input), and every layer group of the new "
            "network must exist in the trained one."
        )
    tree = jax.tree_util.tree_unflatten(treedef, out)
    return tree["trainable"]["protocol"], tree["norm"]


def export_protocol(src: str, dst: str, metadata: dict | None = None) -> str:
    """Write only the learned protocol (learners + normalisation) of the training checkpoint
    ``src`` to ``dst``, with its config and step (and ``metadata`` merged in): a small file
    :func:`load_protocol` and ``agentgraph eval`` read like the full checkpoint (the optimiser
    state and prior pool are dropped). Returns ``dst``.

    Example:
        >>> import os, tempfile
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.train import train
        >>> d = tempfile.mkdtemp()
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 3, 1], "loss": "l2"},
        ...     "meta": {"inner_steps": 2, "batch": 2, "meta_steps": 1, "calibration_rounds": 0, "prior_pool": 2},
        ...     "run": {"out_dir": d}})
        >>> ck = train(cfg, progress=False, log=lambda s: None)["checkpoint"]
        >>> p = export_protocol(ck, os.path.join(d, "protocol.npz"))
        >>> os.path.getsize(p) < os.path.getsize(ck)
        True
    """
    from agentgraph.meta.config import parse_config

    _, meta = ckpt.load(src)
    if "config" not in meta:
        raise AgentGraphError(f"{src!r} holds no config: not a checkpoint written by `agentgraph train`.")
    setup = make_setup(parse_config(meta["config"], f"(from checkpoint {src!r})"))
    proto, norm = load_protocol(src, setup)
    prior = load_prior(src, setup)
    trainable = {k: v for k, v in (("protocol", proto), ("prior", prior)) if v is not None}
    tree = {"trainable": jax.device_get(trainable), "norm": jax.device_get(norm)}
    ckpt.save(dst, tree, metadata={**meta, "exported_from": os.path.basename(src), "contents": "protocol",
                                   **(metadata or {})})
    return dst
