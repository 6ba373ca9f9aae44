"""Loading a learned protocol (learners + normalisation) out of a training checkpoint, into the
same or another architecture.

A protocol trained on one network loads into another when every learner and normalisation the
new network needs exists in the checkpoint with the same shape — e.g. the same net with a step
activation, or a wider net with the same layers (MPLP's transfer experiments). Anything else is
refused with a list of what differs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.errors import AgentGraphError
from agentgraph.meta import checkpoint as ckpt
from agentgraph.meta.setup import Setup
from agentgraph.protocols import mplp

__all__ = ["load_protocol"]


def load_protocol(path: str, setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, norm)`` for ``setup``'s network from the training checkpoint at ``path``.

    Raises:
        AgentGraphError: a learner or normalisation the network needs is missing or has another
            shape (the message lists them and says which config fields usually differ).
    """
    flat, _ = ckpt.load(path)
    sharing = setup.cfg.protocol.sharing
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
            + "\nLearners must match in protocol.k, protocol.hidden, protocol.mlp, protocol.stateful and "
            "protocol.sharing, and every layer group of the new network must exist in the trained one."
        )
    tree = jax.tree_util.tree_unflatten(treedef, out)
    return tree["trainable"]["protocol"], tree["norm"]
