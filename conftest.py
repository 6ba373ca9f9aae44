"""Shared test settings (tests/ and the doctests of agentgraph/ and examples/): hypothesis
profiles sized for CI, a persistent JAX compile cache, and XLA's cheapest CPU code generation —
the tests' programs are tiny, so compiling them costs far more than running them."""

from __future__ import annotations

import gc
import os
import sys

# before the first computation creates the CPU backend; the two flags cut a meta-training test's
# time by about a third (XLA:CPU's fusion emitters compile slowly; the tests' programs are tiny)
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"]).strip()

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

_root = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_root, "tests"))  # tests/helpers.py

_cache = os.path.join(_root, ".jax_cache")
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# Tracing and lowering JAX programs (most of the suite's time) allocate millions of long-lived
# objects, and the cyclic garbage collector's default thresholds (700, 10, 10) rescan that heap
# thousands of times per file: about a tenth of a tracing-heavy test's CPU time. Collect less
# often (garbage is still collected: cycles within 50 000 allocations, the old generations every
# ~1e6 and ~2e7), and never rescan what the imports above created.
gc.freeze()
gc.set_threshold(50_000, 20, 20)

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
