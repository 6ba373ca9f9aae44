"""MPLP (Randazzo et al. 2020), the learned message-passing learning protocol.

* :mod:`~agentgraph.protocols.mplp.agents` — the kinds: every library kind with a learned backward.
* :mod:`~agentgraph.protocols.mplp.sharing` — which agents share a learner, the meta-parameters
  and normalisation of a graph, and what every group receives at each inner step.
* :mod:`~agentgraph.protocols.mplp.protocol` — :func:`mplp`, the protocol factory (config
  ``protocol: {rule: mplp, ...}``).
* :mod:`~agentgraph.protocols.mplp.calibration` — the learner-input normalisation measured
  before meta-training.
* :mod:`~agentgraph.protocols.mplp.imitation` — the warm start by imitation of backprop.
* :mod:`~agentgraph.protocols.mplp.gradient_input` — the gradient as an optional learner input.
"""

from agentgraph.protocols.mplp.agents import (
    PARAM_FIELDS,
    MPLPConfig,
    MPLPKind,
    input_layer,
    kinds,
    n_features,
)
from agentgraph.protocols.mplp.protocol import MPLPSettings, mplp
from agentgraph.protocols.mplp.sharing import (
    SHARING,
    assemble,
    init_meta,
    init_norm,
    init_params,
    role,
    share_keys,
)

__all__ = [
    "MPLPConfig", "MPLPKind", "MPLPSettings", "PARAM_FIELDS", "SHARING", "assemble", "init_meta", "init_norm",
    "init_params", "input_layer", "kinds", "mplp", "n_features", "role", "share_keys",
]
