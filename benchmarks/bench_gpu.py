"""Issue 36's figures on a GPU, in one short run (under 10 minutes on one H100-class card).

Run on a machine with a CUDA GPU (see docs/performance.md, "GPU", for carrying the data and the
wheels the device image lacks):

    AGENTGRAPH_DATA=.gpu_data python benchmarks/bench_gpu.py --out-dir $OUT

1. **sinusoid meta-step and its floor** (``examples/configs/sinusoid.yaml``): first call (compile
   + run), the median of ``--steps`` more, the learners' matmul FLOPs counted from the plan
   (``profile_meta_step.meta_step_flops``), the card's measured rate for the largest block's
   learner shapes, the floor (FLOPs at the best of those rates) and the meta-step / floor ratio;
2. **MAML + MPLP against the hand-written dense MAML + MPLP** (``examples/configs/maml_sinusoid.toml``
   vs ``benchmarks/baselines/maml_mplp_dense.py``): ``--rounds`` alternated meta-steps of each,
   medians and their ratio (``bench_compiler.bench_maml_mplp``), and both against the MAML + MPLP
   meta-step's floor (measured as in 1);
3. **MNIST meta-step** (``examples/configs/mnist.yaml``): as 1, plus the learner throughput as a
   fraction of the card's rate for the same shapes and for a large square product;
4. ``--train-steps`` (default 5,000; 0 skips 4 and 5) meta-steps of the real training driver on
   MNIST, wall time including calibration and compile, checkpoints in ``--out-dir``;
5. the trained protocol evaluated as ``agentgraph eval`` does (``--eval-runs`` fresh networks,
   accuracy after each of 20 steps on the MNIST test set, against SGD lr 0.1 and Adam lr 0.01 as
   in the paper's Table 1).

Everything is printed and written to ``<out-dir>/gpu-issue36.json``, each part with its wall time.
``--small`` runs every part on tiny settings (no hidden layer, nothing recomputed, XLA's backend
optimisations off; MNIST replaced by the embedded digits data; no training unless
``--train-steps`` is given) on whatever device JAX has: the CPU test of this
script (``tests/benchmarks/test_bench_gpu.py``). Without ``--small`` it refuses to run on a CPU
unless ``--allow-cpu`` (the full settings there: ``--only maml_mplp --allow-cpu`` gives the CPU
figures of part 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "baselines"))

from profile_meta_step import learner_shapes, matmul_rates, meta_step_flops

from agentgraph.meta.config import load_config
from agentgraph.meta.context import make_context
from agentgraph.meta.tasks import task_family
from agentgraph.meta.train import init_training_shapes, make_meta_step, train

CONFIGS = os.path.join(HERE, "..", "examples", "configs")

#: The settings of each part: the paper's (default) and ``--small``'s (a CPU test in seconds).
SETTINGS: dict[str, dict[str, Any]] = {
    "sinusoid": {"config": "sinusoid.yaml", "small": {
        "net.sizes": [1, 1], "meta.inner_steps": 2, "meta.batch": 4, "meta.outer_batch": 2, "data.cv_batch": 8,
        "protocol.k": 2, "protocol.hidden": 2, "protocol.mlp": [8], "meta.remat": "none", "meta.prior_pool": 2}},
    "maml_mplp": {"config": "maml_sinusoid.toml", "small": {
        "net.sizes": [1, 1], "meta.inner_steps": 2, "meta.batch": 4, "meta.outer_batch": 2, "data.cv_batch": 8,
        "protocol.k": 2, "protocol.mlp": [8], "meta.remat": "none", "meta.prior_pool": 2}},
    "mnist": {"config": "mnist.yaml", "small": {
        "data.task": "digits", "data.image_size": 8, "net.sizes": [64, 10], "meta.remat": "none", "meta.inner_steps": 2,
        "meta.batch": 4, "data.cv_batch": 8, "protocol.k": 2, "protocol.hidden": 2, "protocol.mlp": [8],
        "protocol.imitation_steps": 0, "protocol.calibration_rounds": 1, "meta.prior_pool": 2}},
}


def _rate(f, *args, flops: float, n: int = 20) -> float:
    jax.block_until_ready(f(*args))
    t = time.perf_counter()
    for _ in range(n):
        out = f(*args)
    jax.block_until_ready(out)
    return flops * n / (time.perf_counter() - t)


#: XLA options of ``--small``: no backend optimisation, compiles in about half the time (a CPU test).
SMALL_XLA = {"xla_backend_optimization_level": 0}


def floor_figures(ctx: Any, ts: Any, max_shapes: int | None = None) -> dict:
    """The floor of a config's meta-step on this device: the learners' matmul FLOPs (counted from
    the plan, ``profile_meta_step.meta_step_flops``) at the best rate this device measures for the
    largest block's learner shapes (``[rows, i] @ [i, o]``; GRU or stateless ``f``/``g`` learners).

    Args:
        ctx: the config's :class:`~agentgraph.meta.context.Context`; ts: a training state.
        max_shapes: measure only the first this many shapes (default all).

    Returns:
        ``{"learner_flops_per_meta_step", "matmul_rates", "floor_s", "flops"}`` (``flops``:
        ``meta_step_flops``'s dict, per block).

    Example:
        >>> from agentgraph.meta.config import load_config
        >>> ctx = make_context(load_config(os.path.join(CONFIGS, "maml_sinusoid.toml"), SETTINGS["maml_mplp"]["small"]))
        >>> f = floor_figures(ctx, init_training_shapes(ctx), max_shapes=1)
        >>> f["floor_s"] > 0, len(f["matmul_rates"])  # one shape and the elementwise rate
        (True, 2)
    """
    params = ctx.params(ts.trainable["protocol"], ts.stats)
    flops = meta_step_flops(ctx, params)
    group = max(flops["blocks"], key=lambda g: flops["blocks"][g]["rows"])
    lr = params[group]["learner"]
    rates = matmul_rates(flops["blocks"][group]["rows"], learner_shapes(lr)[:max_shapes])
    best = max(r["forward_gflops"] for r in rates.values() if isinstance(r, dict))
    return {"learner_flops_per_meta_step": flops["meta_step_flops"], "matmul_rates": rates,
            "floor_s": flops["meta_step_flops"] / (best * 1e9), "flops": flops}


def maml_mplp_figures(rounds: int, config: str, overrides: dict[str, Any], compiler_options: dict | None = None,
                      max_shapes: int | None = None) -> dict:
    """Part 2: ``bench_compiler.bench_maml_mplp`` (the engine's MAML + MPLP meta-step against the
    dense one, ``rounds`` alternated) with the meta-step's floor (:func:`floor_figures`) and each
    implementation's ratio to it.

    Example:
        >>> r = maml_mplp_figures(1, os.path.join(CONFIGS, "maml_sinusoid.toml"), SETTINGS["maml_mplp"]["small"])  # doctest: +SKIP
        >>> r["engine_ratio_to_floor"] > 0  # doctest: +SKIP
        True
    """
    from bench_compiler import bench_maml_mplp

    res = bench_maml_mplp(rounds, config, overrides, compiler_options=compiler_options)
    ctx = make_context(load_config(config, overrides))
    fl = floor_figures(ctx, init_training_shapes(ctx), max_shapes)
    fl.pop("flops")
    res.update(fl)
    res["engine_ratio_to_floor"] = res["engine_s"] / res["floor_s"]
    res["dense_ratio_to_floor"] = res["dense_s"] / res["floor_s"]
    print(f"[maml+mplp] floor {res['floor_s'] * 1e3:.2f} ms: engine {res['engine_ratio_to_floor']:.2f}x, dense "
          f"{res['dense_ratio_to_floor']:.2f}x", flush=True)
    return res


def meta_step_figures(config: str, overrides: dict[str, Any], steps: int, card_rates: bool = False,
                      compiler_options: dict | None = None, max_shapes: int | None = None) -> dict:
    """One config's meta-step on this device: first call, median of ``steps`` more, learner
    FLOPs, the measured rate of the largest block's learner shapes and the floor.

    Args:
        config: a config file; overrides: dotted-path overrides (``{"meta.batch": 4}``).
        steps: meta-steps timed after the first.
        card_rates: also the learner throughput against this device's rate for an ``[rows, 80] @
            [80, 40]`` product and an 8192² one (the MNIST figures).
        compiler_options: XLA options the meta-step is compiled with (default XLA's).
        max_shapes: measure the rate of only the first this many learner shapes (default all).

    Returns:
        ``{"first_meta_step_s", "meta_step_median_s", "meta_step_runs_s" [steps],
        "learner_flops_per_meta_step", "matmul_rates", "floor_s", "ratio_to_floor", ...}``.

    Example:
        >>> r = meta_step_figures(os.path.join(CONFIGS, "sinusoid.yaml"), SETTINGS["sinusoid"]["small"], 1)  # doctest: +SKIP
        >>> r["ratio_to_floor"] > 1  # doctest: +SKIP
        True
    """
    cfg = load_config(config, overrides)
    family = task_family(cfg)
    ctx = make_context(cfg)
    # committed to the device like the step's outputs (else the second call compiles again)
    ts = jax.device_put(init_training_shapes(ctx), jax.devices()[0])
    step = make_meta_step(ctx, family)
    t0 = time.perf_counter()
    if compiler_options:
        step = step.lower(ts, 0, ctx.program).compile(compiler_options)
    jax.block_until_ready(step(ts, 0, ctx.program))
    res: dict[str, Any] = {"config": os.path.relpath(config, os.path.join(HERE, "..")), "overrides": overrides,
                           "first_meta_step_s": time.perf_counter() - t0}
    times = []
    for s in range(1, steps + 1):
        t0 = time.perf_counter()
        ts, m, _ = step(ts, s, ctx.program)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    res["meta_step_median_s"] = float(np.median(times))
    res["meta_step_runs_s"] = times
    fl = floor_figures(ctx, ts, max_shapes)
    flops = fl.pop("flops")
    res.update(fl)
    res["ratio_to_floor"] = res["meta_step_median_s"] / res["floor_s"]
    res["learner_gflops_achieved"] = flops["meta_step_flops"] / res["meta_step_median_s"] / 1e9
    if card_rates:
        rows = max(b["rows"] for b in flops["blocks"].values())
        key = jax.random.PRNGKey(0)
        x, w = jax.random.normal(key, (rows, 80)), jax.random.normal(key, (80, 40))
        res["card_tflops_learner_shape_80x40"] = _rate(jax.jit(lambda x, w: x @ w), x, w, flops=2 * rows * 80 * 40) / 1e12
        n = 8192 if jax.default_backend() != "cpu" else 512
        big = jax.random.normal(key, (n, n))
        res[f"card_tflops_{n}_f32_default_precision"] = _rate(jax.jit(lambda a: a @ a), big, flops=2 * n ** 3) / 1e12
        res["learner_fraction_of_card_rate_same_shape"] = res["learner_gflops_achieved"] / 1e3 / res["card_tflops_learner_shape_80x40"]
        res[f"learner_fraction_of_card_rate_{n}"] = res["learner_gflops_achieved"] / 1e3 / res[f"card_tflops_{n}_f32_default_precision"]
    print(f"[{os.path.basename(config)}] meta-step {res['meta_step_median_s'] * 1e3:.1f} ms (first {res['first_meta_step_s']:.1f} s), "
          f"floor {res['floor_s'] * 1e3:.2f} ms, ratio {res['ratio_to_floor']:.2f}", flush=True)
    return res


def _part(res: dict, name: str, f, *args, **kw) -> None:
    """Run one part, storing its figures and wall time under ``name``; a part that fails is
    recorded (its error) and the others still run."""
    t0 = time.perf_counter()
    try:
        res[name] = f(*args, **kw)
    except Exception as e:  # noqa: BLE001 (one part's failure must not lose the others' figures)
        res[name] = {"error": f"{type(e).__name__}: {e}"}
        print(f"[{name}] FAILED: {res[name]['error']}", file=sys.stderr, flush=True)
    res[name]["part_wall_s"] = time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Run the parts (module docstring); returns the exit status (2: no GPU without ``--small``;
    1: a part failed).

    Example:
        >>> main(["--small", "--out-dir", "/tmp/gpu-small", "--skip", "sinusoid,maml_mplp,mnist"])  # doctest: +SKIP
        0
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny settings, any device (the CPU test)")
    ap.add_argument("--steps", type=int, default=None, help="meta-steps timed per config (default 50; --small 2)")
    ap.add_argument("--rounds", type=int, default=None, help="MAML + MPLP: alternated rounds (default 21; --small 2)")
    ap.add_argument("--train-steps", type=int, default=None, help="MNIST training meta-steps (default 5000; --small 0)")
    ap.add_argument("--eval-runs", type=int, default=None, help="fresh networks evaluated (default 100; --small 2)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: sinusoid,maml_mplp,mnist,train")
    ap.add_argument("--only", default="", help="comma-separated parts to run (the others skipped)")
    ap.add_argument("--allow-cpu", action="store_true", help="the full settings on a CPU (slow; for CPU figures)")
    ap.add_argument("--mnist-config", default=os.path.join(CONFIGS, SETTINGS["mnist"]["config"]))
    ap.add_argument("--out-dir", default="runs/gpu")
    a = ap.parse_args(argv)
    small = a.small
    steps = a.steps if a.steps is not None else (2 if small else 50)
    rounds = a.rounds if a.rounds is not None else (2 if small else 21)
    train_steps = a.train_steps if a.train_steps is not None else (0 if small else 5000)
    eval_runs = a.eval_runs if a.eval_runs is not None else (2 if small else 100)
    skip = set(filter(None, a.skip.split(",")))
    if a.only:
        skip |= {"sinusoid", "maml_mplp", "mnist", "train"} - set(a.only.split(","))
    dev = jax.devices()[0]
    if dev.platform != "gpu" and not (small or a.allow_cpu):
        print(f"no GPU: JAX runs on {dev}; run this on a machine with a CUDA GPU (or --small to test it)", file=sys.stderr)
        return 2
    os.makedirs(a.out_dir, exist_ok=True)
    t_all = time.perf_counter()
    res: dict[str, Any] = {"device": str(dev), "device_kind": dev.device_kind, "jax": jax.__version__, "small": small,
                           "steps": steps, "rounds": rounds}
    over = lambda part: dict(SETTINGS[part]["small"]) if small else {}
    xla, shapes = (SMALL_XLA, 1) if small else (None, None)
    if "sinusoid" not in skip:
        _part(res, "sinusoid", meta_step_figures, os.path.join(CONFIGS, SETTINGS["sinusoid"]["config"]), over("sinusoid"),
              steps, compiler_options=xla, max_shapes=shapes)
    if "maml_mplp" not in skip:
        _part(res, "maml_mplp", maml_mplp_figures, rounds, os.path.join(CONFIGS, SETTINGS["maml_mplp"]["config"]),
              over("maml_mplp"), compiler_options=xla, max_shapes=shapes)
    mnist_over = over("mnist")
    if "mnist" not in skip:
        _part(res, "mnist", meta_step_figures, a.mnist_config, mnist_over, steps, card_rates=True, compiler_options=xla,
              max_shapes=shapes)
    if train_steps and "train" not in skip:
        _part(res, "train", _train_and_eval, a.mnist_config, mnist_over, train_steps, eval_runs, a.out_dir)
    res["total_wall_s"] = time.perf_counter() - t_all
    path = os.path.join(a.out_dir, "gpu-issue36.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=2, default=float)
    print(f"total {res['total_wall_s']:.0f} s; wrote {path}", flush=True)
    return 1 if any(isinstance(v, dict) and "error" in v for v in res.values()) else 0


def _train_and_eval(config: str, overrides: dict, train_steps: int, eval_runs: int, out_dir: str) -> dict:
    """Parts 4 and 5: ``train_steps`` meta-steps of the training driver, then the evaluation."""
    from agentgraph.meta.evaluate import evaluate
    from agentgraph.meta.protocol_io import load_protocol

    cfg = load_config(config, {**overrides, "run.out_dir": os.path.join(out_dir, "mnist"), "run.checkpoint_every": 500,
                               "meta.meta_steps": train_steps})
    ctx = make_context(cfg)
    t0 = time.perf_counter()
    tr = train(cfg, progress=False, log=lambda s: print(s, flush=True))
    out: dict[str, Any] = {"meta_steps": train_steps, "wall_s_including_calibration_and_compile": time.perf_counter() - t0,
                           **{k: v for k, v in tr.items() if k != "out_dir"}}
    print(json.dumps(out, indent=1, default=float), flush=True)
    t0 = time.perf_counter()
    learned, stats = load_protocol(tr["checkpoint"], ctx)
    ev = evaluate(cfg, learned, stats, runs=eval_runs, sgd_lr=0.1, adam_lr=0.01, ctx=ctx)  # the paper's baselines
    out["eval"] = {"seconds": time.perf_counter() - t0, **ev}
    print(json.dumps(out["eval"], indent=1, default=float), flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
