"""benchmarks/bench_gpu.py runs every part of issue 36's GPU figures (here on the CPU, --small)."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import bench_gpu


def test_bench_gpu_small_runs_every_figure(tmp_path):
    assert bench_gpu.main(["--small", "--out-dir", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "gpu-issue36.json").read_text())
    assert res["small"] is True
    for part in ("sinusoid", "mnist"):  # a meta-step, its floor and their ratio
        r = res[part]
        assert "error" not in r, r
        assert len(r["meta_step_runs_s"]) == 2 and r["meta_step_median_s"] > 0
        assert r["learner_flops_per_meta_step"] > 0 and r["floor_s"] > 0
        assert r["ratio_to_floor"] == pytest.approx(r["meta_step_median_s"] / r["floor_s"])
    assert res["mnist"]["overrides"]["data.task"] == "digits"  # no download in the small setting
    assert "learner_fraction_of_card_rate_same_shape" in res["mnist"]
    m = res["maml_mplp"]  # engine against the hand-written dense MAML + MPLP, same tasks
    assert "error" not in m, m
    assert len(m["engine_runs_s"]) == len(m["dense_runs_s"]) == 2
    assert m["time_ratio"] == pytest.approx(m["engine_s"] / m["dense_s"])
    assert m["first_meta_loss"]["engine"] == pytest.approx(m["first_meta_loss"]["dense"], rel=1e-4)
    assert m["floor_s"] > 0 and m["engine_ratio_to_floor"] == pytest.approx(m["engine_s"] / m["floor_s"])
    assert "train" not in res  # --small trains nothing unless asked


def test_bench_gpu_refuses_a_cpu_without_small(tmp_path):
    assert bench_gpu.main(["--out-dir", str(tmp_path)]) == 2
