"""VSML compiled from its agent graph against the hand-written dense JAX VSML of the same maths
(``baselines/vsml_dense.py``): time of an online episode of ``T`` examples and of its meta-gradient
(value and gradient of the cumulative online loss through the episode), alternated in one process,
medians of ``--runs`` rounds; the ratio is compiled / hand-written (target ≤ 1.2). Also the peak
memory of the two meta-gradient executables as XLA reports it (temporary buffers).

Run:  python benchmarks/bench_vsml.py [--sizes 64 10] [--batch 1] [--ticks 100] [--runs 7]
                                      [--out benchmarks/results/bench_vsml.json]
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
from agentgraph.builders import mlp_network
from agentgraph.protocols.vsml import GROUP, vsml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "baselines"))
import vsml_dense  # noqa: E402


def _block(x):
    return jax.tree.map(lambda v: v.block_until_ready(), x)


def _temp_bytes(fn, *args) -> int | None:
    try:
        return int(jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 10])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--ticks", type=int, default=100)
    ap.add_argument("--msg", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_vsml.json"))
    a = ap.parse_args()
    sizes, B, T = a.sizes, a.batch, a.ticks
    p = vsml(msg=a.msg, hidden=a.hidden)
    net = p.network(mlp_network(list(sizes)))
    t0 = time.perf_counter()
    prog = compile(net.graph)
    t_plan = time.perf_counter() - t0
    params = p.init(jax.random.PRNGKey(0), net.graph)
    rng = np.random.default_rng(0)
    c0 = [rng.normal(0, 0.5, (sizes[l], sizes[l + 1], a.hidden)).astype(np.float32) for l in range(len(sizes) - 1)]
    agents = prog.to_agents(prog.init(B))
    for l in range(len(sizes) - 1):
        for i in range(sizes[l]):
            for j in range(sizes[l + 1]):
                agents[("w", l, i, j)]["c0"] = c0[l][i, j]
    s_graph = prog.from_agents(agents)
    s_dense = vsml_dense.init_state([jnp.asarray(c) for c in c0], B, a.msg)
    xs = jnp.asarray(rng.normal(size=(T, B, sizes[0])), jnp.float32)
    ys = jnp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], (T, B))], jnp.float32)

    def graph_loss(prm):
        _, losses = prog.unroll({GROUP: prm}, s_graph, {"x": xs, "y": ys})
        return losses.mean()

    def dense_loss(prm):
        return vsml_dense.episode(prm, s_dense, xs, ys)[2].mean()

    fns = {"episode": (jax.jit(graph_loss), jax.jit(dense_loss)),
           "meta_gradient": (jax.jit(jax.value_and_grad(graph_loss)), jax.jit(jax.value_and_grad(dense_loss)))}
    res = {"sizes": sizes, "batch": B, "ticks": T, "msg": a.msg, "hidden": a.hidden, "runs": a.runs,
           "device": jax.devices()[0].platform, "plan_seconds": t_plan,
           "temp_bytes": {"compiled": _temp_bytes(jax.value_and_grad(graph_loss), params),
                          "dense": _temp_bytes(jax.value_and_grad(dense_loss), params)}}
    for name, (fc, fd) in fns.items():
        out_c, out_d = _block(fc(params)), _block(fd(params))
        diff = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(out_c), jax.tree.leaves(out_d)))
        tc, td = [], []
        for r in range(a.runs):
            for f, ts in ((fc, tc), (fd, td)) if r % 2 == 0 else ((fd, td), (fc, tc)):
                t = time.perf_counter(); _block(f(params)); ts.append(time.perf_counter() - t)
        res[name] = {"compiled_ms": 1e3 * statistics.median(tc), "dense_ms": 1e3 * statistics.median(td),
                     "ratio": statistics.median(tc) / statistics.median(td),
                     "paired_ratio_median": statistics.median(c / d for c, d in zip(tc, td)),
                     "max_abs_difference": diff}
        print(name, json.dumps(res[name]), flush=True)
    print("temp_bytes", json.dumps(res["temp_bytes"]))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
