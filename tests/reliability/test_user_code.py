"""User code that fails (issue 35): a protocol factory, network builder or task factory — or the
hooks and samplers they return — that raises, returns the wrong type or shape, cannot be traced
by JAX, or does not fit the config; each is one AgentGraphError naming the config field, the
user's function and the fix, and the CLI exits 2 with no traceback."""

from __future__ import annotations

import os

import pytest
from faults import probe, tiny, write_yaml

from agentgraph.cli import main
from agentgraph.meta.config import parse_config
from agentgraph.meta.train import train

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def _user_module_importable(monkeypatch):
    monkeypatch.syspath_prepend(HERE)


#: (case, config override, what the message must name)
CASES = [
    ("protocol factory raises", {"protocol": {"rule": "user_module:proto_raises"}},
     r"protocol\.rule 'user_module:proto_raises' \(your protocol factory\).*user_module\.py:\d+ raised RuntimeError: boom"),
    ("protocol factory returns a dict", {"protocol": {"rule": "user_module:proto_wrong_type"}},
     r"protocol\.rule 'user_module:proto_wrong_type': the factory returned dict"),
    ("protocol params hook raises", {"protocol": {"rule": "user_module:proto_params_raises"}},
     r"protocol\.rule 'user_module:proto_params_raises'.*proto_params_raises\.<locals>\.params .*KeyError"),
    ("network builder raises", {"net": {"kind": "user_module:net_raises"}},
     r"net\.kind 'user_module:net_raises' \(your network builder\).*ValueError: my builder broke"),
    ("network builder returns a list", {"net": {"kind": "user_module:net_wrong_type"}},
     r"net\.kind 'user_module:net_wrong_type' returned list"),
    ("network reads 3 inputs, task gives 1", {"net": {"kind": "user_module:net_three_inputs"}},
     r"net\.kind 'user_module:net_three_inputs' \(your builder\) reads 3 columns of x but data\.task 'sinusoid' gives 1"),
    ("task factory raises", {"data": {"task": "user_module:task_raises", "cv_batch": 20}},
     r"data\.task 'user_module:task_raises' \(your task factory\).*ZeroDivisionError"),
    ("task factory returns a str", {"data": {"task": "user_module:task_wrong_type", "cv_batch": 20}},
     r"data\.task 'user_module:task_wrong_type' returned str, not a TaskFamily: return"),
    ("task sampler not traceable", {"data": {"task": "user_module:task_untraceable", "cv_batch": 20}},
     r"data\.task 'user_module:task_untraceable'.*TracerArrayConversionError.*traceable by JAX"),
    ("task sampler raises", {"data": {"task": "user_module:task_sampler_raises", "cv_batch": 20}},
     r"data\.task 'user_module:task_sampler_raises'.*sample at user_module\.py:\d+ raised IndexError"),
    ("task yields fewer batches than inner steps", {"data": {"task": "user_module:task_few_batches", "cv_batch": 20}},
     r"yields 1 batches per task, fewer than meta\.inner_steps = 2.*lower meta\.inner_steps"),
    ("task gives 2 inputs, network reads 1", {"data": {"task": "user_module:task_two_inputs", "cv_batch": 20}},
     r"net\.sizes \[1, 4, 1\] reads 1 columns of x but data\.task 'user_module:task_two_inputs' gives 2"),
    ("task sampler returns the wrong layout", {"data": {"task": "user_module:task_wrong_layout", "cv_batch": 20}},
     r"data\.task 'user_module:task_wrong_layout': its sampler returned \['x'\]"),
    ("phase repeated 100000 times", {"net": {"kind": "user_module:net_huge_repeat"}},
     r"phase 'tick' repeats 100000 times.*run\.max_phase_runs = 256"),
]


@pytest.mark.parametrize("case, over, named", CASES, ids=[c[0] for c in CASES])
def test_user_code_that_fails_is_named_with_its_field_and_fix(case, over, named, tmp_path):
    cfg = tiny(tmp_path / "r")
    cfg.update(over)
    probe("user code", case, lambda: train(parse_config(cfg), progress=False, log=lambda s: None), match=named)
    assert not any(f.endswith(".npz") for f in os.listdir(tmp_path / "r")) if (tmp_path / "r").exists() else True


def test_a_wrong_shape_from_a_users_protocol_names_the_factory(tmp_path):
    cfg = tiny(tmp_path / "r")
    cfg["protocol"] = {"rule": "user_module:proto_bad_shape"}
    probe("user code", "protocol params of the wrong shape",
          lambda: train(parse_config(cfg), progress=False, log=lambda s: None),
          match=r"has shape \(7,\).*your protocol factory protocol\.rule 'user_module:proto_bad_shape'")


def test_the_cli_prints_one_error_and_no_traceback(tmp_path, capsys):
    cfg = tiny(tmp_path / "r")
    cfg["data"] = {"task": "user_module:task_untraceable", "cv_batch": 20}
    assert main(["train", write_yaml(tmp_path / "c.yaml", cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("agentgraph train: error: data.task 'user_module:task_untraceable'") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bench_and_eval_name_a_failing_sampler_too(tmp_path, capsys):
    cfg = tiny(tmp_path / "r")
    cfg["data"] = {"task": "user_module:task_sampler_raises", "cv_batch": 20}

    def bench():
        rc = main(["bench", write_yaml(tmp_path / "c.yaml", cfg), "--steps", "1"])
        err = capsys.readouterr().err
        if rc == 2 and "Traceback" not in err:
            from agentgraph import AgentGraphError

            raise AgentGraphError(err)
        return rc

    probe("user code", "bench with a sampler that raises", bench,
          match=r"data\.task 'user_module:task_sampler_raises' \(your task factory\) failed while timing meta-steps")
