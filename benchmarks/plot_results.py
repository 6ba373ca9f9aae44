"""Figures of docs/results/, from the evaluation JSONs `agentgraph eval --out` wrote.

Run:  python benchmarks/plot_results.py sinusoid EVAL.json OUT.png
      python benchmarks/plot_results.py maml MPLP_MAML_EVAL.json MAML_EVAL.json OUT.png
      python benchmarks/plot_results.py meta METRICS.jsonl|SUMMARY.json [...] --names A B --out OUT.png
      python benchmarks/plot_results.py curves EVAL.json OUT.png [--title T]
      python benchmarks/plot_results.py cpu METRICS.jsonl|SUMMARY.json [...] --names A B --out OUT.png

``sinusoid``: two panels, the training loss on the points seen so far and the evaluation loss on
100 evenly spaced points, per inner step. ``maml``: MPLP + MAML prior against MAML (SGD from its
prior). ``meta``: the periodic evaluation (``eval`` in metrics.jsonl) against meta-steps.
``curves``: one evaluation's MPLP, SGD and Adam curves per inner step. ``cpu``: the meta-loss
against cumulative CPU minutes (runs of different meta-optimisers at equal compute). ``meta`` and
``cpu`` read a finished run's summary (``benchmarks/results/runs/<study>/<run>.json``, written by
``benchmarks/summarise_runs.py``) where its ``metrics.jsonl`` is gone: every periodic evaluation,
and at most 200 of its meta-steps for ``cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agentgraph.plots import plot_curves, plot_meta_curves  # noqa: E402


def _load(path: str) -> dict:
    """An evaluation JSON; those written before the Protocol contract name the protocol's
    results "mplp" where today's name them "protocol"."""
    with open(path) as f:
        res = json.load(f)
    if "mplp" in res and "protocol" not in res:
        res["protocol"] = res.pop("mplp")
    return res


def _seen(res: dict) -> dict:
    out = {"metric": res["metric"], "steps": res["steps"][1:]}
    for m in ("protocol", "sgd", "adam"):
        if m in res:
            out[m] = {"mean": res[m]["seen_mean"], "std": res[m]["seen_std"], **({"lr": res[m]["lr"]} if "lr" in res[m] else {})}
    return out


def _summary(path: str) -> dict:
    """A run summary written by benchmarks/summarise_runs.py."""
    with open(path) as f:
        return json.load(f)


def _name(path: str) -> str:
    """A curve's default name: the run directory's name, or a summary's file name."""
    if path.endswith(".json"):
        return os.path.splitext(os.path.basename(path))[0]
    return os.path.basename(os.path.dirname(path)) or path


def _labels(res: dict) -> dict:
    """The legend name of an MPLP evaluation's protocol, as these figures always had it."""
    return {"protocol": "MPLP (no gradient)"} if res.get("rule", "mplp") == "mplp" else {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["sinusoid", "maml", "meta", "curves", "cpu"])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--names", nargs="*", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    if a.what == "sinusoid":
        res, out = _load(a.files[0]), a.out or a.files[1]
        plot_curves([("training loss, points seen so far", _seen(res)), ("evaluation loss, 100 points", res)], out,
                    title=a.title or "sinusoid: MPLP vs Adam", methods=("protocol", "adam"), labels=_labels(res))
    elif a.what == "maml":
        r1, r2 = _load(a.files[0]), _load(a.files[1])
        out = a.out or a.files[2]
        both = {"metric": r1["metric"], "steps": r1["steps"], "protocol": r1["protocol"], "maml": r2["protocol"]}
        seen = {"metric": r1["metric"], "steps": r1["steps"][1:],
                "protocol": {"mean": r1["protocol"]["seen_mean"], "std": r1["protocol"]["seen_std"]},
                "maml": {"mean": r2["protocol"]["seen_mean"], "std": r2["protocol"]["seen_std"]}}
        plot_curves([("training loss, points seen so far", seen), ("evaluation loss, 100 points", both)], out,
                    title=a.title or "sinusoid, 2 steps: MPLP + MAML prior vs MAML", methods=("protocol", "maml"),
                    labels={"protocol": "MPLP + learned prior (no gradient)", "maml": "MAML (SGD 0.05 from its prior)"})
    elif a.what == "curves":
        out = a.out or a.files[1]
        res = _load(a.files[0])
        plot_curves(res, out, title=a.title, labels=_labels(res))
    elif a.what == "cpu":
        names = a.names or [_name(f) for f in a.files]
        curves = {}
        for name, path in zip(names, a.files):
            if path.endswith(".json"):  # a run summary: its (thinned) meta-steps with cumulative CPU minutes
                rows = _summary(path)["curve"]["rows"]
                curves[name] = [(r[2], r[3]) for r in rows]
                continue
            with open(path) as f:
                by_step = {r["step"]: r for r in (json.loads(ln) for ln in f if ln.strip())}  # a resumed step: last
            cpu, pts = 0.0, []
            for step in sorted(by_step):
                r = by_step[step]
                cpu += r.get("cpu_seconds", 0.0) + r.get("setup_cpu_seconds", 0.0)
                pts.append((cpu / 60.0, r["meta_loss"]))
            curves[name] = pts
        out = a.out or "cpu.png"
        plot_meta_curves(curves, out, xlabel="CPU minutes", ylabel="meta-loss", title=a.title)
    else:
        names = a.names or [_name(f) for f in a.files]
        curves = {}
        for name, path in zip(names, a.files):
            if path.endswith(".json"):  # a run summary: every periodic evaluation
                curves[name] = [(p[0], 100 * p[3]) for p in _summary(path)["eval"]["rows"]]
                continue
            with open(path) as f:
                rows = [json.loads(ln) for ln in f if ln.strip()]
            curves[name] = [(r["step"] + 1, 100 * r["eval"]) for r in rows if "eval" in r]
        out = a.out or "meta.png"
        plot_meta_curves(curves, out, ylabel="accuracy after the last inner step (%)", title=a.title,
                         hline=48.95, hline_label="paper, MPLP (48.95 %)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
