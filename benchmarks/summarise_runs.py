"""Compact summaries of long meta-training runs: what the results need, without the run state.

Run:  python benchmarks/summarise_runs.py [--root benchmarks/long_runs] [--out benchmarks/results/runs]
          [STUDY/RUN ...]

For every run directory ``ROOT/<study>/<run>/`` that holds a ``metrics.jsonl`` this writes
``OUT/<study>/<run>.json``: the run's config (from its newest checkpoint), its length and CPU
minutes, every periodic evaluation (``eval``), the meta-loss as means over windows of 50
meta-steps (wider for runs of more than 10,000 steps: at most 200 windows), at most 200 raw
meta-steps (first and last kept) with cumulative minutes, the first and last 50 steps' mean of each
logged quantity, and any 100-network evaluation already recorded for it (``final_eval_100.json``
in the run directory, or a file named in ``FINAL_EVALS``). A run resumed from a checkpoint whose
earlier metrics were removed (only its newest checkpoint kept) is summarised as the old summary up
to the checkpoint plus the new rows.

``benchmarks/plateau.py ... report`` and ``benchmarks/plot_results.py cpu|meta`` read these
summaries where a run's ``metrics.jsonl`` is gone. The rule (benchmarks/long_runs/README.md):
run state is committed only while a run is being continued; a finished run keeps its summary,
its exported protocol where a result uses it, and its plots.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FORMAT = "agentgraph-run-summary"
VERSION = 1
MAX_POINTS = 200
PROTOCOLS = os.path.join(ROOT, "benchmarks", "results", "protocols")  # `agentgraph export` of runs results use
WINDOW = 50  # meta-loss means over this many meta-steps, as plateau.py has always drawn them

# 100-network evaluations recorded outside the run directory (docs/results/es.md), by study/run
FINAL_EVALS = {
    "es/mplp-gradient_s0": "benchmarks/results/es_mplp-gradient_eval.json",
    "es/mplp-openes_s0": "benchmarks/results/es_mplp-openes_eval.json",
    "es/mplp-mnist-step-openes_s0": "benchmarks/results/es_step_openes_eval.json",
}

_CKPT = re.compile(r"ckpt_(\d+)\.npz$")
_QUANTITIES = ("meta_loss", "cv", "hint", "inner_first", "inner_last", "best_fitness")


def _g(x: float) -> float:
    return float(f"{x:.6g}")


def _checkpoints(run_dir: str) -> list[tuple[int, str]]:
    if not os.path.isdir(run_dir):
        return []
    found = [(int(m.group(1)), f) for f in os.listdir(run_dir) if (m := _CKPT.fullmatch(f))]
    return [(s, os.path.join(run_dir, f)) for s, f in sorted(found)]


def checkpoint_header(path: str) -> dict:
    """The metadata (config, step) a checkpoint was written with, read without loading its arrays."""
    with np.load(path, allow_pickle=False) as z:
        if "__checkpoint__" in z.files:
            return json.loads(z["__checkpoint__"].tobytes().decode("utf-8"))["metadata"]
        return json.loads(z["__metadata__"].tobytes().decode("utf-8"))


def _thin(rows: list, n: int = MAX_POINTS) -> list:
    """At most ``n`` of ``rows``, evenly spaced, the first and the last kept."""
    if len(rows) <= n:
        return list(rows)
    idx = sorted({round(i * (len(rows) - 1) / (n - 1)) for i in range(n)})
    return [rows[i] for i in idx]


def _warm(r: dict) -> bool:
    return bool(r.get("warm_start") or r.get("imitation"))  # older runs: "imitation"


def _stats(rows: list[dict], minutes: float = 0.0, cpu_minutes: float = 0.0) -> dict:
    """Cumulative minutes, evaluation points and raw points of ``rows`` (minutes counted on from
    the given offsets)."""
    evals, raw, cum = [], [], {}
    for r in rows:
        minutes += (r["seconds"] + r.get("setup_seconds", 0.0)) / 60.0
        setup_cpu = r.get("setup_cpu_seconds", r.get("setup_seconds", 0.0))
        cpu_minutes += (r.get("cpu_seconds", r["seconds"]) + setup_cpu) / 60.0
        cum[r["step"]] = (minutes, cpu_minutes)
        if "eval" in r:
            evals.append([r["step"] + 1, round(minutes, 3), round(cpu_minutes, 3), _g(r["eval"]),
                          "imitation" if _warm(r) else "meta"])
        raw.append([r["step"], round(minutes, 3), round(cpu_minutes, 3), _g(r["meta_loss"]),
                    _g(r["cv"]) if "cv" in r else None, int(_warm(r))])
    return {"evals": evals, "raw": raw, "cum": cum, "minutes": minutes, "cpu_minutes": cpu_minutes}


def _windows(rows: list[dict], width: int) -> list[list]:
    meta = [r for r in rows if not _warm(r) and r.get("finite", True)]
    return [[meta[i]["step"] + 1, _g(sum(r["meta_loss"] for r in meta[i:i + width]) / len(meta[i:i + width]))]
            for i in range(0, len(meta), width)]  # means at each window's first step


def _ends(rows: list[dict]) -> dict:
    out = {}
    for name, part in (("first", rows[:WINDOW]), ("last", rows[-WINDOW:])):
        out[name] = {"steps": [part[0]["step"], part[-1]["step"]]} if part else {}
        for q in _QUANTITIES:
            v = [r[q] for r in part if q in r and r.get("finite", True)]
            if v:
                out[name][q] = _g(sum(v) / len(v))
    return out


def _final_eval(run_dir: str, key: str) -> dict | None:
    for path in (os.path.join(run_dir, "final_eval_100.json"), os.path.join(ROOT, FINAL_EVALS.get(key, "\0"))):
        if os.path.exists(path):
            with open(path) as f:
                res = json.load(f)
            if "mplp" in res and "protocol" not in res:
                res["protocol"] = res.pop("mplp")
            if path.endswith("final_eval_100.json"):
                res["source"] = os.path.relpath(path, ROOT)
            else:
                res["source"] = FINAL_EVALS[key]
                res.setdefault("checkpoint", os.path.relpath(_checkpoints(run_dir)[-1][1], ROOT))
            m = _CKPT.search(res.get("checkpoint", ""))
            res["checkpoint_step"] = int(m.group(1)) if m else None
            return res
    return None


def summarise(run_dir: str, study: str, run: str, rows: list[dict], prior: dict | None = None) -> dict:
    """The summary of a run from its metrics ``rows``; ``prior``: the run's earlier summary, needed
    when ``rows`` start after meta-step 0 (a run resumed after its older metrics were removed)."""
    start = rows[0]["step"] if rows else 0
    evals, raw, windows, base = [], [], [], None
    if start > 0:
        if prior and prior.get("checkpoint_step") == start - 1 and prior.get("at_checkpoint"):
            base = {"step": start, **prior["at_checkpoint"], "imitation_steps": min(prior["imitation_steps"], start),
                    "non_finite_steps": prior["non_finite_steps"], "first": prior["first_last_50"]["first"]}
        elif prior and (prior.get("continued_from") or {}).get("step") == start:  # summarised again
            base = prior["continued_from"]
        else:
            raise SystemExit(f"{run_dir}: metrics start at meta-step {start}, and there is no summary up to "
                             f"checkpoint {start - 1} to continue from")
        evals = [p for p in prior["eval"]["rows"] if p[0] <= start]
        raw = [p for p in prior["curve"]["rows"] if p[0] < start]
        windows = [w for w in prior["meta_loss"]["rows"] if w[0] <= start]
    m0, c0 = (base["minutes"], base["cpu_minutes"]) if base else (0.0, 0.0)
    n_prior = start
    n = n_prior + len(rows)
    st = _stats(rows, m0, c0)
    if start == 0:
        width = WINDOW * max(1, math.ceil(n / (WINDOW * MAX_POINTS)))  # at most MAX_POINTS windows
        windows = _windows(rows, width)
    else:  # the earlier windows, then the new rows' in the same width; merged k by k past MAX_POINTS
        width = prior["meta_loss"]["window"]
        windows += _windows(rows, width)
        k = math.ceil(len(windows) / MAX_POINTS)
        if k > 1:
            windows = [[windows[i][0], _g(sum(w[1] for w in windows[i:i + k]) / len(windows[i:i + k]))]
                       for i in range(0, len(windows), k)]
            width *= k
    ckpts = _checkpoints(run_dir)
    header = (checkpoint_header(ckpts[-1][1]) if ckpts else
              {**(prior or {}).get("checkpoint_header", {}), "config": (prior or {}).get("config")})
    ckpt_step = ckpts[-1][0] if ckpts else (prior or {}).get("checkpoint_step")
    at = st["cum"].get(ckpt_step) if ckpt_step is not None else None
    if at is None and base is not None and ckpt_step == base["step"] - 1:  # resumed, no new checkpoint yet
        at = (base["minutes"], base["cpu_minutes"])
    ends = _ends(rows)
    if base is not None:
        ends["first"] = base["first"]
    key = f"{study}/{run}"
    final = _final_eval(run_dir, key) or (prior or {}).get("final_eval")
    exported = os.path.join(PROTOCOLS, study, f"{run}.npz")
    return {
        "format": FORMAT, "version": VERSION, "study": study, "run": run,
        "run_dir": os.path.relpath(os.path.abspath(run_dir), ROOT),
        "config": header.get("config"),
        "checkpoint_header": {k: v for k, v in header.items() if k != "config"},
        "steps": n, "last_step": n_prior + len(rows) - 1 if rows else None,
        "imitation_steps": (base["imitation_steps"] if base else 0) + sum(_warm(r) for r in rows),
        "non_finite_steps": (base["non_finite_steps"] if base else 0) + sum(not r.get("finite", True) for r in rows),
        "minutes": round(st["minutes"], 3), "cpu_minutes": round(st["cpu_minutes"], 3),
        "checkpoint_step": ckpt_step,
        "exported_protocol": os.path.relpath(exported, ROOT) if os.path.exists(exported) else None,
        "at_checkpoint": {"minutes": round(at[0], 3), "cpu_minutes": round(at[1], 3)} if at else None,
        "eval": {"columns": ["step", "minutes", "cpu_minutes", "score", "phase"],
                 "note": "periodic evaluations; step = meta-step + 1 (imitation steps included)",
                 "rows": evals + st["evals"]},
        "meta_loss": {"window": width, "columns": ["step", "mean"],
                      "note": f"mean meta-loss over {width} meta-steps (imitation and non-finite steps left out), "
                              "at each window's first step (+1)",
                      "rows": windows},
        "curve": {"columns": ["step", "minutes", "cpu_minutes", "meta_loss", "cv", "warm_start"],
                  "note": f"at most {MAX_POINTS} of the run's meta-steps, evenly spaced, first and last kept; "
                          "minutes cumulative (meta-steps + set-up)",
                  "rows": _thin(raw + st["raw"])},
        "first_last_50": ends,
        "final_eval": final,
        "continued_from": base,
    }


def curve(summary: dict) -> dict:
    """What ``plateau.py report`` draws and tabulates, from a summary."""
    return {"points": [{"step": s, "minutes": m, "cpu_minutes": c, "score": v, "phase": ph}
                       for s, m, c, v, ph in summary["eval"]["rows"]],
            "steps": summary["steps"], "imitation_steps": summary["imitation_steps"],
            "minutes": summary["minutes"], "cpu_minutes": summary["cpu_minutes"],
            "meta_loss": [tuple(w) for w in summary["meta_loss"]["rows"]]}


def read_metrics(path: str) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (``[]`` if there is none; a last line torn by a kill is
    dropped), as :func:`agentgraph.rundir.read_metrics` reads them, without importing agentgraph."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [ln for ln in f.read().split("\n") if ln.strip()]
    rows = []
    for i, ln in enumerate(lines):
        try:
            rows.append(json.loads(ln))
        except ValueError:
            if i == len(lines) - 1:
                break
            raise SystemExit(f"{path}, line {i + 1}: not JSON") from None
    return rows


def summary_path(out: str, study: str, run: str) -> str:
    return os.path.join(out, study, f"{run}.json")


def load(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        s = json.load(f)
    if s.get("format") != FORMAT:
        raise SystemExit(f"{path} is not a run summary")
    return s


def summarise_dir(run_dir: str, study: str, run: str, out: str) -> dict | None:
    """Summarise one run directory into ``out`` (``None`` where it holds no metrics)."""
    rows = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    if not rows:
        return None
    path = summary_path(out, study, run)
    s = summarise(run_dir, study, run, rows, load(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(s, f, separators=(",", ":"))
        f.write("\n")
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="STUDY/RUN (default: every run directory under --root)")
    ap.add_argument("--root", default=os.path.join(ROOT, "benchmarks", "long_runs"))
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "runs"))
    a = ap.parse_args(argv)
    names = a.runs or [f"{s}/{r}" for s in sorted(os.listdir(a.root)) if os.path.isdir(os.path.join(a.root, s))
                       for r in sorted(os.listdir(os.path.join(a.root, s)))
                       if os.path.isdir(os.path.join(a.root, s, r))]
    for name in names:
        study, run = name.split("/")
        s = summarise_dir(os.path.join(a.root, study, run), study, run, a.out)
        if s is None:
            print(f"{name}: no metrics.jsonl (kept only to be continued, or not started): its summary is left as it is")
            continue
        path = summary_path(a.out, study, run)
        print(f"{name}: {s['steps']} steps, {s['cpu_minutes']:.1f} CPU-min, {len(s['eval']['rows'])} evaluations"
              f"{', final evaluation recorded' if s['final_eval'] else ''} -> {os.path.relpath(path)} "
              f"({os.path.getsize(path) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
