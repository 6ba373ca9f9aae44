"""Compiler benchmarks: compiled agent graphs vs hand-written dense JAX, compile and step times.

Run:  python benchmarks/bench_compiler.py [--runs 5] [--quick] [--out benchmarks/results/compiler-<device>.json]

Figures (medians of ``--runs`` alternating runs in one process; ratios = compiled / dense):

1. MPLP stateful (GRU) learner step, (144,50,10) sigmoid net, inner batch 8, 20 inner steps,
   16 tasks vmapped: forward unroll, and meta-gradient through it; peak memory from XLA's
   buffer assignment of each compiled executable.
2. Gradient protocol compiled vs a plain ``jax.grad`` + SGD loop (same net, 20 steps), with the
   synapse blocks as matrix products (the default) and agent by agent (``compile(linear=False)``).
5. BLUR (k = 3, (196,20,10) tanh, the CMA-ES setting of ``examples/configs/blur_mnist14.yaml``),
   20 inner steps × batch 8, compiled (matmul and agent-by-agent lowerings) vs the hand-written
   dense BLUR of ``benchmarks/baselines/blur_dense.py``; and the same for an ES population of 16
   genomes, vmapped all at once and in chunks of 4 (``lax.map`` over vmapped chunks, what
   ``meta.optimizer.chunk`` does), each implementation both ways.
3. Build, compile (plan + XLA) and step time for 7.7k, 79.5k and 1M synapse agents.
4. A non-layered random DAG of comparable size to 1.
6. ``--only maml_mplp``: the MAML + MPLP meta-step (``examples/configs/maml_sinusoid.toml``, the
   paper's Fig. 3 setting: stateless MPLP learned jointly with the prior) as meta-training runs it
   (``make_meta_step``: tasks drawn, meta-loss, gradient, Adam) against the hand-written dense MAML
   + MPLP of ``benchmarks/baselines/maml_mplp_dense.py`` (same tasks, same maths; equal in
   ``tests/benchmarks/test_maml_mplp_dense.py``): one meta-step of each per round, alternated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "baselines"))

from agentgraph import compile, mlp, random_dag  # noqa: E402
from agentgraph.builders import mlp_weights  # noqa: E402
from agentgraph.protocols import gradient, mplp  # noqa: E402
import mplp_dense  # noqa: E402  (benchmarks/baselines)
import maml_mplp_dense  # noqa: E402  (benchmarks/baselines)
import blur_dense  # noqa: E402  (benchmarks/baselines)


def _block(x):
    return jax.tree.map(lambda v: v.block_until_ready(), x)


def _time(fn, *args):
    t = time.perf_counter()
    _block(fn(*args))
    return time.perf_counter() - t


def _peak_bytes(jitted, *args) -> int:
    m = jitted.lower(*args).compile().memory_analysis()
    return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes)


#: MPLP settings of ``--mplp-setting``: the paper's MNIST meta-step (the default) and its sinusoid one
#: (``examples/configs/sinusoid.yaml``: (1,20,20,1) relu, L2, k = 8, hidden 15, 5 steps × batch 10,
#: outer batch 4).
MPLP_SETTINGS = {
    "mnist": dict(sizes=(144, 50, 10), activation="sigmoid", loss="cross_entropy", k=4, hidden=7, steps=20, batch=8),
    "sinusoid": dict(sizes=(1, 20, 20, 1), activation="relu", loss="l2", k=8, hidden=15, steps=5, batch=10, tasks=4),
}


def bench_mplp(runs: int, tasks: int, steps: int, batch: int, sizes=(144, 50, 10), forward_only: bool = False,
               task_map: bool = False, activation: str = "sigmoid", loss: str = "cross_entropy", k: int = 4,
               hidden: int = 7) -> dict:
    cfg = mplp.MPLPConfig(k=k, hidden=hidden)
    g = mlp(list(sizes), activation=activation, loss=loss, seed=0).with_kinds(mplp.kinds(cfg))
    params = mplp.init_params(g, jax.random.PRNGKey(0), cfg)
    prog = compile(g)
    rng = np.random.default_rng(0)
    batches = {
        "x": jnp.asarray(rng.normal(size=(tasks, steps, batch, sizes[0])), jnp.float32),
        "y": jnp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], (tasks, steps, batch))], jnp.float32),
    }
    # per-task random initial weights, the same in both implementations
    Ws = [[jnp.asarray(rng.normal(0, 0.05, (a, b)), jnp.float32) for a, b in zip(sizes[:-1], sizes[1:])] for _ in range(tasks)]
    idx = prog.index
    s0 = prog.init(batch)
    w_rows = [np.array([[idx[("w", l, i, j)][1] for j in range(b)] for i in range(a)]) for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]

    def compiled_state(ws):
        w = s0["synapse"]["w"]
        for l, W in enumerate(ws):
            w = w.at[w_rows[l].reshape(-1)].set(W.reshape(-1))
        return {**s0, "synapse": {**s0["synapse"], "w": w}}

    cs = jax.tree.map(lambda *x: jnp.stack(x), *[compiled_state(ws) for ws in Ws])
    carry = {"synapse": 1 + hidden + k, "bias": 1 + hidden + k, "act": hidden + k, "softmax": hidden + k, "loss": hidden + k}
    ds = jax.tree.map(lambda *x: jnp.stack(x), *[
        mplp_dense.init_state([(W, jnp.zeros(W.shape[1])) for W in ws], batch, carry, sizes[-1]) for ws in Ws])
    kw = dict(activation=activation, loss=loss, k=k, act_group=activation)

    def over_tasks(f):  # vmapped, or (task_map) one task after another, in both implementations
        if task_map:
            return lambda s, b: jax.lax.map(lambda a: f(*a), (s, b))
        return jax.vmap(f)

    fwd_c = jax.jit(lambda p, s, b: over_tasks(lambda s1, b1: prog.unroll(p, s1, b1)[1])(s, b))
    fwd_d = jax.jit(lambda p, s, b: over_tasks(lambda s1, b1: mplp_dense.unroll(p, s1, b1, **kw)[1])(s, b))

    def meta(unroll_losses):
        return jax.jit(jax.grad(lambda p, s, b: unroll_losses(p, s, b).mean()))

    grad_c, grad_d = meta(fwd_c), meta(fwd_d)
    out: dict = {"setting": {"sizes": sizes, "activation": activation, "loss": loss, "tasks": tasks, "steps": steps,
                             "batch": batch, "k": k, "hidden": hidden,
                             "tasks_run": "one after another (lax.map)" if task_map else "vmapped",
                             "synapse_agents": int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))), "agents": g.number_of_agents()}}
    # correctness first: same losses
    lc, ld = fwd_c(params, cs, batches), fwd_d(params, ds, batches)
    out["max_abs_loss_diff"] = float(jnp.max(jnp.abs(lc - ld)))
    parts = (("forward_unroll", fwd_c, fwd_d),) + (() if forward_only else (("meta_gradient", grad_c, grad_d),))
    for name, fc, fd in parts:
        t0 = time.perf_counter(); _block(fc(params, cs, batches)); comp_c = time.perf_counter() - t0
        t0 = time.perf_counter(); _block(fd(params, ds, batches)); comp_d = time.perf_counter() - t0
        tc, td = [], []
        for _ in range(runs):  # alternate to share the machine's noise
            tc.append(_time(fc, params, cs, batches))
            td.append(_time(fd, params, ds, batches))
        mc, md = _peak_bytes(fc, params, cs, batches), _peak_bytes(fd, params, ds, batches)
        out[name] = {
            "compiled_s": statistics.median(tc), "dense_s": statistics.median(td),
            "time_ratio": statistics.median(tc) / statistics.median(td),
            "compiled_runs_s": tc, "dense_runs_s": td,
            "first_call_s": {"compiled": comp_c, "dense": comp_d},
            "peak_bytes": {"compiled": mc, "dense": md}, "memory_ratio": mc / md,
        }
        print(f"[mplp {name}] compiled {out[name]['compiled_s']:.3f}s dense {out[name]['dense_s']:.3f}s "
              f"ratio {out[name]['time_ratio']:.3f}; memory {mc / 2**20:.1f} / {md / 2**20:.1f} MiB "
              f"ratio {out[name]['memory_ratio']:.3f}", flush=True)
    return out


MAML_MPLP_CONFIG = os.path.join(os.path.dirname(__file__), "..", "examples", "configs", "maml_sinusoid.toml")


def _aot(jitted, args: tuple, options: dict | None):
    """``jitted`` compiled ahead of time for ``args`` with XLA ``options`` (``None``: ``jitted``)."""
    return jitted.lower(*args).compile(options) if options else jitted


def bench_maml_mplp(runs: int, config: str = MAML_MPLP_CONFIG, overrides: dict | None = None,
                    compiler_options: dict | None = None) -> dict:
    """The engine's MAML + MPLP meta-step against the dense one (figure 6 of the module docstring).

    Both start from the same meta-parameters (the engine's initial ones, uncalibrated
    normalisation) and draw the same tasks (meta-step ``s`` of ``run.seed``); each round times one
    meta-step of each, alternated, after a first call each (compile + run). Returns the medians,
    their ratio (engine / dense), the median of the per-round ratios and the first meta-loss of
    each and the last (equal up to float32 rounding: both train the same meta-parameters on the
    same tasks). ``compiler_options``: XLA options both meta-steps are compiled with (e.g.
    ``{"xla_backend_optimization_level": 0}`` for a quick test; default XLA's).

    Example:
        >>> r = bench_maml_mplp(1, overrides={"net.sizes": [1, 3, 1], "meta.inner_steps": 1, "meta.batch": 2,
        ...                     "meta.outer_batch": 2, "data.cv_batch": 3, "protocol.mlp": [4]})  # doctest: +SKIP
        >>> sorted(r)[:3]  # doctest: +SKIP
        ['dense_runs_s', 'dense_s', 'engine_runs_s']
    """
    from agentgraph.meta.config import load_config
    from agentgraph.meta.context import make_context
    from agentgraph.meta.gradient import meta_optimizer
    from agentgraph.meta.objectives import objective_settings
    from agentgraph.meta.optimizers import init_training_shapes, make_meta_step
    from agentgraph.meta.tasks import task_family

    cfg = load_config(config, overrides or {})
    m, st = cfg.meta, cfg.make_protocol().settings
    obj = objective_settings(m.objective)
    ctx, family = make_context(cfg), task_family(cfg)
    # committed to the device: the meta-step's outputs are, and uncommitted inputs make its first
    # two calls compile one executable each (same shapes and dtypes)
    ts = jax.device_put(init_training_shapes(ctx), jax.devices()[0])
    e_step = make_meta_step(ctx, family)
    meta, norm = maml_mplp_dense.from_engine(ctx, ts.trainable, ts.stats)
    meta = jax.device_put(meta, jax.devices()[0])
    carry = None if not st.stateful else {
        "synapse": 1 + st.hidden + st.k, "bias": 1 + st.hidden + st.k, "act": st.hidden + st.k,
        "softmax": st.hidden + st.k, "loss": st.hidden + st.k}
    d_step = maml_mplp_dense.make_meta_step(family.sample, m.outer_batch, cfg.run.seed, m.meta_lr,
                                            activation=cfg.net.activation, loss=cfg.net.loss, k=st.k,
                                            hint_weight=getattr(obj, "hint_weight", 0.0),
                                            cv_weight=getattr(obj, "cv_weight", 1.0), carry=carry)
    opt = jax.device_put(meta_optimizer(m.meta_lr).init(meta), jax.devices()[0])
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    e_step = _aot(e_step, (ts, 0, ctx.program), compiler_options)
    ts, met, _ = _block(e_step(ts, 0, ctx.program))
    first_e = time.perf_counter() - t0
    t0 = time.perf_counter()
    d_step = _aot(d_step, (meta, opt, norm, 0), compiler_options)
    meta, opt, dl = _block(d_step(meta, opt, norm, 0))
    first_d = time.perf_counter() - t0
    first_loss = {"engine": float(met["meta_loss"]), "dense": float(dl)}
    te, td = [], []
    for r in range(1, runs + 1):  # alternate to share the machine's noise
        t0 = time.perf_counter(); ts, met, _ = _block(e_step(ts, r, ctx.program)); te.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); meta, opt, dl = _block(d_step(meta, opt, norm, r)); td.append(time.perf_counter() - t0)
    out = {"config": os.path.relpath(config, os.path.join(os.path.dirname(__file__), "..")), "overrides": overrides or {},
           "setting": {"sizes": list(cfg.net.sizes), "activation": cfg.net.activation, "loss": cfg.net.loss, "k": st.k,
                       "stateful": st.stateful, "learner_mlp": list(st.mlp), "inner_steps": m.inner_steps,
                       "batch": m.batch, "outer_batch": m.outer_batch, "cv_batch": cfg.data.cv_batch,
                       "objective": obj.model_dump(), "outer_map": m.outer_map, "remat": m.remat},
           "first_meta_loss": first_loss, "last_meta_loss": {"engine": float(met["meta_loss"]), "dense": float(dl)},
           "engine_s": statistics.median(te), "dense_s": statistics.median(td),
           "time_ratio": statistics.median(te) / statistics.median(td),
           "median_round_ratio": statistics.median(a / b for a, b in zip(te, td)),
           "first_call_s": {"engine": first_e, "dense": first_d}, "engine_runs_s": te, "dense_runs_s": td,
           "loadavg_1_5_15": {"before": list(load_before), "after": list(os.getloadavg())}}
    print(f"[maml+mplp meta-step] engine {out['engine_s']:.3f}s dense {out['dense_s']:.3f}s ratio "
          f"{out['time_ratio']:.3f} (median of round ratios {out['median_round_ratio']:.3f}); first meta-loss "
          f"{first_loss['engine']:.6g} / {first_loss['dense']:.6g}, last {out['last_meta_loss']['engine']:.6g} / "
          f"{out['last_meta_loss']['dense']:.6g}", flush=True)
    return out


def bench_gradient(runs: int, steps: int, batch: int, sizes=(144, 50, 10)) -> dict:
    g = mlp(list(sizes), activation="sigmoid", loss="cross_entropy", seed=0)
    prog = compile(g)
    params = gradient.params(g, 0.1)
    rng = np.random.default_rng(1)
    batches = {"x": jnp.asarray(rng.normal(size=(steps, batch, sizes[0])), jnp.float32),
               "y": jnp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], (steps, batch))], jnp.float32)}
    weights = [(jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32)) for W, b in mlp_weights(prog.to_agents(prog.init(1)), sizes)]

    def dense_loss(ws, x, y):
        h = x
        for l, (W, b) in enumerate(ws):
            h = h @ W + b
            if l < len(ws) - 1:
                h = jax.nn.sigmoid(h)
        return -(y * jax.nn.log_softmax(h)).sum(-1).mean()

    def sgd(ws, bt):
        l, gr = jax.value_and_grad(dense_loss)(ws, bt["x"], bt["y"])
        return jax.tree.map(lambda w, d: w - 0.1 * d, ws, gr), l

    prog_a = compile(g, linear=False)
    f_c = jax.jit(lambda s, b: prog.unroll(params, s, b)[1])
    f_a = jax.jit(lambda s, b: prog_a.unroll(params, s, b)[1])
    f_d = jax.jit(lambda w, b: jax.lax.scan(sgd, w, b)[1])
    s0, s0_a = prog.init(batch), prog_a.init(batch)  # the two lowerings keep different scratch fields
    lc, la, ld = f_c(s0, batches), f_a(s0_a, batches), f_d(weights, batches)
    tc, ta, td = [], [], []
    _block(lc), _block(la), _block(ld)
    for _ in range(runs):
        tc.append(_time(f_c, s0, batches))
        ta.append(_time(f_a, s0_a, batches))
        td.append(_time(f_d, weights, batches))
    res = {"max_abs_loss_diff": float(jnp.max(jnp.abs(lc - ld))), "compiled_s": statistics.median(tc),
           "agentwise_s": statistics.median(ta), "dense_jax_grad_s": statistics.median(td),
           "time_ratio": statistics.median(tc) / statistics.median(td),
           "agentwise_time_ratio": statistics.median(ta) / statistics.median(td)}
    print(f"[gradient protocol, {steps} steps] compiled {res['compiled_s'] * 1e3:.2f} ms (agent by agent "
          f"{res['agentwise_s'] * 1e3:.2f} ms), jax.grad+SGD {res['dense_jax_grad_s'] * 1e3:.2f} ms, ratio "
          f"{res['time_ratio']:.2f} (agent by agent {res['agentwise_time_ratio']:.2f}), loss diff {res['max_abs_loss_diff']:.1e}", flush=True)
    return res


def bench_blur(runs: int, steps: int, batch: int, sizes=(196, 20, 10), k: int = 3, pop: int = 16,
               chunk: int = 4) -> dict:
    """BLUR inner loop: compiled (both lowerings) vs the dense baseline, one genome and ``pop``
    (vmapped, and ``lax.map`` over vmapped chunks of ``chunk``)."""
    from agentgraph.builders import mlp_network
    from agentgraph.protocols.blur import GROUP, blur_network, init_genome

    b = blur_network(mlp_network(list(sizes), activation="tanh", loss="cross_entropy"), k=k, sigma="tanh", exact=False)
    rng = np.random.default_rng(0)
    genome = init_genome(k, jax.random.PRNGKey(0))
    genomes = jax.tree.map(lambda v: v + 0.01 * jnp.arange(pop, dtype=v.dtype).reshape((pop,) + (1,) * v.ndim), genome)
    xs = jnp.asarray(rng.uniform(-1, 1, (steps, batch, sizes[0])), jnp.float32)
    ys = jnp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], (steps, batch))], jnp.float32)
    W = [jnp.asarray(rng.normal(0, 0.1, (sizes[l], sizes[l + 1], k)), jnp.float32) for l in range(len(sizes) - 1)]
    Bias = [jnp.zeros((sizes[l + 1], k), jnp.float32) for l in range(len(sizes) - 1)]
    res = {"sizes": list(sizes), "k": k, "steps": steps, "batch": batch, "population": pop}
    fns = {}
    for name, linear in (("compiled", True), ("agentwise", False)):
        prog = compile(b.graph, linear=linear)
        s0 = prog.init(batch)

        def run(gn, prog=prog, s0=s0):
            s, _ = prog.unroll({GROUP: gn}, s0, {"x": xs, "y": ys})
            return s["blur_synapse"]["w"].sum() + s["blur_output"]["b"].sum()
        fns[name] = run
    fns["dense"] = lambda gn: sum(w.sum() for w in blur_dense.blur_unroll(gn, W, Bias, xs, ys)[0])
    chunked = lambda f: lambda g: jax.lax.map(f, g, batch_size=chunk)  # noqa: E731
    for label, arg, wrap in (("one", genome, lambda f: f), ("population", genomes, jax.vmap),
                             (f"population_chunk{chunk}", genomes, chunked)):
        jitted = {n: jax.jit(wrap(f)) for n, f in fns.items()}
        for f in jitted.values():
            _block(f(arg))
        times = {n: [] for n in jitted}
        for _ in range(runs):
            for n, f in jitted.items():
                times[n].append(_time(f, arg))
        med = {n: statistics.median(t) for n, t in times.items()}
        res[label] = {**{f"{n}_s": v for n, v in med.items()},
                      "time_ratio": med["compiled"] / med["dense"], "agentwise_time_ratio": med["agentwise"] / med["dense"]}
        if label.startswith("population_chunk"):  # against the dense baseline's faster way of running a population
            best = min(med["dense"], res["population"]["dense_s"])
            res[label]["time_ratio_to_best_dense"] = med["compiled"] / best
            print(f"[BLUR {label}] compiled / the dense baseline's best (vmapped or chunked): "
                  f"{res[label]['time_ratio_to_best_dense']:.2f}", flush=True)
        print(f"[BLUR {label}, {steps} steps] compiled {med['compiled'] * 1e3:.2f} ms, agent by agent "
              f"{med['agentwise'] * 1e3:.2f} ms, dense {med['dense'] * 1e3:.2f} ms: ratios "
              f"{res[label]['time_ratio']:.2f} / {res[label]['agentwise_time_ratio']:.2f}", flush=True)
    return res


def bench_scale(name: str, build, batch: int, runs: int) -> dict:
    t0 = time.perf_counter(); g = build(); t_build = time.perf_counter() - t0
    t0 = time.perf_counter(); prog = compile(g); t_plan = time.perf_counter() - t0
    n_in, n_out = len(g.agents("input")), len(g.agents("target"))
    rng = np.random.default_rng(2)
    b = {"x": jnp.asarray(rng.normal(size=(batch, n_in)), jnp.float32),
         "y": jnp.asarray(np.eye(n_out)[rng.integers(0, n_out, batch)], jnp.float32)}
    params = gradient.params(g, 0.1)
    s = prog.init(batch)
    step = jax.jit(prog.step)
    t0 = time.perf_counter(); s, l = _block(step(params, s, b)); t_xla = time.perf_counter() - t0
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter(); s, l = _block(step(params, s, b)); ts.append(time.perf_counter() - t0)
    res = {"synapse_agents": len(g.agents("synapse")), "agents": g.number_of_agents(),
           "arrows": g.number_of_arrows(), "build_s": t_build, "plan_s": t_plan, "xla_compile_and_first_step_s": t_xla,
           "build_plus_compile_s": t_build + t_plan + t_xla, "step_s": statistics.median(ts),
           "blocks": sum(len(w) for w in prog.plan.forward + prog.plan.backward),
           "segment_ports": sum(p.lowering == "segment" for w in prog.plan.forward + prog.plan.backward for bl in w for p in bl.ports)}
    print(f"[scale {name}] {res['synapse_agents']} synapses: build {t_build:.2f}s plan {t_plan:.2f}s "
          f"xla {t_xla:.2f}s -> {res['build_plus_compile_s']:.2f}s; step {res['step_s'] * 1e3:.2f} ms", flush=True)
    return res


SCALES = {
    "7.7k": lambda: mlp([144, 50, 10], seed=0),
    "79.5k": lambda: mlp([784, 100, 10], seed=0),
    "random_dag_8k": lambda: random_dag(144, 60, 10, edge_prob=0.6, parallel_prob=0.05, activation="sigmoid",
                                        loss="cross_entropy", seed=0),
    "1M": lambda: mlp([784, 1250, 16], seed=0),
}


def bench_scale_subprocess(name: str, runs: int) -> dict:
    """Run one scale benchmark in a fresh process, so its peak memory (max RSS) is its own."""
    import resource
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--scale-only", name, "--runs", str(runs)],
                         capture_output=True, text=True, check=True)
    print(out.stdout.strip().splitlines()[0], flush=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--only", choices=["mplp", "gradient", "scale", "blur", "maml_mplp"], default=None,
                    help="run one part only (maml_mplp: only with --only; see figure 6)")
    ap.add_argument("--maml-config", default=MAML_MPLP_CONFIG, help="maml_mplp: the MAML + MPLP config")
    ap.add_argument("--skip-1m", action="store_true", help="skip the 1M-synapse graph")
    ap.add_argument("--forward-only", action="store_true", help="mplp: time the forward unroll only")
    ap.add_argument("--task-map", action="store_true",
                    help="mplp: run the tasks one after another (lax.map) instead of vmapped, in both implementations")
    ap.add_argument("--blur-chunk", type=int, default=4, help="blur: candidates per chunk of the chunked population")
    ap.add_argument("--mplp-setting", choices=sorted(MPLP_SETTINGS), default="mnist",
                    help="mplp: the paper's MNIST meta-step (default) or its sinusoid one (stored as mplp_sinusoid)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--scale-only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.scale_only:
        print(json.dumps(bench_scale(args.scale_only, SCALES[args.scale_only], 8, args.runs)))
        return 0
    dev = jax.devices()[0]
    tag = dev.platform
    out_path = args.out or os.path.join(os.path.dirname(__file__), "results", f"compiler-{tag}.json")
    res: dict = {"device": str(dev), "platform": tag, "jax": jax.__version__, "python": platform.python_version(),
                 "machine": platform.machine(), "cpu_count": os.cpu_count(), "runs": args.runs}
    if args.quick:
        res["mplp"] = bench_mplp(args.runs, 2, 3, 4, sizes=(12, 6, 3))
        res["gradient"] = bench_gradient(args.runs, 3, 4, sizes=(12, 6, 3))
        res["blur"] = bench_blur(args.runs, 3, 4, sizes=(12, 6, 3), pop=2, chunk=1)
        res["scale"] = {"small": bench_scale("small", lambda: mlp([20, 10, 3], seed=0), 8, args.runs)}
    else:
        if args.only in (None, "mplp"):
            st = dict(MPLP_SETTINGS[args.mplp_setting])
            tasks = st.pop("tasks", args.tasks)
            key = "mplp" if args.mplp_setting == "mnist" else f"mplp_{args.mplp_setting}"
            res[key] = bench_mplp(args.runs, tasks, st.pop("steps"), st.pop("batch"), forward_only=args.forward_only,
                                  task_map=args.task_map, **st)
        if args.only in (None, "gradient"):
            res["gradient"] = bench_gradient(args.runs, 20, 8)
        if args.only in (None, "blur"):
            res["blur"] = bench_blur(args.runs, 20, 8, chunk=args.blur_chunk)
        if args.only == "maml_mplp":
            res["maml_mplp"] = bench_maml_mplp(args.runs, args.maml_config)
    if not args.quick and args.only in (None, "scale"):
        names = [n for n in SCALES if not (args.skip_1m and n == "1M")]
        # peak RSS of children is a running maximum over the runs so far (1M runs last)
        res["scale"] = {n: bench_scale_subprocess(n, args.runs) for n in names}
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    if args.only and os.path.exists(out_path):  # one part re-run: keep the others' figures
        with open(out_path) as f:
            res = {**json.load(f), **res}
    with open(out_path, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
