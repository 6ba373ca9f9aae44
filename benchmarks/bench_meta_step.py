"""Meta-step timing, variant against variant, in alternating fresh processes.

Run:  python benchmarks/bench_meta_step.py [--config examples/configs/mnist.yaml] [--rounds 3] [--steps 5]
          [--variants baseline,premap,...] [--reference-cmd "CMD"] [--out benchmarks/results/meta_step-cpu.json]

Each *variant* is a set of config overrides and environment variables (XLA flags, threads).
Every round runs every variant once, each in a fresh Python process (XLA flags are per
process): compile + one meta-step, then the median of ``--steps`` more meta-steps and the
process's peak RSS. Variants alternate within a round, so they share the machine's noise; the
table reports the median over rounds and each variant's ratio to the first one.

``--tree NAME=PATH`` adds a variant that runs another checkout of agentgraph (e.g. a ``git
worktree`` of the commit before a change) with no overrides — before/after in one alternation.
The worker runs with that tree's API, the Protocol/Context one or the one before it (``--set``
overrides and the config are given in today's schema; MPLP's options move back under ``meta:``).

``--reference-cmd`` adds an external program to the alternation (e.g. another implementation
of the same meta-step): it must print, as its last line, a JSON object with ``median_step_s``.

``--worker`` (internal) runs one variant in this process and prints its JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

#: name -> (config overrides, environment); the first of a run is the baseline of its ratios.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "baseline": ({}, {}),
    "premap": ({"protocol.premap": True}, {}),
    "remat-none": ({"meta.remat": "none"}, {}),
    "remat-learner": ({"meta.remat": "learner"}, {}),
    "remat-dots": ({"meta.remat": "dots"}, {}),
    "xla-no-ynn": ({}, {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}),
    "xla-onednn": ({}, {"XLA_FLAGS": "--xla_cpu_experimental_onednn_fusion_type=dot "
                                     "--xla_cpu_experimental_ynn_fusion_type="}),
    "hugepages": ({}, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),
    # with --set meta.outer_batch=4: an outer batch's tasks vmapped, or one after another
    "outer-vmap": ({"meta.outer_map": "vmap"}, {}),
    # one thread for XLA's CPU kernels: two such runs share a 2-core machine without slowing each other
    "one-thread": ({}, {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}),
    "outer-map": ({"meta.outer_map": "map"}, {}),
    "hugepages+onednn": ({}, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
                              "XLA_FLAGS": "--xla_cpu_experimental_onednn_fusion_type=dot "
                                           "--xla_cpu_experimental_ynn_fusion_type="}),
    "hugepages+premap": ({"protocol.premap": True}, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),
    "hugepages+remat-learner": ({"meta.remat": "learner"}, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),
    "hugepages+onednn-eltwise": ({}, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
                                      "XLA_FLAGS": "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise "
                                                   "--xla_cpu_experimental_ynn_fusion_type="}),
    "hugepages+unrolled-none": ({"meta.inner_loop": "unrolled", "meta.remat": "none"},
                                {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),
    "premap+onednn": ({"protocol.premap": True}, {"XLA_FLAGS": "--xla_cpu_experimental_onednn_fusion_type=dot "
                                                              "--xla_cpu_experimental_ynn_fusion_type="}),
}


#: MPLP's options that the Protocol contract moved from ``meta:`` into ``protocol:``.
_MOVED = ("imitation_steps", "imitation_lr", "imitation_unroll", "imitation_meta_lr", "calibration_rounds",
          "calibration_blend", "grad_input_anneal")


def _old_tree_config(path: str, overrides: dict):
    """The config at ``path`` (today's schema) with ``overrides``, validated by a tree from before
    the Protocol contract: MPLP's options back under ``meta:``, the SGD rule's ``lr`` as ``sgd_lr``."""
    from pathlib import Path

    from agentgraph.meta.config import parse_config

    text = Path(path).read_text()
    if path.endswith(".toml"):
        import tomllib

        data = tomllib.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    for dotted, value in overrides.items():
        node = data
        *head, last = dotted.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    proto, meta = dict(data.get("protocol", {})), dict(data.get("meta", {}))
    meta.update({k: proto.pop(k) for k in _MOVED if k in proto})
    if proto.get("rule") == "sgd" and "lr" in proto:
        proto["sgd_lr"] = proto.pop("lr")
    return parse_config({**data, "protocol": proto, "meta": meta}, repr(path))


def _before_sections(path: str, overrides: dict) -> str:
    """The config at ``path`` (today's schema) with ``overrides``, written in the layout from before
    the config sections (issue 31 item 4) into a temporary YAML file; returns its path."""
    import tempfile

    import yaml

    from agentgraph.meta.config import apply_overrides

    with open(path) as f:
        data = apply_overrides(yaml.safe_load(f) or {}, overrides)
    meta = data.setdefault("meta", {})
    obj = meta.get("objective")
    if isinstance(obj, dict):
        meta["objective"] = obj.get("kind", "hint_cv")
        meta.update({k: v for k, v in obj.items() if k in ("hint_weight", "cv_weight")})
    sched = data.pop("schedules", {}) or {}
    for new, old in (("unroll", "curriculum"), ("truncation", "truncation"), ("meta_lr", "meta_lr_schedule")):
        if new in sched:
            meta[old] = sched[new]
    net = data.get("net", {})
    if "pool" in net:
        meta["graph_pool"] = net.pop("pool")
    cont = data.get("data", {}).pop("continual", None)
    if cont:
        data["data"]["sequence"] = cont.get("tasks", 1)
    out = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump(data, out)
    out.close()
    return out.name


def worker(config: str, overrides: dict, steps: int, root: str = ROOT, return_params: bool = False) -> dict:
    """One variant in this process, with the agentgraph of ``root`` — whichever API it has: the
    Protocol/Context one (``make_context``; the meta-step takes the compiled program) or the one
    before it (``make_setup``; the meta-step takes ``(state, step)``)."""
    import resource

    sys.path.insert(0, root)
    import jax
    import numpy as np

    from agentgraph.meta.config import load_config
    from agentgraph.meta.tasks import task_family
    from agentgraph.meta.train import init_training_shapes, make_meta_step

    try:
        from agentgraph.meta.context import make_context
    except ImportError:  # a tree from before the Protocol contract
        from agentgraph.meta.setup import make_setup

        cfg = _old_tree_config(config, overrides)
        ctx = make_setup(cfg)
        program = ()
    else:
        try:
            cfg = load_config(config, overrides)
        except Exception:  # a tree from before the config sections
            cfg = load_config(_before_sections(config, overrides))
        ctx = make_context(cfg)
        program = (ctx.program,)
    family = task_family(cfg)
    import inspect

    new_api = "cfg" not in inspect.signature(make_meta_step).parameters  # the ctx-only API (ctx carries cfg)
    ts = init_training_shapes(ctx) if new_api else init_training_shapes(cfg, ctx)
    try:  # compile, hand the compiler's freed memory back, run: as `agentgraph train` does
        from agentgraph.meta.train import _release_after_compile
    except ImportError:  # older trees
        _release_after_compile = lambda f: f  # noqa: E731
    step = _release_after_compile(make_meta_step(ctx, family) if new_api else make_meta_step(cfg, ctx, family))
    try:  # the state and program replicated over the device mesh, as `agentgraph train` does
        from agentgraph.meta.devices import device_mesh, replicate

        ts, program = replicate((ts, program), device_mesh())
    except ImportError:  # trees from before devices.py
        pass
    t0 = time.perf_counter()
    jax.block_until_ready(step(ts, 0, *program))
    first = time.perf_counter() - t0
    times = []
    for s in range(1, steps + 1):
        t0 = time.perf_counter()
        ts, m, _ = step(ts, s, *program)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    res = {"first_step_s": first, "median_step_s": float(np.median(times)), "step_times_s": times,
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
           "devices": jax.device_count()}
    if return_params:
        res["params"] = np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree.leaves(ts.trainable)]).tolist()
    return res


def _run(cmd: list[str] | str, env: dict, shell: bool = False) -> dict:
    full = {**os.environ, **env}
    out = subprocess.run(cmd, env=full, shell=shell, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in out.stdout.strip().splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"variant command failed ({out.returncode}): {cmd}\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/configs/mnist.yaml")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {sorted(VARIANTS)}")
    ap.add_argument("--set", action="append", default=[], help="extra override field=value for every variant")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                    help="also time the agentgraph checkout at PATH as variant NAME")
    ap.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    ap.add_argument("--reference-cmd", default=None, help="external command timed in the same alternation")
    ap.add_argument("--reference-name", default="reference")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--return-params", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.config, json.loads(a.overrides), a.steps, a.root, a.return_params)), flush=True)
        return 0
    extra = {}
    for item in a.set:
        k, v = item.split("=", 1)
        extra[k] = json.loads(v) if v[:1] in "0123456789-[{tf\"" else v
    names = [n for n in a.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    trees = dict(t.split("=", 1) for t in a.tree)
    names = [*trees, *names]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    if a.reference_cmd:
        runs[a.reference_name] = []
    for r in range(a.rounds):
        for n in names:
            over, env = VARIANTS.get(n, ({}, {}))
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--config", a.config,
                   "--steps", str(a.steps), "--overrides", json.dumps({**extra, **over}),
                   "--root", os.path.abspath(trees.get(n, ROOT))]
            res = _run(cmd, env)
            runs[n].append(res)
            print(f"round {r}: {n:14s} median {res['median_step_s']:.3f} s  first {res['first_step_s']:.1f} s  "
                  f"peak RSS {res['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
        if a.reference_cmd:
            res = _run(a.reference_cmd, {}, shell=True)
            runs[a.reference_name].append(res)
            print(f"round {r}: {a.reference_name:14s} median {res['median_step_s']:.3f} s", flush=True)
    base = statistics.median(x["median_step_s"] for x in runs[names[0]])
    summary = {}
    for n, rs in runs.items():
        med = statistics.median(x["median_step_s"] for x in rs)
        rss = [x.get("peak_rss_bytes") or (x["peak_rss_mb"] * 2**20 if "peak_rss_mb" in x else None) for x in rs]
        summary[n] = {"median_step_s": med, "ratio_to_first": med / base, "round_medians_s": [x["median_step_s"] for x in rs],
                      "peak_rss_bytes": max((v for v in rss if v), default=None),
                      "overrides": VARIANTS.get(n, ({}, {}))[0], "env": VARIANTS.get(n, ({}, {}))[1],
                      "tree": trees.get(n)}
    print(f"\n{'variant':16s} {'median s':>9s} {'ratio':>7s} {'peak RSS GiB':>13s}")
    for n, v in summary.items():
        rss = f"{v['peak_rss_bytes'] / 2**30:.2f}" if v["peak_rss_bytes"] else "-"
        print(f"{n:16s} {v['median_step_s']:9.3f} {v['ratio_to_first']:7.3f} {rss:>13s}")
    result = {"config": a.config, "rounds": a.rounds, "steps": a.steps, "extra_overrides": extra,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "reference_cmd": a.reference_cmd, "variants": summary}
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
