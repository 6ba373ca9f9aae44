"""CNN benchmark: the gradient protocol on a tied-kernel agent-graph CNN against the hand-written
``lax.conv`` CNN it equals (``benchmarks/baselines/cnn_dense.py``; equality: ``tests/benchmarks/test_cnn_dense.py``).

Run:  python benchmarks/bench_cnn.py [--rounds 7] [--steps 10] [--batch 32] [--out benchmarks/results/bench_cnn-cpu.json]

Figures:

1. **Training step**, MNIST 28×28 scale (conv 8@3×3 pad 1 → avg pool 2 → conv 16@3×3 pad 1 →
   avg pool 2 → dense 10, cross-entropy; 266k synapse uses): medians of ``--rounds`` rounds, each
   timing ``--steps`` jitted steps of both, alternated in one process; the agent graph compiled
   with the convolution lowering (default) and with the generic tied lowering
   (``compile(g, linear=False)``, for reference). Memory: XLA's buffer assignment of each step's
   executable (temp + arguments + outputs − aliases), as a training loop runs it — the state
   (agent graph) and the parameters (hand-written) donated, so the step updates them in place —
   and, for reference, without donation (input and output state both counted).
2. **Compile**: a CNN with ≥ 1 million synapse uses (conv 16@3×3 → pool → conv 36@3×3 → pool →
   dense 10 at 28×28): graph build, ``compile`` (plan), first jitted step (XLA) and the process's
   peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "baselines"))

from agentgraph import compile  # noqa: E402
from agentgraph.builders import Conv, Pool, cnn  # noqa: E402
from agentgraph.protocols import gradient  # noqa: E402
import cnn_dense  # noqa: E402  (benchmarks/baselines)

SHAPE = (1, 28, 28)
SPEED = [Conv(8, 3, 1, 1), Pool(2), Conv(16, 3, 1, 1), Pool(2)]
BIG = [Conv(16, 3, 1, 1), Pool(2), Conv(36, 3, 1, 1), Pool(2)]


def _block(x):
    return jax.tree.map(lambda v: v.block_until_ready(), x)


def _peak_bytes(jitted, *args) -> int:
    m = jitted.lower(*args).compile().memory_analysis()
    return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes)


def bench_step(rounds: int, steps: int, batch: int, lr: float = 0.05) -> dict:
    g = cnn(SHAPE, SPEED, 10, "relu", "cross_entropy", init_std=0.1)
    params = gradient.params(g, lr)
    rng = np.random.default_rng(0)
    b = {"x": rng.normal(size=(batch, 784)).astype(np.float32),
         "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]}
    progs = {"conv": compile(g), "generic": compile(g, linear=False)}
    run = lambda prog, s, b: prog.step(params, s, b)  # noqa: E731
    step = jax.jit(run, donate_argnums=(1,))
    states = {k: p.init(batch) for k, p in progs.items()}
    ref = cnn_dense.init_params(jax.random.PRNGKey(0), SHAPE, SPEED, 10)
    sgd = lambda r, x, y: cnn_dense.sgd_step(r, x, y, lr, SHAPE, SPEED, 10)  # noqa: E731
    dense = jax.jit(sgd, donate_argnums=(0,))
    mem = {k: _peak_bytes(step, p, states[k], b) for k, p in progs.items()}
    mem["dense"] = _peak_bytes(dense, ref, b["x"], b["y"])
    kept = {k: _peak_bytes(jax.jit(run), p, states[k], b) for k, p in progs.items()}
    kept["dense"] = _peak_bytes(jax.jit(sgd), ref, b["x"], b["y"])
    for k, p in progs.items():  # compile + warm
        states[k] = _block(step(p, states[k], b))[0]
    ref = _block(dense(ref, b["x"], b["y"]))[0]
    times: dict[str, list[float]] = {"conv": [], "generic": [], "dense": []}
    for r in range(rounds):
        for k in ("conv", "dense", "generic") if r % 2 else ("dense", "conv", "generic"):
            t = time.perf_counter()
            for _ in range(steps if k != "generic" else max(1, steps // 5)):
                if k == "dense":
                    ref, loss = dense(ref, b["x"], b["y"])
                else:
                    states[k], loss = step(progs[k], states[k], b)
            _block(loss)
            times[k].append((time.perf_counter() - t) / (steps if k != "generic" else max(1, steps // 5)))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"synapse_uses": len(g.agents("synapse")), "ties": len(g.ties()), "batch": batch,
            "step_s": med, "time_ratio_conv": med["conv"] / med["dense"],
            "time_ratio_generic": med["generic"] / med["dense"], "peak_bytes": mem,
            "memory_ratio_conv": mem["conv"] / mem["dense"], "memory_ratio_generic": mem["generic"] / mem["dense"],
            "peak_bytes_not_donated": kept, "memory_ratio_conv_not_donated": kept["conv"] / kept["dense"],
            "state_bytes": {k: int(sum(v.nbytes for v in jax.tree.leaves(st))) for k, st in states.items()}}


def bench_compile(batch: int) -> dict:
    t = time.perf_counter()
    g = cnn(SHAPE, BIG, 10, "relu", "cross_entropy", init_std=0.1)
    build = time.perf_counter() - t
    t = time.perf_counter()
    prog = compile(g)
    plan = time.perf_counter() - t
    params = gradient.params(g, 0.05)
    rng = np.random.default_rng(0)
    b = {"x": rng.normal(size=(batch, 784)).astype(np.float32),
         "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]}
    step = jax.jit(lambda prog, s, b: prog.step(params, s, b))
    s = prog.init(batch)
    t = time.perf_counter()
    _block(step(prog, s, b))
    first = time.perf_counter() - t
    t = time.perf_counter()
    _block(step(prog, s, b))
    again = time.perf_counter() - t
    return {"synapse_uses": len(g.agents("synapse")), "agents": g.number_of_agents(), "build_s": build,
            "compile_s": plan, "first_step_s": first, "compile_total_s": plan + first, "step_s": again,
            "conv_layers_lowered": sum(blk.conv is not None for w in prog.plan.backward for blk in w),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = {"device": jax.devices()[0].platform, "host": platform.node(), "cores": os.cpu_count(),
           "step": bench_step(a.rounds, a.steps, a.batch), "compile": bench_compile(a.batch)}
    print(json.dumps(out, indent=2))
    path = a.out or os.path.join(os.path.dirname(__file__), "results", f"bench_cnn-{out['device']}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print("wrote", path)


if __name__ == "__main__":
    main()
