"""Faults in what agentgraph reads: corrupt, truncated and foreign files of every type; user
datasets with NaN, empty splits or labels out of range; hypothesis-generated configs and
datasets; graphs whose slots or values do not fit (compiled and interpreted alike); evaluation
arguments; numerical health of meta-steps."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgraph import AgentGraph, AgentGraphError, compile, mlp
from agentgraph import checkpoint as ckpt
from agentgraph.data import load_dataset, load_idx, write_idx
from agentgraph.meta.config import TrainConfig, load_config, parse_config
from agentgraph.meta.protocol_io import read_checkpoint
from agentgraph.meta.train import train
from agentgraph.rundir import read_metrics
from faults import probe, tiny, tiny_cfg, write_yaml

quiet = dict(progress=False, log=lambda s: None)


# --- corrupt, truncated and foreign files, for every file type agentgraph reads -------------------

def _valid_files(d) -> dict[str, str]:
    """One valid file of each type agentgraph reads."""
    os.makedirs(d, exist_ok=True)
    files = {"checkpoint": ckpt.step_path(d, 0), "config.yaml": os.path.join(d, "c.yaml"),
             "config.toml": os.path.join(d, "c.toml"), "dataset.npz": os.path.join(d, "data.npz"),
             "idx": os.path.join(d, "images-idx3-ubyte"), "metrics.jsonl": os.path.join(d, "metrics.jsonl")}
    ckpt.save(files["checkpoint"], {"w": np.arange(4.0)}, metadata={"config": {}, "step": 0})
    write_yaml(files["config.yaml"], {"meta": {"inner_steps": 3}})
    with open(files["config.toml"], "w") as f:
        f.write("[meta]\ninner_steps = 3\n")
    rng = np.random.default_rng(0)
    np.savez(files["dataset.npz"], x_train=rng.integers(0, 255, (6, 4, 4), np.uint8), y_train=np.arange(6) % 2,
             x_test=rng.integers(0, 255, (2, 4, 4), np.uint8), y_test=np.array([0, 1]))
    write_idx(files["idx"], rng.integers(0, 255, (3, 4, 4)).astype(np.uint8))
    with open(files["metrics.jsonl"], "w") as f:
        f.write('{"step": 0, "meta_loss": 1.0}\n{"step": 1, "meta_loss": 0.9}\n')
    return files


READERS = {
    "checkpoint": lambda p: ckpt.load(p),
    "protocol": lambda p: read_checkpoint(p),  # what eval/demo/export read
    "config.yaml": lambda p: load_config(p),
    "config.toml": lambda p: load_config(p),
    "dataset.npz": lambda p: load_dataset("npz", path=p, size=None),
    "idx": lambda p: load_idx(p),
    "metrics.jsonl": lambda p: read_metrics(p),
}
_SOURCE = {"protocol": "checkpoint"}


def _corrupt(kind: str, data: bytes, others: dict[str, bytes], rng) -> bytes:
    if kind == "empty":
        return b""
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "bit flips":
        b = bytearray(data)
        for i in rng.integers(0, len(b), 3):
            b[i] ^= 0xFF
        return bytes(b)
    if kind == "random bytes":
        return rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    return others[kind]  # a foreign file: another type's valid bytes


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_file_type_corrupt_truncated_or_foreign(tmp_path, reader):
    files = _valid_files(tmp_path / "valid")
    src = files[_SOURCE.get(reader, reader)]
    data = open(src, "rb").read()
    others = {f"foreign {k}": open(p, "rb").read() for k, p in files.items() if k != _SOURCE.get(reader, reader)}
    rng = np.random.default_rng(abs(hash(reader)) % 2**32)
    for kind in ["empty", "truncated", "bit flips", "random bytes", *sorted(others)]:
        p = tmp_path / f"bad-{kind.replace(' ', '_')}{os.path.splitext(src)[1]}"
        p.write_bytes(_corrupt(kind, data, others, rng))
        # a damaged file is reported (naming it) or, where the damage leaves a valid file of the
        # type (bit flips in a config's text, a torn metrics line), read as what it now says
        probe("corrupt file", f"{reader}: {kind}", lambda: READERS[reader](str(p)), expect="either",
              match=rf"{p.name}|{reader.split('.')[0]}|top level|config")
    d = tmp_path / "a-directory"
    d.mkdir()
    probe("corrupt file", f"{reader}: a directory", lambda: READERS[reader](str(d)), match="a-directory")


def test_lock_file_with_garbage_is_still_a_lock(tmp_path):
    from agentgraph import rundir

    d = tmp_path / "run"
    d.mkdir()
    (d / rundir.LOCK_NAME).write_bytes(b"\x00\xffgarbage")
    with rundir.locked(str(d)):
        probe("corrupt file", "lock file: garbage, held", lambda: rundir.locked(str(d)).__enter__(),
              match="in use by process")
    probe("corrupt file", "lock file: garbage, free", lambda: train(tiny_cfg(d), **quiet), expect="ran",
          verify=lambda r: r["steps"] == 6)


# --- user datasets ------------------------------------------------------------------------------------

def _npz(path, **over):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.uniform(0, 1, (20, 4, 4)), "y_train": np.arange(20) % 10,
              "x_test": rng.uniform(0, 1, (10, 4, 4)), "y_test": np.arange(10) % 10, **over}
    np.savez(path, **arrays)
    return str(path)


def test_dataset_faults_in_either_split(tmp_path):
    x_te = np.random.default_rng(1).uniform(0, 1, (10, 4, 4))
    x_te[3, 1, 2] = np.nan
    p = _npz(tmp_path / "nan_test.npz", x_test=x_te)
    probe("dataset", "NaN in the test split", lambda: load_dataset("npz", path=p, size=None),
          match=r"nan_test\.npz'.*x_test contains NaN or inf \(first at index \(3, 1, 2\)")
    p = _npz(tmp_path / "inf_train.npz", x_train=np.full((20, 4, 4), np.inf))
    probe("dataset", "inf in the train split", lambda: load_dataset("npz", path=p, size=None), match=r"x_train contains NaN")
    p = _npz(tmp_path / "empty.npz", x_test=np.zeros((0, 4, 4)), y_test=np.zeros(0, int))
    probe("dataset", "empty test split", lambda: load_dataset("npz", path=p, size=None), match=r"test split is empty")
    p = _npz(tmp_path / "huge.npz", x_train=np.full((20, 4, 4), 1e300))
    probe("dataset", "values overflowing float32", lambda: load_dataset("npz", path=p, size=None),
          match=r"does not fit float32")
    p = _npz(tmp_path / "frac.npz", y_train=np.arange(20) / 3)
    probe("dataset", "fractional labels", lambda: load_dataset("npz", path=p, size=None), match=r"y_train\[1\] is 0\.33")
    y = np.arange(10) % 10
    y[7] = 10  # one label past the 10 classes the network has
    p = _npz(tmp_path / "label.npz", y_test=y)
    cfg = parse_config({"data": {"task": "npz", "path": p, "image_size": 4}, "net": {"sizes": [16, 10]},
                        "run": {"out_dir": str(tmp_path / "r")}})
    probe("dataset", "label out of range", lambda: train(cfg, **quiet),
          match=r"label\.npz'\): y_test\[7\] is 10, but net\.sizes ends with 10 \(classes 0 \.\. 9\)\. Fix that label")
    assert not os.path.exists(tmp_path / "r")  # reported before the run directory was touched


_arrays = st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "complex64", "U1"])


@settings(max_examples=30, deadline=None)
@given(n_tr=st.integers(0, 4), n_te=st.integers(0, 3), hw=st.integers(1, 3), dtype=_arrays,
       poison=st.sampled_from([None, np.nan, np.inf, -1e39, 1e300]), labels=st.sampled_from(["ok", "neg", "frac", "big", "2d", "short"]),
       size=st.sampled_from([None, 2]))
def test_generated_datasets_load_correctly_or_raise(tmp_path_factory, n_tr, n_te, hw, dtype, poison, labels, size):
    rng = np.random.default_rng(n_tr * 7 + n_te)
    x_tr = (rng.uniform(0, 3, (n_tr, hw, hw)) if dtype != "U1" else np.full((n_tr, hw, hw), "a")).astype(dtype)
    x_te = (rng.uniform(0, 3, (n_te, hw, hw)) if dtype != "U1" else np.full((n_te, hw, hw), "a")).astype(dtype)
    if poison is not None and n_te and x_te.dtype.kind == "f":
        with np.errstate(over="ignore"):  # -1e39 becomes -inf in float32: a fault too
            x_te.reshape(-1)[0] = poison
    y_tr, y_te = np.arange(n_tr) % 3, np.arange(n_te) % 3
    y_tr = {"ok": y_tr, "neg": y_tr - 1, "frac": y_tr + 0.5, "big": y_tr + 2**40, "2d": y_tr[:, None],
            "short": y_tr[:-1]}[labels]
    p = str(tmp_path_factory.mktemp("ds") / "d.npz")
    np.savez(p, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)

    def right(ds):  # what a loaded dataset must satisfy: finite float32, labels inside the classes
        return all(np.all(np.isfinite(a)) and a.dtype == np.float32 for a in (ds.x_train, ds.x_test)) and \
            all(y.min() >= 0 and y.max() < ds.n_classes for y in (ds.y_train, ds.y_test))

    probe("dataset", f"generated {dtype} {n_tr}/{n_te} {labels} {poison}", lambda: load_dataset("npz", path=p, size=size),
          expect="either", verify=right, match=r"d\.npz")


# --- configs ------------------------------------------------------------------------------------------

_SECTIONS = {name: f.annotation for name, f in TrainConfig.model_fields.items()}
_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=5), st.lists(st.integers(-2, 300), max_size=4), st.dictionaries(st.text(max_size=3),
                                                                                                    st.integers(), max_size=2))


def _fields(section: str) -> list[str]:
    model = TrainConfig.model_fields[section].annotation
    return sorted(getattr(model, "model_fields", {"rule": None, "lr": None, "k": None, "hidden": None}))


_config = st.one_of(
    st.dictionaries(st.sampled_from(sorted(_SECTIONS) + ["extra"]), st.one_of(
        _values, st.dictionaries(st.sampled_from(sorted({f for s in _SECTIONS for f in _fields(s)}) + ["nope"]),
                                 _values, max_size=4)), max_size=4),
    _values)


@settings(max_examples=60, deadline=None)
@given(data=_config)
def test_generated_configs_parse_or_name_the_field(tmp_path_factory, data):
    p = write_yaml(tmp_path_factory.mktemp("cfg") / "c.yaml", data) if isinstance(data, dict) else None
    if p is None:
        p = str(tmp_path_factory.mktemp("cfg") / "c.yaml")
        with open(p, "w") as f:
            f.write(repr(data))
    probe("config", f"generated {str(data)[:60]}", lambda: load_config(p), expect="either",
          verify=lambda cfg: isinstance(cfg, TrainConfig), match=r"c\.yaml")


def test_config_non_finite_and_wrong_shapes(tmp_path):
    probe("config", "NaN meta-lr", lambda: parse_config({"meta": {"meta_lr": float("nan")}}), match=r"meta\.meta_lr")
    probe("config", "inf in protocol settings", lambda: parse_config({"protocol": {"rule": "sgd", "lr": float("inf")}}),
          match=r"protocol\.lr is inf")
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    probe("config", "top level is a list, with --set", lambda: load_config(p, {"run.seed": 1}),
          match=r"top level must be a mapping")
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe\x00binary")
    probe("config", "binary file", lambda: load_config(p), match=r"not UTF-8")
    probe("config", "override through a value", lambda: load_config(write_yaml(tmp_path / "ok.yaml", {"meta": {"batch": 2}}),
                                                                    {"meta.batch.x": 1}), match=r"'batch' is not a section")


# --- graphs: the compiled and the interpreted path check alike ------------------------------------------

def _rebuilt(g: AgentGraph, slot_shift: int = 0, states: dict | None = None) -> AgentGraph:
    """``g`` declared again, its input agents' slots shifted by ``slot_shift`` and ``states`` set."""
    out = AgentGraph(g.kinds)
    for name in g.agents():
        data = dict(g.nx.nodes[name])
        kind, slot = data.pop("kind"), data.pop("slot", None)
        out.add_agent(name, kind, slot=slot + slot_shift if kind == "input" else slot, state=(states or {}).get(name))
    for u, v, k, attrs in g.arrows():
        out.add_arrow(u, v, **attrs)
    return out


def test_slot_past_the_batch_and_values_overflowing_the_dtype():
    from agentgraph.interpreter import init_state, step

    g = mlp([2, 1], loss="l2")
    g2 = _rebuilt(g, slot_shift=3)
    batch = {"x": np.ones((2, 2)), "y": np.zeros((2, 1))}
    probe("graph", "slot past the batch (interpreter)", lambda: step(g2, init_state(g2, 2), {}, batch),
          match=r"reads column [34] of batch\['x'\], which has only 2 columns")
    probe("graph", "slot past the batch (compiled)", lambda: compile(g2).forward(None, compile(g2).init(2), batch),
          match=r"reads column [34] of batch\['x'\], which has only 2 columns")
    prog = compile(g)
    probe("graph", "batch value overflowing float32", lambda: prog.forward(None, prog.init(2), {**batch, "x": np.full((2, 2), 1e39)}),
          match=r"batch\['x'\] holds 1e\+39, which overflows the compute dtype float32")
    w = g.agents("synapse")[0]
    probe("graph", "initial state overflowing float32", lambda: compile(_rebuilt(g, states={w: {"w": 1e39}})),
          match=re.escape(f"Agent {w!r}: state field 'w' holds 1e+39"))


# --- evaluation arguments and numerical health ----------------------------------------------------------

def test_evaluation_arguments(tmp_path, capsys):
    from agentgraph.cli import main
    from agentgraph.meta.evaluate import evaluate

    cfg = tiny_cfg(tmp_path)
    for kw, what in (({"runs": 0}, "runs"), ({"sgd_lr": -1.0}, "sgd_lr"), ({"adam_lr": float("nan")}, "adam_lr")):
        probe("arguments", f"evaluate {kw}", lambda: evaluate(cfg, None, None, **kw), match=rf"evaluate: {what} must be")
    for args in (["eval", "x.npz", "--runs", "-3"], ["eval", "x.npz", "--sgd-lr", "inf"], ["demo", "--runs", "0"]):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_absurd_meta_lr_and_loss_bound_are_never_checkpointed(tmp_path):
    logs = []
    cfg = tiny_cfg(tmp_path / "a", **{"meta.meta_lr": 1e6, "run.max_bad_steps": 3, "run.checkpoint_every": 1})
    probe("numerical", "absurd meta-lr", lambda: train(cfg, progress=False, log=logs.append),
          match=r"3 meta-steps in a row were not taken \(run\.max_bad_steps\).*meta-step 2: the update would take "
                r"meta-parameter \['.*'\]\['.*'\].* to magnitude .* past run\.max_meta_param = 1000.*Lower meta\.meta_lr "
                r"\(now 1e\+06\).*The last good checkpoint is none")
    assert ckpt.latest(cfg.run.out_dir) is None and "meta-step 0: the update would take" in logs[-3]
    cfg = tiny_cfg(tmp_path / "b", **{"run.max_meta_loss": 1e-12, "run.max_bad_steps": 2})
    probe("numerical", "meta-loss past its bound", lambda: train(cfg, **quiet),
          match=r"meta-step 1: meta-loss .* exceeds run\.max_meta_loss = 1e-12")
    assert ckpt.latest(cfg.run.out_dir) is None


def _reject_from(monkeypatch, first: int) -> None:
    """Meta-steps ``first, first + 1, ...`` come back not taken (state unchanged, as a bound would)."""
    import sys

    from agentgraph.meta.state import LOSS_BOUND

    mod = sys.modules["agentgraph.meta.train"]
    real = mod._meta_stepper

    def stepper(*a, **k):
        step = real(*a, **k)

        def wrapped(ts, s):
            new, m, status = step(ts, s)
            return (ts, m, np.int32(LOSS_BOUND)) if s >= first else (new, m, status)
        return wrapped
    monkeypatch.setattr(mod, "_meta_stepper", stepper)


def test_steps_taken_before_rejected_ones_are_checkpointed(tmp_path, monkeypatch):
    # steps 0, 1 taken, 2, 3 rejected; no checkpoint boundary in the run: the end still keeps steps 0 and 1
    _reject_from(monkeypatch, 2)
    cfg = tiny_cfg(tmp_path / "a", **{"meta.meta_steps": 4, "run.checkpoint_every": 100, "run.max_bad_steps": 10})
    res = train(cfg, progress=False, log=lambda *_: None)
    assert res["checkpoint"] == ckpt.latest(cfg.run.out_dir) and res["checkpoint"].endswith(ckpt.step_path("", 3))
    taken = [r["taken"] for r in read_metrics(os.path.join(cfg.run.out_dir, "metrics.jsonl"))]
    assert taken == [True, True, False, False]
    two = tiny_cfg(tmp_path / "two", **{"meta.meta_steps": 2, "run.checkpoint_every": 100})
    want, _ = read_checkpoint(train(two, progress=False, log=lambda *_: None)["checkpoint"])
    got, _ = read_checkpoint(res["checkpoint"])
    assert sorted(got) == sorted(want)
    for k in want:  # the state after the two steps taken
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    # stopped by run.max_bad_steps: the steps taken since the last checkpoint are saved before the error
    cfg = tiny_cfg(tmp_path / "b", **{"meta.meta_steps": 6, "run.checkpoint_every": 100, "run.max_bad_steps": 2})
    with pytest.raises(AgentGraphError, match=r"The last good checkpoint is .*ckpt_00000003"):
        train(cfg, progress=False, log=lambda *_: None)
    assert ckpt.latest(cfg.run.out_dir).endswith(ckpt.step_path("", 3))
