"""Unit tests of the checks made before compiling (issue 35): phase-run limits, the ES memory
estimate and sigma bounds, multi-process flags, user-code errors, task columns."""

from __future__ import annotations

import numpy as np
import pytest

from agentgraph import AgentGraphError
from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.multihost import check_flags, settings_digest
from agentgraph.meta.preflight import (
    available_memory,
    check_es_memory,
    check_es_sigma,
    check_phase_runs,
    es_memory_bytes,
)
from agentgraph.meta.task_check import network_columns
from agentgraph.errors_user import user_code_error, user_targets


def _es_cfg(**es):
    return parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
                         "protocol": {"rule": "sgd"},
                         "meta": {"maml": True, "prior_pool": 2, "optimizer": {"kind": "es", **es}}})


def test_phase_runs_past_the_limit_are_refused_naming_the_phase():
    from agentgraph.builders import grid
    from agentgraph.models.nca import NCACell

    check_phase_runs(grid(2, 2, NCACell(channels=4, hidden=8), repeat=10), 256)
    with pytest.raises(AgentGraphError, match=r"phase 'tick' repeats 300 times.*run\.max_phase_runs = 256.*at least 300"):
        check_phase_runs(grid(2, 2, NCACell(channels=4, hidden=8), repeat=300), 256)


def test_es_memory_estimate_grows_with_the_population_and_shrinks_with_chunks():
    cfg = _es_cfg(popsize=64)
    ctx = make_context(cfg)
    trainable = {"prior": ctx.template()}
    small, big = es_memory_bytes(cfg, ctx, trainable), es_memory_bytes(_es_cfg(popsize=6400), ctx, trainable)
    assert 50 * small < big
    assert es_memory_bytes(_es_cfg(popsize=6400, chunk=8), ctx, trainable) < big
    assert es_memory_bytes(cfg, ctx, trainable, devices=8) < small
    have, source = available_memory()
    assert have is None or have > 0, source
    check_es_memory(cfg, ctx, trainable)  # 64 candidates of a (1, 4, 1) net fit anywhere
    with pytest.raises(AgentGraphError, match=r"popsize = 1000000000000 .* GiB per device .*about \d+ fits"):
        check_es_memory(_es_cfg(popsize=10**12), ctx, trainable)


def test_es_sigma_bounds():
    theta = {"w": np.full(3, 100.0, np.float32)}
    check_es_sigma(_es_cfg(sigma=0.05), theta)
    with pytest.raises(AgentGraphError, match="at or past run.max_meta_param"):
        check_es_sigma(_es_cfg(sigma=1e3), theta)
    with pytest.raises(AgentGraphError, match=r"below float32's resolution .*largest magnitude 100"):
        check_es_sigma(_es_cfg(sigma=1e-7), theta)


def test_multi_process_flags_and_settings_digest():
    check_flags(None, None, None)
    check_flags("10.0.0.1:1234", 2, 1)
    check_flags("auto", None, None)
    with pytest.raises(AgentGraphError, match="--process-id 1 was given without --coordinator"):
        check_flags(None, None, 1)
    with pytest.raises(AgentGraphError, match="--num-processes 4 would be ignored"):
        check_flags("auto", 4, None)
    assert settings_digest({"a": [1, 2]}) == settings_digest({"a": [1, 2]}) != settings_digest({"a": [2, 1]})


def _my_sampler(key):
    raise KeyError("no such split")


def test_errors_raised_in_user_code_name_the_field_and_function_and_library_errors_pass():
    try:
        _my_sampler(None)
    except KeyError as e:
        err = user_code_error(e, {"data.task": f"{__name__}:_my_sampler"}, "sampling")
    assert err is not None
    assert f"data.task '{__name__}:_my_sampler' (your task factory) failed while sampling" in str(err)
    assert "_my_sampler at test_preflight.py:" in str(err) and "KeyError" in str(err)
    try:
        _my_sampler(None)
    except KeyError as e:  # no config names it: still the user's file, found by its path
        assert str(user_code_error(e)).startswith("your code failed: _my_sampler at test_preflight.py:")
    try:
        np.zeros(2).reshape(3)  # raised inside numpy only
    except ValueError as e:
        assert user_code_error(e, {}) is None
    cfg = parse_config({"data": {"task": "mypkg.tasks:sine"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
                        "protocol": {"rule": "sgd"}})
    assert user_targets(cfg) == {"data.task": "mypkg.tasks:sine"}


def test_network_columns_are_what_the_network_reads():
    ctx = make_context(parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
                                     "protocol": {"rule": "sgd"}}))
    assert network_columns(ctx) == {"x": 1, "y": 1}
