"""Evolution-strategy throughput against the gradient meta-step, and ES on forced host devices.

Run:  python benchmarks/bench_es.py [--rounds 3] [--steps 4] [--settings digits,mnist]
          [--out benchmarks/results/bench_es.json]

For each setting (``digits``: examples/configs/digits.yaml, MPLP on (64,10), 10 inner steps ×
batch 8, outer batch 2; ``mnist``: examples/configs/mnist.yaml, (144,50,10), 20 × 8, outer batch
1; both without the imitation warm start), every round times, each in a fresh process and
alternating, the gradient meta-step and one OpenES generation (``popsize`` candidates, each
scored on the step's outer batch of tasks). Reported: medians over rounds of the per-step
medians; **candidate-evaluations per second** (popsize / generation time); and how many
candidates one gradient meta-step costs (gradient step time / time per candidate) — the
population ES gets for the CPU time of one gradient step.

``--chunks 4,8,16`` (default) times, for the settings of ``--chunk-settings`` (default
``blur``: examples/configs/blur_mnist14.yaml, CMA-ES, 80 candidates; and ``digits``), one
generation with the candidates scored all in one ``vmap`` against ``meta.optimizer.chunk`` =
each value (``lax.map`` over chunks), alternating fresh processes: the ratio chunked / all at once.

``--devices 1,2,4`` (default) also runs the digits generation with
``--xla_force_host_platform_device_count`` N: the population split over N host devices. On a
2-core machine that checks correctness (the meta-parameters after the steps agree with N = 1),
not speed; the times are printed for completeness.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BENCH = os.path.join(ROOT, "benchmarks", "bench_meta_step.py")

SETTINGS = {
    "digits": ("examples/configs/digits.yaml", 64),
    "mnist": ("examples/configs/mnist.yaml", 32),
}
#: settings whose own config is already an ES run (used as it is, only ``chunk`` varied)
ES_CONFIGS = {"blur": "examples/configs/blur_mnist14.yaml"}
NO_WARM = {"protocol.imitation_steps": 0}


def _es(popsize: int) -> dict:
    return {**NO_WARM, "meta.optimizer": {"kind": "es", "strategy": "open_es", "popsize": popsize, "sigma": 0.03}}


def _worker(config: str, overrides: dict, steps: int, env: dict | None = None, params: bool = False) -> dict:
    cmd = [sys.executable, BENCH, "--worker", "--config", config, "--steps", str(steps),
           "--overrides", json.dumps(overrides)] + (["--return-params"] if params else [])
    out = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--settings", default="digits,mnist")
    ap.add_argument("--devices", default="1,2,4")
    ap.add_argument("--chunks", default="4,8,16", help="meta.optimizer.chunk values against one vmap ('' skips)")
    ap.add_argument("--chunk-settings", default="blur,digits")
    ap.add_argument("--out", default="benchmarks/results/bench_es.json")
    a = ap.parse_args(argv)
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "rounds": a.rounds,
              "steps": a.steps, "settings": {}, "devices": {}, "chunks": {}}
    for name in [n for n in a.settings.split(",") if n]:
        config, pop = SETTINGS[name]
        runs: dict[str, list[float]] = {"gradient": [], "es": []}
        for r in range(a.rounds):
            for variant, over in (("gradient", NO_WARM), ("es", _es(pop))):
                res = _worker(config, over, a.steps)
                runs[variant].append(res["median_step_s"])
                print(f"{name} round {r}: {variant:8s} {res['median_step_s']:.3f} s/step "
                      f"(first {res['first_step_s']:.1f} s)", flush=True)
        g, e = statistics.median(runs["gradient"]), statistics.median(runs["es"])
        row = {"config": config, "popsize": pop, "strategy": "open_es", "gradient_step_s": g, "es_generation_s": e,
               "candidate_evaluations_per_s": pop / e, "gradient_steps_per_s": 1 / g,
               "candidates_per_gradient_step": g / (e / pop), "round_medians_s": runs}
        result["settings"][name] = row
        print(f"{name}: gradient {g:.3f} s/step; OpenES {pop} candidates {e:.3f} s/generation = "
              f"{pop / e:.1f} candidate-evaluations/s; one gradient step costs {g / (e / pop):.1f} candidates", flush=True)
    chunks = [int(c) for c in a.chunks.split(",") if c]
    for name in [n for n in a.chunk_settings.split(",") if n] if chunks else []:
        if name in ES_CONFIGS:
            config, es = ES_CONFIGS[name], {}
        else:
            config, pop = SETTINGS[name]
            es = _es(pop)
        variants = {"all": es, **{str(c): {**es, "meta.optimizer.chunk": c} for c in chunks}}
        runs = {v: [] for v in variants}
        for r in range(a.rounds):
            for v, over in variants.items():
                res = _worker(config, over, a.steps)
                runs[v].append(res["median_step_s"])
                print(f"{name} round {r}: chunk {v:4s} {res['median_step_s']:.3f} s/generation", flush=True)
        med = {v: statistics.median(t) for v, t in runs.items()}
        result["chunks"][name] = {"config": config, "generation_s": med, "round_medians_s": runs,
                                  "ratio_to_all": {v: med[v] / med["all"] for v in med}}
        print(f"{name}: " + ", ".join(f"chunk {v} {med[v]:.3f} s ({med[v] / med['all']:.2f}x)" for v in med), flush=True)
    devs = [int(d) for d in a.devices.split(",") if d]
    if devs:
        config, pop = SETTINGS["digits"]
        ref = None
        for n in devs:
            env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
            res = _worker(config, _es(pop), a.steps, env, params=True)
            p = res.pop("params")
            ref = p if ref is None else ref
            dev = max(abs(x - y) for x, y in zip(p, ref))
            scale = max(abs(y) for y in ref)
            result["devices"][str(n)] = {"devices_seen": res["devices"], "es_generation_s": res["median_step_s"],
                                         "max_abs_param_difference_to_1": dev, "max_abs_param": scale}
            print(f"digits OpenES on {n} forced host device(s): {res['median_step_s']:.3f} s/generation; meta-parameters "
                  f"differ from 1 device by at most {dev:.2e} (largest magnitude {scale:.2f})", flush=True)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
