"""The project's side of ``benchmarks/local_rules_pcx.py`` (the PCX side needs PCX's own
virtualenv, not installed here): shared initial weights load into the compiled PC graph exactly,
and an epoch trains on them."""

from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))
import local_rules_pcx as lrp  # noqa: E402


def test_shared_weights_load_and_train():
    sizes = [5, 3, 10]
    w0 = lrp.init_weights(sizes, seed=1)
    assert all(np.abs(w0[f"W{l}"]).max() <= 1 / np.sqrt(a) for l, a in enumerate(sizes[:-1]))
    t = lrp.Trainer({"rule": "predictive_coding", "T": 1, "gamma": 0.3, "lr": 0.2}, sizes, "relu", w0, batch=4)
    got = lrp.agent_weights(t.prog.to_agents(t.state), sizes)
    assert all(np.array_equal(got[k], w0[k]) for k in w0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 5)).astype(np.float32), rng.integers(0, 10, 10)
    assert t.epoch(x, y, np.arange(10), batch=4) > 0  # two batches, the last two examples dropped
    after = lrp.agent_weights(t.prog.to_agents(t.state), sizes)
    assert all(np.isfinite(after[k]).all() for k in after) and not np.array_equal(after["W0"], w0["W0"])
