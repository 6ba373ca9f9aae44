"""Every shipped example config parses and validates (names, cross-field checks, protocol settings)."""

from __future__ import annotations

import pathlib

import pytest

from agentgraph.meta.config import load_config

CONFIGS = sorted(p for p in (pathlib.Path(__file__).resolve().parents[1] / "examples" / "configs").iterdir()
                 if p.suffix in (".yaml", ".toml"))


def test_there_are_configs():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_parses(path, monkeypatch):
    monkeypatch.chdir(path.parents[2])  # rules named "examples.module:factory" resolve from the repository root
    cfg = load_config(str(path))
    assert cfg.meta.meta_steps > 0 and cfg.net.sizes
