"""benchmarks/blur_vs_authors.py without the authors' files: a clear error naming the missing
files; the TensorFlow stand-in raises when called; the genome and synapse-matrix mapping."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))
import blur_vs_authors as bva  # noqa: E402


def test_missing_authors_files_are_named(tmp_path):
    (tmp_path / "blur.py").write_text("")
    with pytest.raises(SystemExit, match=r"blur_env\.py.*genome_util\.py.*synapse_util\.py"):
        bva.load_authors(tmp_path)


def test_tensorflow_stand_in_raises_when_called():
    tf = bva._Absent("tensorflow.compat.v1")
    assert repr(tf.math.atanh) == "<absent tensorflow.compat.v1.math.atanh>"
    with pytest.raises(RuntimeError, match="TensorFlow is not installed"):
        tf.nn.relu(1.0)


def test_mapping_of_the_authors_tensors():
    k, sizes = 2, (3, 2)
    genome, syn, x, y = bva.random_problem(sizes, k, 4, 0)
    g = bva.ours_genome(genome, k)
    T = genome["transform"][0]
    a = np.array([0.3, -0.7])
    # their forward message: Σ_k a_k T[k, k + l]; ours: (ν a)_l
    np.testing.assert_allclose(g["nu"] @ a, a @ T[:k, k:])
    np.testing.assert_allclose(g["mu"] @ a, a @ T[k:, :k])
    F, b, Bk = bva._blocks(syn[0][0, 0], sizes[0])
    assert F.shape == (3, 2, k) and b.shape == (2, k) and Bk.shape == (2, 3, k)
    assert x.shape == (4, 3) and set(np.unique(y)) <= {0.0, 1.0}
