"""GPU figures for the MNIST meta-step (paper setting), in one short run.

Run on a machine with a CUDA GPU (see docs/performance.md, "GPU", for carrying the data and the
wheels the device image lacks):

    AGENTGRAPH_DATA=.gpu_data python benchmarks/bench_gpu.py --out-dir $OUT

1. the meta-step: first call (compile + run) and the median of ``--steps`` more;
2. the learner matmul throughput: the meta-step's learner FLOPs (counted from the plan, as in
   ``profile_meta_step.py``) per second, against the card's measured matmul rate for the same
   shapes and for a large square product;
3. ``--train-steps`` (default 5,000) meta-steps of the real training driver, wall time
   including calibration and compile, writing checkpoints to ``--out-dir``;
4. the trained protocol evaluated as ``agentgraph eval`` does (100 fresh networks, accuracy
   after each of 20 steps on the MNIST test set, against SGD lr 0.1 and Adam lr 0.01 as in the
   paper's Table 1).

Everything is printed and written to ``<out-dir>/gpu-mnist.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from profile_meta_step import meta_step_flops  # noqa: E402

from agentgraph.meta.config import load_config  # noqa: E402
from agentgraph.meta.context import make_context  # noqa: E402
from agentgraph.meta.tasks import task_family  # noqa: E402
from agentgraph.meta.train import init_training_shapes, make_meta_step, train  # noqa: E402


def _rate(f, *args, flops: float, n: int = 20) -> float:
    jax.block_until_ready(f(*args))
    t = time.perf_counter()
    for _ in range(n):
        out = f(*args)
    jax.block_until_ready(out)
    return flops * n / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=os.path.join(HERE, "..", "examples", "configs", "mnist.yaml"))
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--train-steps", type=int, default=5000)
    ap.add_argument("--eval-runs", type=int, default=100)
    ap.add_argument("--out-dir", default="runs/gpu")
    a = ap.parse_args(argv)
    dev = jax.devices()[0]
    if dev.platform != "gpu":
        print(f"no GPU: JAX runs on {dev}; run this on a machine with a CUDA GPU", file=sys.stderr)
        return 2
    os.makedirs(a.out_dir, exist_ok=True)
    res: dict = {"device": str(dev), "device_kind": dev.device_kind, "jax": jax.__version__}
    cfg = load_config(a.config, {"run.out_dir": os.path.join(a.out_dir, "mnist"), "run.checkpoint_every": 500})
    family = task_family(cfg)
    ctx = make_context(cfg)
    ts = init_training_shapes(ctx)
    step = make_meta_step(ctx, family)
    t0 = time.perf_counter()
    jax.block_until_ready(step(ts, 0, ctx.program))
    res["first_meta_step_s"] = time.perf_counter() - t0
    times = []
    for s in range(1, a.steps + 1):
        t0 = time.perf_counter()
        ts, m, _ = step(ts, s, ctx.program)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    res["meta_step_median_s"] = float(np.median(times))
    res["meta_step_runs_s"] = times
    flops = meta_step_flops(ctx, ctx.params(ts.trainable["protocol"], ts.stats))
    res["learner_flops_per_meta_step"] = flops["meta_step_flops"]
    res["learner_tflops_achieved"] = flops["meta_step_flops"] / res["meta_step_median_s"] / 1e12
    rows = max(b["rows"] for b in flops["blocks"].values())
    key = jax.random.PRNGKey(0)
    x, w = jax.random.normal(key, (rows, 80)), jax.random.normal(key, (80, 40))
    res["card_tflops_learner_shape_80x40"] = _rate(jax.jit(lambda x, w: x @ w), x, w, flops=2 * rows * 80 * 40) / 1e12
    big = jax.random.normal(key, (8192, 8192))
    res["card_tflops_8192_f32_default_precision"] = _rate(jax.jit(lambda a: a @ a), big, flops=2 * 8192 ** 3) / 1e12
    res["learner_fraction_of_card_rate_same_shape"] = res["learner_tflops_achieved"] / res["card_tflops_learner_shape_80x40"]
    res["learner_fraction_of_card_rate_8192"] = res["learner_tflops_achieved"] / res["card_tflops_8192_f32_default_precision"]
    print(json.dumps({k: v for k, v in res.items() if k != "meta_step_runs_s"}, indent=1), flush=True)

    t0 = time.perf_counter()
    tr = train(cfg.model_copy(update={"meta": cfg.meta.model_copy(update={"meta_steps": a.train_steps})}),
               progress=False, log=lambda s: print(s, flush=True))
    res["train"] = {"meta_steps": a.train_steps, "wall_s_including_calibration_and_compile": time.perf_counter() - t0,
                    **{k: v for k, v in tr.items() if k != "out_dir"}}
    print(json.dumps(res["train"], indent=1), flush=True)

    from agentgraph.meta.evaluate import evaluate
    from agentgraph.meta.protocol_io import load_protocol

    t0 = time.perf_counter()
    learned, stats = load_protocol(tr["checkpoint"], ctx)
    ev = evaluate(cfg, learned, stats, runs=a.eval_runs, sgd_lr=0.1, adam_lr=0.01, ctx=ctx)  # the paper's baselines
    res["eval"] = {"seconds": time.perf_counter() - t0, **ev}
    with open(os.path.join(a.out_dir, "gpu-mnist.json"), "w") as f:
        json.dump(res, f, indent=2, default=float)
    print(json.dumps(res["eval"], indent=1, default=float), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
