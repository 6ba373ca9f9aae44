"""Where the time of one meta-step goes, and the floor it is measured against.

Run:  python benchmarks/profile_meta_step.py [--config examples/configs/mnist.yaml] [--set field=value ...]
          [--out benchmarks/results/profile-mnist-cpu.json]

1. **FLOPs**: the learners' matmul FLOPs of one meta-step, counted from the compiled plan (rows
   of every backward block × the learner's multiply-adds per row): one forward pass per inner
   step, one recomputation under ``jax.checkpoint`` (``meta.remat``) and two for the backward
   pass (gradients to inputs and to weights).
2. **Matmul rate** of this machine for the biggest block's learner shapes (``[rows, in] @ [in,
   out]`` and the weight-gradient form ``[rows, in]^T @ [rows, out]``), each alone: the *floor*
   is FLOPs / that rate.
3. **Profile**: a ``jax.profiler`` trace of two meta-steps, every XLA operation classified —
   matmul (dots and library dot fusions), elementwise fusions, copies/transposes, slices and
   gathers, reductions — and by phase: forward, recomputation, backward (from the operation's
   JAX name). Shares are of summed operation time (operations on the two cores can overlap).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agentgraph.meta.config import load_config  # noqa: E402
from agentgraph.meta.context import make_context  # noqa: E402
from agentgraph.meta.tasks import task_family  # noqa: E402
from agentgraph.meta.train import init_training_shapes, make_meta_step  # noqa: E402


def _mlp_macs(layers) -> int:
    return sum(int(np.prod(l["w"].shape)) for l in layers)


def learner_macs(learner: dict) -> int:
    """Multiply-adds of one learner call on one row (GRU: gates + MLP_x + MLP_c; else f + g)."""
    if "wx" in learner:
        return int(np.prod(learner["wx"].shape) + np.prod(learner["wc"].shape)) + _mlp_macs(learner["mlp_x"]) + _mlp_macs(learner["mlp_c"])
    return _mlp_macs(learner["f"]) + _mlp_macs(learner["g"])


def learner_shapes(lr: dict) -> list[tuple[int, ...]]:
    """The weight shapes ``(i, o)`` of one learner's matrix products: a GRU's ``wx``/``wc`` and its
    MLPs (``mlp_x``, ``mlp_c``), or a stateless learner's ``f`` and ``g`` MLPs.

    Example:
        >>> import numpy as np
        >>> learner_shapes({"f": [{"w": np.zeros((3, 4))}], "g": [{"w": np.zeros((4, 1))}]})
        [(3, 4), (4, 1)]
    """
    layers = [layer for part in ("mlp_x", "mlp_c", "f", "g") for layer in lr.get(part, [])]
    extra = {tuple(lr["wx"].shape), tuple(lr["wc"].shape)} if "wx" in lr else set()
    return sorted({tuple(layer["w"].shape) for layer in layers} | extra)


def meta_step_flops(ctx, params) -> dict:
    """Learner matmul FLOPs of one meta-step, by block, from the compiled plan of ``ctx``'s
    protocol network; ``params``: what each group receives (``ctx.params(learned, stats)``), the
    groups with a ``"learner"`` counted."""
    cfg = ctx.cfg
    B, K = cfg.meta.batch, cfg.meta.inner_steps
    rows = collections.Counter()
    for wave in ctx.program.plan.backward:
        for blk in wave:
            if "learner" in params.get(blk.group, {}):
                rows[blk.group] += blk.n * B
    per_step = 0
    blocks = {}
    for group, r in rows.items():
        macs = learner_macs(params[group]["learner"])
        blocks[group] = {"rows": r, "macs_per_row": macs, "forward_flops": 2 * r * macs}
        per_step += 2 * r * macs
    passes = {"forward": 1, "recompute": 1 if cfg.meta.remat not in (False, "none") else 0, "backward": 2}
    total = K * per_step * sum(passes.values())
    return {"inner_steps": K, "forward_flops_per_inner_step": per_step, "passes": passes,
            "meta_step_flops": total, "meta_step_flops_no_recompute": K * per_step * 3, "blocks": blocks}


def _median_time(f, *args, n=15) -> float:
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def matmul_rates(rows: int, shapes) -> dict:
    """GFLOP/s of ``[rows, i] @ [i, o]`` and of the weight-gradient ``[rows, i]^T @ [rows, o]``."""
    out = {}
    key = jax.random.PRNGKey(0)
    for i, o in shapes:
        a = jax.random.normal(key, (rows, i))
        w = jax.random.normal(key, (i, o))
        g = jax.random.normal(key, (rows, o))
        fl = 2 * rows * i * o
        t_f = _median_time(jax.jit(lambda a, w: a @ w), a, w)
        t_g = _median_time(jax.jit(lambda a, g: a.T @ g), a, g)
        out[f"{i}x{o}"] = {"forward_gflops": fl / t_f / 1e9, "weight_grad_gflops": fl / t_g / 1e9,
                           "forward_s": t_f, "weight_grad_s": t_g}
    x = jax.random.normal(key, (rows, 80))
    t = _median_time(jax.jit(jnp.tanh), x)
    out["elementwise_tanh_GBps"] = 2 * x.size * 4 / t / 1e9
    return out


_OP = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\((.*)$", re.M)


def classify_trace(trace_dir: str, hlo_text: str) -> dict:
    """Sum the trace's XLA operation times by (class, phase)."""
    info = {m.group(1): (m.group(2), m.group(3), m.group(4)) for m in _OP.finditer(hlo_text)}
    path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    events = [e for e in json.load(gzip.open(path))["traceEvents"] if e.get("ph") == "X"]
    by = collections.defaultdict(float)
    top = collections.defaultdict(float)
    for e in events:
        if e["name"] not in info:
            continue
        shape, op, rest = info[e["name"]]
        meta = re.search(r'op_name="([^"]*)"', rest)
        meta = meta.group(1) if meta else ""
        phase = "recompute" if "rematted" in meta else "backward" if "transpose(" in meta else "forward"
        name = e["name"]
        if op == "dot" or "__ynn_fusion" in rest or "onednn" in rest:
            cls = "matmul"
        elif name.startswith("copy") or op in ("copy", "transpose"):
            cls = "copy/transpose"
        elif "reduce" in name or op == "reduce":
            cls = "reduce"
        elif any(s in name for s in ("slice", "gather", "scatter", "dynamic-update")):
            cls = "slice/gather/scatter"
        else:
            cls = "elementwise"
        by[(cls, phase)] += e["dur"] * 1e-6
        top[(name, cls, phase, shape.split("{")[0])] += e["dur"] * 1e-6
    total = sum(by.values())
    classes = collections.defaultdict(float)
    for (c, _), v in by.items():
        classes[c] += v
    return {
        "total_op_seconds": total,
        "by_class": {c: {"seconds": v, "share": v / total} for c, v in sorted(classes.items(), key=lambda x: -x[1])},
        "by_class_and_phase": {f"{c}/{p}": {"seconds": v, "share": v / total}
                               for (c, p), v in sorted(by.items(), key=lambda x: -x[1])},
        "top_ops": [{"op": n, "class": c, "phase": p, "shape": s, "seconds": v}
                    for (n, c, p, s), v in sorted(top.items(), key=lambda x: -x[1])[:25]],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/configs/mnist.yaml")
    ap.add_argument("--set", action="append", default=[], help="config override field=value")
    ap.add_argument("--steps", type=int, default=2, help="meta-steps traced")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    over = {}
    for item in a.set:
        k, v = item.split("=", 1)
        over[k] = json.loads(v) if v[:1] in "0123456789-[{tf\"" else v
    cfg = load_config(a.config, over)
    family = task_family(cfg)
    ctx = make_context(cfg)
    ts = init_training_shapes(ctx)
    params = ctx.params(ts.trainable["protocol"], ts.stats)
    flops = meta_step_flops(ctx, params)
    big = max(flops["blocks"].values(), key=lambda b: b["rows"])
    lr = params[max(flops["blocks"], key=lambda g: flops["blocks"][g]["rows"])]["learner"]
    rates = matmul_rates(big["rows"], learner_shapes(lr))
    step = make_meta_step(ctx, family)
    prog = ctx.program
    jax.block_until_ready(step(ts, 0, prog))
    times = []
    for s in range(1, 4):
        t = time.perf_counter()
        jax.block_until_ready(step(ts, s, prog))
        times.append(time.perf_counter() - t)
    hlo = step.lower(ts, 0, prog).compile().as_text()
    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d)
        for s in range(4, 4 + a.steps):
            jax.block_until_ready(step(ts, s, prog))
        jax.profiler.stop_trace()
        prof = classify_trace(d, hlo)
    for v in (prof["by_class"], prof["by_class_and_phase"]):
        for x in v.values():
            x["seconds_per_meta_step"] = x.pop("seconds") / a.steps
    best = max(r["forward_gflops"] for k, r in rates.items() if isinstance(r, dict))
    big_rate = rates[max((k for k in rates if "x" in k and k[0].isdigit()), key=lambda k: np.prod([int(x) for x in k.split("x")]))]
    result = {
        "config": a.config, "overrides": over, "device": str(jax.devices()[0]),
        "meta_step_s": {"median": float(np.median(times)), "runs": times},
        "flops": flops, "matmul_rates": rates,
        "floor_s": {"at_best_measured_rate": flops["meta_step_flops"] / (best * 1e9),
                    "at_largest_shape_rate": flops["meta_step_flops"] / (big_rate["forward_gflops"] * 1e9),
                    "no_recompute_at_best_rate": flops["meta_step_flops_no_recompute"] / (best * 1e9)},
        "achieved_gflops": flops["meta_step_flops"] / float(np.median(times)) / 1e9,
        "profile": prof,
    }
    print(f"meta-step median {result['meta_step_s']['median']:.3f} s; learner FLOPs {flops['meta_step_flops'] / 1e9:.1f} G "
          f"({result['achieved_gflops']:.1f} GFLOP/s achieved); best isolated matmul rate {best:.1f} GFLOP/s "
          f"-> floor {result['floor_s']['at_best_measured_rate']:.3f} s")
    for c, v in prof["by_class"].items():
        print(f"  {c:22s} {100 * v['share']:5.1f} %")
    for c, v in prof["by_class_and_phase"].items():
        print(f"    {c:32s} {100 * v['share']:5.1f} %")
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
