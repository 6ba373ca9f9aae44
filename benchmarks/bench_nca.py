"""The neural cellular automaton compiled from its agent graph against the hand-written dense JAX
NCA of the same maths (``baselines/nca_dense.py``): time of a growth of ``T`` ticks and of one
training step (value and gradient through the ticks), alternated in one process, medians of
``--runs`` rounds; the ratio is compiled / hand-written (target ≤ 1.2).

Run:  python benchmarks/bench_nca.py [--size 16] [--channels 16] [--hidden 128] [--batch 8]
                                     [--ticks 48] [--runs 7] [--out benchmarks/results/bench_nca.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph import compile
from agentgraph.builders import grid
from agentgraph.models import nca

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "baselines"))
import nca_dense  # noqa: E402


def _block(x):
    return jax.tree.map(lambda v: v.block_until_ready(), x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ticks", type=int, default=48)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_nca.json"))
    a = ap.parse_args()
    H = W = a.size
    cell = nca.NCACell(a.channels, a.hidden)
    t0 = time.perf_counter()
    prog = compile(grid(H, W, cell))
    t_compile = time.perf_counter() - t0
    params = nca.init_params(jax.random.PRNGKey(0), cell)
    params = {**params, "w2": 0.02 * jax.random.normal(jax.random.PRNGKey(1), params["w2"].shape)}
    start = nca.seed(prog, a.batch, H, W)
    s0 = np.zeros((a.batch, H, W, a.channels), np.float32)
    s0[:, H // 2, W // 2, 3:] = 1.0
    s0 = jnp.asarray(s0)
    target = jnp.asarray(nca.heart(a.size), jnp.float32)

    fns = {
        "grow": (jax.jit(lambda p: nca.grow(p, prog, start, a.ticks, H, W)[1]),
                 jax.jit(lambda p: nca_dense.nca_grow(p, s0, a.ticks)[1])),
        "train_step": (jax.jit(jax.value_and_grad(lambda p: jnp.mean((nca.grow(p, prog, start, a.ticks, H, W)[1] - target) ** 2))),
                       jax.jit(jax.value_and_grad(lambda p: jnp.mean((nca_dense.nca_grow(p, s0, a.ticks)[1] - target) ** 2)))),
    }
    res = {"size": a.size, "channels": a.channels, "hidden": a.hidden, "batch": a.batch, "ticks": a.ticks,
           "runs": a.runs, "device": jax.devices()[0].platform, "plan_seconds": t_compile}
    for name, (fc, fd) in fns.items():
        out_c, out_d = _block(fc(params)), _block(fd(params))  # compile both
        diff = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(out_c), jax.tree.leaves(out_d)))
        tc, td = [], []
        for r in range(a.runs):  # alternate, so load drifts hit both alike
            for f, ts in ((fc, tc), (fd, td)) if r % 2 == 0 else ((fd, td), (fc, tc)):
                t = time.perf_counter(); _block(f(params)); ts.append(time.perf_counter() - t)
        res[name] = {"compiled_ms": 1e3 * statistics.median(tc), "dense_ms": 1e3 * statistics.median(td),
                     "ratio": statistics.median(tc) / statistics.median(td),
                     "paired_ratio_median": statistics.median(c / d for c, d in zip(tc, td)),
                     "max_abs_difference": diff}
        print(name, json.dumps(res[name]))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
