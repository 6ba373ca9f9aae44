"""The shipped protocols (first training format) load unchanged through the legacy converter."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from agentgraph import checkpoint as ckpt
from agentgraph import pretrained
from agentgraph.meta.context import make_context
from agentgraph.meta.protocol_io import checkpoint_config, load_prior, load_protocol
from agentgraph.protocols.legacy import is_legacy, upgrade_arrays, upgrade_config


@pytest.mark.parametrize("name", pretrained.available())
def test_pretrained_protocols_load_value_for_value(name):
    path = pretrained.path(name)
    raw, header = ckpt.load(path)
    assert is_legacy(header)  # the shipped files are of the first format: this test exercises the converter
    cfg = checkpoint_config(path)
    ctx = make_context(cfg)
    learned, stats = load_protocol(path, ctx)
    n = 0
    for tree, old_prefix in ((learned, "['trainable']['protocol']"), (stats, "['norm']")):
        for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            np.testing.assert_array_equal(np.asarray(leaf), raw[old_prefix + jax.tree_util.keystr(p)])
            n += 1
    assert n == sum(1 for k in raw if k.startswith(("['trainable']['protocol']", "['norm']")))  # every array used
    assert load_prior(path, ctx) is None


def test_upgrade_config_and_arrays():
    cfg = upgrade_config({"protocol": {"rule": "mplp", "k": 4, "sgd_lr": 0.1, "grad_input": "none"},
                          "meta": {"imitation_steps": 5, "calibration_rounds": 2, "meta_lr": 1e-3}})
    assert cfg["protocol"] == {"rule": "mplp", "k": 4, "grad_input": "none", "imitation_steps": 5,
                               "calibration_rounds": 2}
    assert cfg["meta"] == {"meta_lr": 1e-3}
    flat = upgrade_arrays({"['pool']['w']": 1, "['pool']['b']": 2, "['pool_extra']['1']['w']": 3,
                           "['opt_state'][0]": 4, "['trainable']['prior']['b']": 5})
    assert flat == {".pool['synapse']['w']": 1, ".pool['bias']['b']": 2, ".opt_state[0]": 4,
                    ".trainable['prior']['bias']['b']": 5}
