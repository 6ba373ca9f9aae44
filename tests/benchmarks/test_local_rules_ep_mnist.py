"""``benchmarks/local_rules_ep_mnist.py``: the authors' MNIST setting mapped onto the
``equilibrium`` protocol's conventions, and their initialisation (pure functions, no compiling)."""

from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))
import local_rules_ep_mnist as ep  # noqa: E402


def test_setting_maps_their_conventions():
    s = ep.setting()  # their net1: beta 0.5 on sum (s - y)^2, alphas 0.1 / 0.05, eps 0.5, 20 / 4 iterations
    assert (s["beta"], s["gamma"], s["T"], s["K"], s["nudge"]) == (1.0, 0.5, 20, 4, "centred")
    assert s["lrs"] == {"synapse:0": 0.2, "bias:0": 0.2, "synapse:1": 0.1, "bias:1": 0.1}
    assert ep.setting(scale=0.5)["lrs"]["synapse:1"] == 0.05


def test_glorot_bounds_per_layer():
    ws = ep.glorot([6, 4, 3], seed=1)
    assert [w.shape for w in ws] == [(6, 4), (4, 3)]
    for w, (a, b) in zip(ws, [(6, 4), (4, 3)]):
        assert np.abs(w).max() <= np.sqrt(6 / (a + b)) and np.abs(w).max() > 0.5 * np.sqrt(6 / (a + b))
    assert np.array_equal(ws[0], ep.glorot([6, 4, 3], seed=1)[0])


def test_setting_clipped_outputs_only_when_asked():
    from agentgraph.protocols.base import resolve
    assert "output_activation" not in ep.setting()  # the earlier runs' sections, unchanged
    s = ep.setting(output_activation="hard_sigmoid")  # their clipped output: the protocol's option
    assert s["output_activation"] == "hard_sigmoid"
    assert resolve(s).settings["output_activation"] == "hard_sigmoid"
