"""Plots (matplotlib, drawn off-screen into PNG files): evaluation results, meta-training runs
and agent graphs.

The evaluation plots take the dictionaries :func:`agentgraph.meta.evaluate.evaluate` returns —
``{"metric", "steps", "protocol": {"mean", "std"}, "sgd": {...}, "adam": {...}}``;
:func:`plot_run` reads a run directory's ``metrics.jsonl``; :func:`draw_graph` draws an
:class:`~agentgraph.AgentGraph`. Each writes one PNG. matplotlib is imported when a plot is
drawn, not when agentgraph is imported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from agentgraph.graph.draw import draw_graph

__all__ = ["draw_graph", "plot_curves", "plot_forgetting", "plot_frames", "plot_meta_curves", "plot_run"]

_COLORS = {"protocol": "tab:red", "sgd": "tab:blue", "adam": "tab:green", "maml": "tab:purple"}
_LABELS = {"protocol": "learned protocol", "sgd": "SGD", "adam": "Adam", "maml": "MAML"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: str) -> str:
    """Lay out ``fig``, write it to ``path`` (creating its directory), close it; returns ``path``."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(results: Mapping[str, Any] | Sequence[tuple[str, Mapping[str, Any]]], path: str, *, title: str = "",
                methods: Sequence[str] = ("protocol", "sgd", "adam"), percent: bool | None = None,
                labels: Mapping[str, str] | None = None, xlabel: str = "inner step") -> str:
    """Mean ± std of the metric after each inner step, one line per method; returns ``path``.

    Args:
        results: one evaluation result, or ``[(panel title, result), ...]`` for side-by-side panels.
        path: the PNG to write (its directory is created).
        title: figure title.
        methods: which methods of the result to draw (those present).
        percent: show accuracy in % (default: when the metric is accuracy).
        labels: legend names per method (default "learned protocol", "SGD", ...).
        xlabel: the x axis's label.

    Example:
        >>> import tempfile, os
        >>> r = {"metric": "accuracy", "steps": [0, 1, 2], "protocol": {"mean": [.1, .5, .7], "std": [0, .1, .1]},
        ...      "sgd": {"mean": [.1, .2, .3], "std": [0, .1, .1], "lr": 0.1}}
        >>> p = plot_curves(r, os.path.join(tempfile.mkdtemp(), "c.png"), title="demo")
        >>> os.path.getsize(p) > 1000
        True
    """
    panels = list(results) if not isinstance(results, Mapping) else [("", results)]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (ptitle, res) in zip(axes[0], panels):
        pct = res.get("metric") == "accuracy" if percent is None else percent
        scale = 100.0 if pct else 1.0
        for m in methods:
            if m not in res:
                continue
            mean = [scale * v for v in res[m]["mean"]]
            std = [scale * v for v in res[m]["std"]]
            steps = res.get("steps", list(range(len(mean))))
            label = {**_LABELS, **(labels or {})}.get(m, m) + (f" (lr {res[m]['lr']:g})" if "lr" in res[m] else "")
            ax.plot(steps, mean, color=_COLORS.get(m), label=label, lw=2)
            ax.fill_between(steps, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)],
                            color=_COLORS.get(m), alpha=0.15, lw=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(("test accuracy (%)" if pct else res.get("metric", "value")))
        if res.get("metric") == "loss":
            ax.set_yscale("log")
        ax.set_title(ptitle)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, plt, path)


def plot_meta_curves(curves: Mapping[str, Sequence[tuple[float, float]]], path: str, *, xlabel: str = "meta-step",
                     ylabel: str = "", title: str = "", hline: float | None = None, hline_label: str = "",
                     log: bool = False) -> str:
    """One line per named curve of ``(x, y)`` points (e.g. accuracy against meta-steps or CPU
    minutes); an optional horizontal reference line; ``log``: both axes logarithmic (runs of very
    different lengths, losses over decades). Returns ``path``.

    Example:
        >>> import tempfile, os
        >>> p = plot_meta_curves({"a": [(0, 0.1), (100, 0.4)]}, os.path.join(tempfile.mkdtemp(), "m.png"), hline=0.49)
        >>> os.path.exists(p)
        True
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, pts in curves.items():
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", ms=3, label=name)
    if hline is not None:
        ax.axhline(hline, color="k", ls="--", lw=1, label=hline_label or None)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def plot_forgetting(results: Mapping[str, Any], path: str, *, title: str = "") -> str:
    """The forgetting benchmark's result (``benchmarks/forgetting.py``'s JSON: ``{"rules": {rule:
    {sequence: {"R_mean": [T, T], ...}}}}``): per sequence, the accuracy on the first task after
    each task of the sequence (one line per rule) and the mean accuracy over the tasks seen so far.

    Example:
        >>> import tempfile, os
        >>> r = {"rules": {"sgd": {"split": {"R_mean": [[0.9, 0.5], [0.6, 0.95]]}}}}
        >>> os.path.exists(plot_forgetting(r, os.path.join(tempfile.mkdtemp(), "f.png")))
        True
    """
    import numpy as np

    plt = _pyplot()
    seqs = list(next(iter(results["rules"].values())))
    fig, axes = plt.subplots(len(seqs), 2, figsize=(10.0, 3.6 * len(seqs)), squeeze=False)
    for r, seq in enumerate(seqs):
        for rule, by_seq in results["rules"].items():
            R = np.asarray(by_seq[seq]["R_mean"])
            T = np.arange(1, R.shape[0] + 1)
            axes[r, 0].plot(T, 100 * R[:, 0], marker="o", ms=3, label=rule)
            axes[r, 1].plot(T, [100 * R[i, :i + 1].mean() for i in range(R.shape[0])], marker="o", ms=3, label=rule)
        axes[r, 0].set_title(f"{seq}: accuracy on task 1")
        axes[r, 1].set_title(f"{seq}: mean accuracy on the tasks seen")
        for ax in axes[r]:
            ax.set_xlabel("tasks learned")
            ax.set_ylabel("accuracy (%)")
            ax.grid(alpha=0.3)
    axes[0, 1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, plt, path)


def plot_frames(frames: Any, ticks: Sequence[int], path: str, *, title: str = "",
                target: Any = None, losses: Sequence[float] | None = None) -> str:
    """A row of RGBA images (e.g. a cellular automaton growing), the target beside them and the
    training loss under them; returns ``path``.

    Args:
        frames: ``[n, H, W, 4]`` premultiplied RGBA, one image per entry of ``ticks``.
        ticks: the label of each frame.
        path: the PNG to write (its directory is created).
        target: optional ``[H, W, 4]`` image drawn last.
        losses: optional training loss per step, drawn (log scale) under the frames.

    Example:
        >>> import tempfile, os, numpy as np
        >>> p = plot_frames(np.random.rand(3, 8, 8, 4), [0, 10, 20], os.path.join(tempfile.mkdtemp(), "f.png"))
        >>> os.path.getsize(p) > 1000
        True
    """
    import numpy as np

    plt = _pyplot()
    frames = np.asarray(frames)
    images = [(f"tick {t}", frames[i]) for i, t in enumerate(ticks)] + ([("target", np.asarray(target))] if target is not None else [])
    rows = 2 if losses is not None else 1
    fig = plt.figure(figsize=(1.6 * len(images), 1.9 + (2.2 if losses is not None else 0)))
    for i, (label, img) in enumerate(images):
        ax = fig.add_subplot(rows, len(images), i + 1)
        rgb = np.clip(1.0 - img[..., 3:4] + img[..., :3], 0.0, 1.0)  # premultiplied RGBA over white
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    if losses is not None:
        ax = fig.add_subplot(rows, 1, 2)
        ax.semilogy(np.arange(1, len(losses) + 1), losses, color="tab:red")
        ax.set_xlabel("training step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, plt, path)


def plot_run(run_dirs: str | Sequence[str], path: str, *, title: str = "") -> str:
    """Meta-training runs from their ``metrics.jsonl``, overlaid: the meta-loss (for one run also
    its held-out and hint losses) against meta-steps, and the periodic evaluation
    (``run.eval_every``; for ES runs the centre's fitness where logged) against meta-steps and
    against CPU minutes. Returns ``path``.

    Raises:
        AgentGraphError: a directory holds no ``metrics.jsonl`` rows.

    Example:
        >>> import tempfile, os, json
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        ...     for s in range(5):
        ...         row = {"step": s, "meta_loss": 2 - 0.1 * s, "cpu_seconds": 1.0, **({"eval": 0.1 * s} if s % 2 else {})}
        ...         _ = f.write(json.dumps(row) + "\\n")
        >>> os.path.exists(plot_run(d, os.path.join(d, "run.png")))
        True
    """
    from agentgraph.errors import AgentGraphError
    from agentgraph.rundir import read_metrics

    dirs = [run_dirs] if isinstance(run_dirs, str) else list(run_dirs)
    runs = []
    for d in dirs:
        rows = read_metrics(os.path.join(d, "metrics.jsonl"))
        if not rows:
            raise AgentGraphError(f"plot_run: {d!r} holds no metrics.jsonl rows; point it at a run's out_dir "
                                  "(run.out_dir of its config).")
        runs.append((os.path.basename(os.path.normpath(d)) or d, rows))
    has_eval = any(r.get("eval") is not None for _, rows in runs for r in rows)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3 if has_eval else 1, figsize=(15.0 if has_eval else 5.5, 3.6), squeeze=False)
    ax = axes[0][0]
    keys = (("meta_loss", "meta-loss"), ("centre_fitness", "ES centre fitness"), ("cv", "held-out loss"),
            ("hint", "hint loss")) if len(runs) == 1 else (("meta_loss", "meta-loss"), ("centre_fitness", "centre"))
    for name, rows in runs:
        for key, label in keys:
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, lw=1, label=label if len(runs) == 1 else f"{name} {label}" if key != "meta_loss" else name,
                        alpha=0.9 if key in ("meta_loss", "centre_fitness") else 0.6)
    ax.set_xlabel("meta-step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_eval:
        for name, rows in runs:
            cpu, pts_s, pts_c = 0.0, [], []
            for r in rows:
                cpu += float(r.get("cpu_seconds", r.get("seconds", 0.0)) or 0.0)
                if r.get("eval") is not None:
                    pts_s.append((r["step"], r["eval"]))
                    pts_c.append((cpu / 60, r["eval"]))
            for ax2, pts in ((axes[0][1], pts_s), (axes[0][2], pts_c)):
                if pts:
                    xs, ys = zip(*pts)
                    ax2.plot(xs, ys, marker="o", ms=3, label=name)
        for ax2, xl in ((axes[0][1], "meta-step"), (axes[0][2], "CPU minutes")):
            ax2.set_xlabel(xl)
            ax2.set_ylabel("evaluation (run.eval_every)")
            ax2.grid(alpha=0.3)
            ax2.legend(fontsize=8)
    fig.suptitle(title or ", ".join(f"{n}: {len(rows)} meta-steps" for n, rows in runs), fontsize=10)
    return _save(fig, plt, path)
