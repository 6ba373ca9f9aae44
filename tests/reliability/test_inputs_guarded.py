"""Inputs that used to lose a file, hang or trace back (issue 35): export never writes over a
checkpoint, YAML aliases ("billion laughs", recursive anchors) and Python tags are refused, a
malformed ``--set`` value is a one-line error."""

from __future__ import annotations

import os

import pytest

from agentgraph.cli import main
from agentgraph.meta.config import parse_config
from agentgraph.meta.train import train


@pytest.fixture(scope="module")
def run_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 3, 1], "loss": "l2"},
                        "protocol": {"rule": "sgd"}, "meta": {"inner_steps": 2, "batch": 2, "meta_steps": 1,
                        "prior_pool": 2, "maml": True}, "run": {"out_dir": str(d / "r")}})
    return train(cfg, progress=False, log=lambda s: None)["checkpoint"]


def test_export_never_writes_over_a_checkpoint(run_ckpt, tmp_path, capsys):
    before = open(run_ckpt, "rb").read()
    assert main(["export", run_ckpt, run_ckpt]) == 2
    assert "is the checkpoint being exported" in capsys.readouterr().err
    other = tmp_path / "ckpt_00000009.npz"
    other.write_bytes(before)  # another run's checkpoint
    assert main(["export", run_ckpt, str(other)]) == 2
    assert "exists and is not an exported protocol (it is a training checkpoint)" in capsys.readouterr().err
    junk = tmp_path / "notes.npz"
    junk.write_text("mine")
    assert main(["export", run_ckpt, str(junk)]) == 2 and junk.read_text() == "mine"
    assert open(run_ckpt, "rb").read() == before and other.read_bytes() == before
    out = tmp_path / "protocol.npz"
    assert main(["export", run_ckpt, str(out)]) == 0
    assert main(["export", run_ckpt, str(out)]) == 0  # an earlier export may be replaced
    assert main(["export", run_ckpt, str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("text, named", [
    ('a: &a ["x", "x"]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n', "uses the YAML alias *a"),
    ("a: &r [1, *r]\n", "uses the YAML alias *r"),
    ("net: !!python/object/apply:os.system ['echo hi']\n", "could not be parsed"),
    ("meta: {batch: 4\n", "could not be parsed"),
])
def test_yaml_that_could_expand_or_execute_is_refused(text, named, tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    assert main(["train", str(p), "--set", f"run.out_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) <= 8
    assert not os.path.exists(tmp_path / "r")


def test_malformed_set_values_are_one_error(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("data: {task: sinusoid}\nnet: {sizes: [1, 3, 1], loss: l2}\n")
    for bad in ("meta.batch=[1, 2", "meta.batch=*x", "net=!!python/name:os.system"):
        assert main(["train", str(p), "--set", bad]) == 2
        err = capsys.readouterr().err
        assert "--set" in err and "Traceback" not in err
