"""Checkpoints: bit-exact round trips, atomic writes, corruption detection, template checks, NaN
refusal, subtree loading, step rotation."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agentgraph import AgentGraphError
from agentgraph.checkpoint import (
    latest,
    list_checkpoints,
    load,
    load_subtree,
    save,
    save_step,
    step_path,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Pair(NamedTuple):
    a: np.ndarray
    b: list


def _params():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {"layer": [{"w": jax.random.normal(k1, (4, 12)), "b": jnp.zeros(12)},
                      {"w": jax.random.normal(k2, (12, 3)), "b": jnp.arange(3.0)}]}


def _train_state():
    """params + a real optax Adam state after one update (so moments are non-trivial)."""
    params = _params()
    opt = optax.adam(1e-3)
    state = opt.init(params)
    grads = jax.tree.map(lambda x: jnp.sin(x) + 0.5, params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return {"params": params, "opt_state": state}


def _rich_tree():
    return {
        **_train_state(),
        "pair": Pair(np.arange(6, dtype=np.int8).reshape(2, 3), [np.float64(np.pi), np.array(True)]),
        "scalars": (3, 2.5, True, np.int64(-7)),
        "bf16": jnp.asarray([1.5, -2.25, 3e38], jnp.bfloat16),
        "empty": np.zeros((0, 5), np.float32),
        "key": jax.random.PRNGKey(42),
    }


def _bits(x):
    a = np.asarray(x)
    return a.dtype.str, a.shape, a.tobytes()


def _assert_bit_exact(got, want):
    gl, gdef = jax.tree_util.tree_flatten(got)
    wl, wdef = jax.tree_util.tree_flatten(want)
    assert gdef == wdef
    for g, w in zip(gl, wl):
        if isinstance(w, (bool, int, float)):
            assert type(g) is type(w)
        assert _bits(g) == _bits(w)


def _snapshot(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _tmp_files(d):
    return [f for f in os.listdir(d) if ".tmp-" in f]


# ---------------------------------------------------------------------------------------------
# round trips


def test_round_trip_with_template_is_bit_exact_and_keeps_structure(tmp_path):
    tree = _rich_tree()
    meta = {"config": {"lr": 1e-3, "layers": [4, 12, 3], "name": "mplp"}, "step": 17, "seed": 123}
    p = tmp_path / "c.npz"
    save(p, tree, metadata=meta)
    got, got_meta = load(p, template=tree)
    _assert_bit_exact(got, tree)
    assert got_meta == meta
    adam = got["opt_state"][0]
    assert type(adam) is type(tree["opt_state"][0])  # ScaleByAdamState, not a tuple
    assert type(got["pair"]) is Pair
    assert got["scalars"][:3] == (3, 2.5, True) and type(got["scalars"][0]) is int
    assert got["bf16"].dtype == jnp.bfloat16


def test_round_trip_without_template_gives_keypath_dict(tmp_path):
    tree = _rich_tree()
    p = tmp_path / "c.npz"
    save(p, tree, metadata={"step": 1})
    flat, meta = load(p)
    want = [(jax.tree_util.keystr(k), v) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]]
    assert list(flat) == [k for k, _ in want]
    for k, v in want:
        assert isinstance(flat[k], np.ndarray)
        assert _bits(flat[k]) == _bits(v), k
    assert "['opt_state'][0].mu['layer'][1]['w']" in flat
    assert meta == {"step": 1}


def test_shape_dtype_struct_template(tmp_path):
    tree = _train_state()
    save(tmp_path / "c.npz", tree, metadata={})
    got, _ = load(tmp_path / "c.npz", template=jax.eval_shape(lambda: tree))
    _assert_bit_exact(got, tree)


def test_metadata_numpy_values_become_json(tmp_path):
    save(tmp_path / "c.npz", {"w": np.ones(1)}, metadata={"step": np.int64(3), "v": np.arange(2), "t": (1, 2)})
    assert load(tmp_path / "c.npz")[1] == {"step": 3, "v": [0, 1], "t": [1, 2]}
    with pytest.raises(AgentGraphError, match="not JSON-serialisable"):
        save(tmp_path / "d.npz", {"w": np.ones(1)}, metadata={"f": object()})
    assert not os.path.exists(tmp_path / "d.npz")


def test_non_numeric_leaf_refused(tmp_path):
    with pytest.raises(AgentGraphError, match=r"\['f'\]"):
        save(tmp_path / "c.npz", {"f": object()}, metadata={})


# ---------------------------------------------------------------------------------------------
# atomicity


def _crash_midway(monkeypatch, exc=RuntimeError("disk full")):
    """Make the payload write die half-way through the bytes."""
    import agentgraph.checkpoint as module

    real = module.write_npz

    def half_then_die(f, arrays, **kw):
        buf = io.BytesIO()
        real(buf, arrays, **kw)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        raise exc

    monkeypatch.setattr(module, "write_npz", half_then_die)


@pytest.mark.parametrize("where", ["payload", "fsync", "replace"])
def test_crash_during_save_leaves_previous_checkpoint(tmp_path, monkeypatch, where):
    p = tmp_path / "c.npz"
    old = {"w": np.arange(5.0)}
    save(p, old, metadata={"step": 1})
    before = _snapshot(p)
    if where == "payload":
        _crash_midway(monkeypatch)
    else:
        def boom(*a, **k):
            raise RuntimeError("killed")

        monkeypatch.setattr(os, where, boom)
    with pytest.raises(RuntimeError):
        save(p, {"w": np.zeros(5)}, metadata={"step": 2})
    monkeypatch.undo()
    assert _snapshot(p) == before
    tree, meta = load(p, template=old)
    np.testing.assert_array_equal(tree["w"], old["w"])
    assert meta == {"step": 1}
    assert _tmp_files(tmp_path) == []


def test_crash_on_first_save_leaves_no_file(tmp_path, monkeypatch):
    _crash_midway(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "c.npz", {"w": np.ones(3)}, metadata={})
    assert os.listdir(tmp_path) == []


def test_process_killed_mid_write(tmp_path):
    """A hard kill (no cleanup) half-way through the payload: the target is untouched, the
    leftover temp file is invisible to latest() and removed by the next save_step."""
    d = tmp_path / "run"
    first = save_step(d, 1, {"w": np.arange(4.0)}, {"seed": 0})
    before = _snapshot(first)
    script = textwrap.dedent(f"""
        import io, os, numpy as np
        from agentgraph import checkpoint as ckpt
        real = ckpt.write_npz
        def die(f, arrays, **kw):
            buf = io.BytesIO(); real(buf, arrays, **kw); data = buf.getvalue()
            f.write(data[: len(data) // 2]); f.flush(); os._exit(9)
        ckpt.write_npz = die
        ckpt.save_step({str(d)!r}, 1, {{"w": np.zeros(4)}}, {{"seed": 1}})
        ckpt.save_step({str(d)!r}, 2, {{"w": np.zeros(4)}}, {{"seed": 1}})
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 9, r.stderr
    assert _snapshot(first) == before
    assert len(_tmp_files(d)) == 1  # the killed write's temp file...
    assert latest(d) == first  # ...is not a checkpoint
    assert load(first)[1] == {"seed": 0, "step": 1}
    save_step(d, 2, {"w": np.ones(4)}, {"seed": 0})
    assert _tmp_files(d) == []


def test_save_step_keeps_old_checkpoints_when_the_new_save_fails(tmp_path, monkeypatch):
    for s in range(3):
        save_step(tmp_path, s, {"w": np.ones(2) * s}, keep=3)
    _crash_midway(monkeypatch)
    with pytest.raises(RuntimeError):
        save_step(tmp_path, 3, {"w": np.ones(2)}, keep=3)
    monkeypatch.undo()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [0, 1, 2]
    assert _tmp_files(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# corruption


def _small(tmp_path):
    p = tmp_path / "c.npz"
    tree = {"w": np.linspace(-1, 1, 6).reshape(2, 3), "n": np.int32(5)}
    save(p, tree, metadata={"step": 4, "config": {"a": 1}})
    with open(p, "rb") as f:
        return p, tree, f.read()


def test_truncated_file_is_corrupt(tmp_path):
    p, _, data = _small(tmp_path)
    for n in [0, 1, 10, len(data) // 3, len(data) // 2, len(data) - 22, len(data) - 1]:
        p.write_bytes(data[:n])
        with pytest.raises(AgentGraphError, match="corrupt") as e:
            load(p)
        assert str(p) in str(e.value)


def test_flipped_payload_byte_is_corrupt(tmp_path):
    p, tree, data = _small(tmp_path)
    i = data.index(np.float64(-1.0).tobytes())  # first value of ['w'], inside the array data
    p.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    with pytest.raises(AgentGraphError, match="corrupt"):
        load(p, template=tree)


def test_metadata_edit_is_detected(tmp_path):
    """Valid JSON with a changed value (and the zip CRC patched to match) fails the sha256."""
    p, _, _ = _small(tmp_path)
    import zipfile

    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["__checkpoint__.npy"] = members["__checkpoint__.npy"].replace(b'"step": 4', b'"step": 9')
    with zipfile.ZipFile(p, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(AgentGraphError, match="corrupt.*checksum"):
        load(p)


def test_every_single_byte_flip_is_detected_or_harmless(tmp_path):
    """Flipping any one byte either raises 'corrupt' or (zip timestamps and the like) loads the
    exact same data; never wrong data, never another exception."""
    p, tree, data = _small(tmp_path)
    good = load(p)
    detected = 0
    want = {k: _bits(v) for k, v in good[0].items()}
    with open(p, "r+b") as f:  # in place: rewriting the whole file 1000 times is slow on some filesystems
        for i in range(len(data)):
            f.seek(i)
            f.write(bytes([data[i] ^ 0xFF]))
            f.flush()
            try:
                flat, meta = load(p)
            except AgentGraphError as e:
                assert "corrupt" in str(e), (i, str(e))
                detected += 1
            else:
                assert meta == good[1], i
                assert {k: _bits(v) for k, v in flat.items()} == want, i
            f.seek(i)
            f.write(data[i:i + 1])
            f.flush()
    assert _snapshot(p) == hashlib.sha256(data).hexdigest()
    assert detected > 0.7 * len(data)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_garbage_files_are_corrupt(tmp_path, content):
    p = tmp_path / "c.npz"
    p.write_bytes(content)
    with pytest.raises(AgentGraphError, match="corrupt"):
        load(p)


def test_plain_npy_and_foreign_npz_are_corrupt(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(3))
    np.savez(tmp_path / "b.npz", x=np.ones(3))
    for name in ("a.npy", "b.npz"):
        with pytest.raises(AgentGraphError, match="corrupt"):
            load(tmp_path / name)


def test_missing_file_names_the_path(tmp_path):
    p = tmp_path / "nope" / "ckpt_00000001.npz"
    with pytest.raises(AgentGraphError, match="does not exist") as e:
        load(p)
    assert str(p) in str(e.value)


def test_newer_format_version_is_refused_not_called_corrupt(tmp_path):
    import zipfile

    p, _, _ = _small(tmp_path)
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["__checkpoint__.npy"] = members["__checkpoint__.npy"].replace(b'"version": 1', b'"version": 7')
    with zipfile.ZipFile(p, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(AgentGraphError, match="format version 7"):
        load(p)


def test_legacy_format_still_loads(tmp_path):
    """Checkpoints written before format versions (arrays keyed by key path) load unchanged."""
    arrays = {"['w']": np.arange(3.0), "['b']": np.zeros(2, np.float32)}
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(arrays[k].tobytes())
    meta = {"format": 1, "step": 5, "_sha256": h.hexdigest(), "_keys": list(arrays)}
    p = tmp_path / "old.npz"
    np.savez(p, **arrays, __metadata__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    tree, m = load(p, template={"w": np.empty(3), "b": np.empty(2, np.float32)})
    assert m == {"format": 1, "step": 5}
    np.testing.assert_array_equal(tree["w"], arrays["['w']"])
    arrays["['w']"][0] = 9  # tampered legacy file
    np.savez(p, **arrays, __metadata__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(AgentGraphError, match="corrupt"):
        load(p)


# ---------------------------------------------------------------------------------------------
# template mismatch


def test_template_mismatch_lists_paths_and_shapes(tmp_path):
    p = tmp_path / "c.npz"
    save(p, {"learner": {"w": np.zeros((4, 12)), "b": np.zeros(12)}, "old": np.ones(2), "n": np.int32(1)},
         metadata={})
    template = {"learner": {"w": np.zeros((4, 20)), "b": np.zeros(12)}, "new": np.ones(2), "n": np.float32(1)}
    with pytest.raises(AgentGraphError) as e:
        load(p, template=template)
    msg = str(e.value)
    assert "1 missing key paths, 1 extra, 1 shape mismatches, 1 dtype mismatches" in msg
    assert "missing ['new']" in msg
    assert "extra ['old']" in msg
    assert "['learner']['w']: checkpoint (4, 12) vs expected (4, 20)" in msg
    assert "['n']: checkpoint int32 vs expected float32" in msg
    assert str(p) in msg
    # allow_extra tolerates the unused entry but not the rest
    with pytest.raises(AgentGraphError) as e:
        load(p, template=template, allow_extra=True)
    assert "0 extra" in str(e.value)


def test_template_mismatch_message_is_bounded(tmp_path):
    p = tmp_path / "c.npz"
    save(p, {f"k{i:02d}": np.zeros(3) for i in range(20)}, metadata={})
    with pytest.raises(AgentGraphError) as e:
        load(p, template={f"k{i:02d}": np.zeros(4) for i in range(20)})
    msg = str(e.value)
    assert "20 shape mismatches" in msg and "... and 15 more shape" in msg
    assert msg.count("vs expected") == 5


def test_optimizer_state_for_another_architecture_is_refused(tmp_path):
    p = tmp_path / "c.npz"
    save(p, _train_state(), metadata={})
    params = {"layer": [{"w": jnp.zeros((4, 20)), "b": jnp.zeros(20)}, {"w": jnp.zeros((20, 3)), "b": jnp.zeros(3)}]}
    other = {"params": params, "opt_state": optax.adam(1e-3).init(params)}
    with pytest.raises(AgentGraphError, match=r"\['opt_state'\]\[0\]\.mu\['layer'\]\[0\]\['w'\]: "
                                              r"checkpoint \(4, 12\) vs expected \(4, 20\)"):
        load(p, template=other)


# ---------------------------------------------------------------------------------------------
# NaN refusal


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_tree_is_refused_and_previous_kept(tmp_path, bad):
    p = tmp_path / "c.npz"
    save(p, {"w": np.ones(3)}, metadata={"step": 1})
    before = _snapshot(p)
    tree = _train_state()
    tree["opt_state"][0].nu["layer"][1]["b"] = tree["opt_state"][0].nu["layer"][1]["b"].at[2].set(bad)
    tree["params"]["layer"][1]["w"] = tree["params"]["layer"][1]["w"].at[0, 0].set(bad)
    with pytest.raises(AgentGraphError, match=r"leaf \['opt_state'\]\[0\]\.nu\['layer'\]\[1\]\['b'\] "
                                              r"contains NaN or inf \(1 of 3 values\) \(and 1 more leaves\)"):
        save(p, tree, metadata={"step": 2})
    assert _snapshot(p) == before
    assert _tmp_files(tmp_path) == []


def test_nan_in_bfloat16_and_python_float_refused(tmp_path):
    with pytest.raises(AgentGraphError, match=r"\['h'\]"):
        save(tmp_path / "a.npz", {"h": jnp.asarray([jnp.nan], jnp.bfloat16)}, metadata={})
    with pytest.raises(AgentGraphError, match=r"\[1\]"):
        save(tmp_path / "b.npz", [1.0, float("nan")], metadata={})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# subtrees (protocol transfer)


def test_load_subtree_params_only(tmp_path):
    state = _train_state()
    p = tmp_path / "c.npz"
    save(p, state, metadata={"step": 3})
    params, meta = load_subtree(p, "['params']", template=_params())
    _assert_bit_exact(params, state["params"])
    assert meta == {"step": 3}
    same, _ = load_subtree(p, ("params", "layer", 1), template={"w": np.empty((12, 3), np.float32),
                                                                 "b": np.empty(3, np.float32)})
    assert _bits(same["w"]) == _bits(state["params"]["layer"][1]["w"])
    flat, _ = load_subtree(p, ["opt_state", 0, jax.tree_util.GetAttrKey("mu")])
    assert sorted(flat) == ["['layer'][0]['b']", "['layer'][0]['w']", "['layer'][1]['b']", "['layer'][1]['w']"]


def test_load_subtree_mismatch_uses_full_paths_and_allow_extra(tmp_path):
    p = tmp_path / "c.npz"
    save(p, _train_state(), metadata={})
    with pytest.raises(AgentGraphError, match=r"\['params'\]\['layer'\]\[0\]\['w'\]: checkpoint \(4, 12\) "
                                              r"vs expected \(4, 20\)"):
        load_subtree(p, "['params']", {"layer": [{"w": np.zeros((4, 20), np.float32),
                                                  "b": np.zeros(12, np.float32)}]})
    with pytest.raises(AgentGraphError, match=r"(?s)1 extra.*extra \['params'\]\['layer'\]\[1\]\['b'\]"):
        load_subtree(p, "['params']['layer'][1]", {"w": np.zeros((12, 3), np.float32)})
    part, _ = load_subtree(p, "['params']['layer'][1]", {"w": np.zeros((12, 3), np.float32)}, allow_extra=True)
    assert part["w"].shape == (12, 3)


def test_load_subtree_prefix_boundaries_and_missing_prefix(tmp_path):
    p = tmp_path / "c.npz"
    save(p, {"a": np.ones(1), "ab": np.zeros(2), "l": [np.ones(3)] * 12}, metadata={})
    assert list(load_subtree(p, "['a']")[0]) == [""]
    assert list(load_subtree(p, ["l", 1])[0]) == [""]  # not ['l'][10], ['l'][11]
    with pytest.raises(AgentGraphError, match=r"nothing under \"\['zz'\]\".*\['a'\], \['ab'\], \['l'\]"):
        load_subtree(p, "['zz']")


# ---------------------------------------------------------------------------------------------
# step files: naming, latest, rotation


def test_latest_picks_highest_step(tmp_path):
    assert latest(tmp_path) is None
    assert latest(tmp_path / "does-not-exist") is None
    for s in (9, 100, 10, 2):
        save_step(tmp_path, s, {"w": np.ones(1)}, keep=None)
    (tmp_path / "ckpt_99999999.npz.bak").write_bytes(b"")
    (tmp_path / ".ckpt_00099999.npz.tmp-x").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hi")
    assert latest(tmp_path) == step_path(tmp_path, 100)
    save_step(tmp_path, 123456789, {"w": np.ones(1)}, keep=None)  # more than 8 digits
    assert latest(tmp_path) == step_path(tmp_path, 123456789)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 9, 10, 100, 123456789]


def test_rotation_keeps_newest_n(tmp_path):
    paths = [save_step(tmp_path, s, {"w": np.full(2, float(s))}, {"seed": 0}, keep=3) for s in range(6)]
    assert paths[-1] == step_path(tmp_path, 5)
    assert sorted(f for f in os.listdir(tmp_path)) == [f"ckpt_{s:08d}.npz" for s in (3, 4, 5)]
    tree, meta = load(latest(tmp_path), template={"w": np.empty(2)})
    assert meta == {"seed": 0, "step": 5} and tree["w"].tolist() == [5.0, 5.0]
    save_step(tmp_path, 6, {"w": np.ones(2)}, keep=1)
    assert os.listdir(tmp_path) == ["ckpt_00000006.npz"]


def test_rotation_never_deletes_the_new_checkpoint(tmp_path):
    save_step(tmp_path, 100, {"w": np.ones(1)}, keep=None)  # e.g. left over from an earlier run
    new = save_step(tmp_path, 5, {"w": np.ones(1)}, keep=1)
    assert os.path.exists(new)


def test_bad_step_or_keep(tmp_path):
    with pytest.raises(AgentGraphError, match="step"):
        save_step(tmp_path, -1, {"w": np.ones(1)})
    with pytest.raises(AgentGraphError, match="keep"):
        save_step(tmp_path, 1, {"w": np.ones(1)}, keep=0)
    assert os.listdir(tmp_path) == []
