"""Shared test helpers (tests/ is on sys.path, see conftest.py): a small digits config, the
pieces of a meta-training context, a run's metrics, the environment of a child process."""

from __future__ import annotations

import os

import jax

from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.tasks import task_family
from agentgraph.rundir import read_metrics


def child_env(**extra) -> dict:
    """os.environ for a child Python process that meta-trains, plus ``extra``, with the tests' JAX
    compile cache (conftest.py) switched on there too: a child otherwise compiles its meta-step
    from scratch on every run. (Children that are killed mid-run are better left without it: the
    cache writes its entries in place, and a torn entry stays.)"""
    return dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=str(jax.config.jax_persistent_cache_min_compile_time_secs),
                **extra)


def digits_cfg(tmp_path, **over):
    tmp_path = __import__("pathlib").Path(tmp_path)
    cfg = {
        "net": {"sizes": [64, 10], "activation": "sigmoid", "loss": "cross_entropy"},
        "data": {"task": "digits", "image_size": 8, "cv_batch": 50},
        "protocol": {"k": 2, "hidden": 2, "sharing": "kind", "calibration_rounds": 2},
        "meta": {"inner_steps": 5, "batch": 8, "outer_batch": 2, "meta_steps": 100, "meta_lr": 1e-3,
                 "prior_pool": 8},
        "run": {"seed": 0, "out_dir": str(tmp_path / "run"), "checkpoint_every": 50},
    }
    for dotted, v in over.items():
        if "__" not in dotted:
            cfg[dotted] = v
            continue
        node = cfg
        *head, last = dotted.split("__")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = v
    return parse_config(cfg)


def _pieces(cfg, n_pool=1):
    """context, task family, fresh learned protocol, identity stats and a pool of start weights."""
    ctx = make_context(cfg)
    learned = ctx.protocol.init(jax.random.PRNGKey(0), ctx.net.graph)
    return ctx, task_family(cfg), learned, ctx.protocol.init_stats(ctx.net.graph), ctx.pool(jax.random.PRNGKey(1), n_pool)


def _first(pool):
    return jax.tree.map(lambda v: v[0], pool)


def _metrics(out_dir):
    return read_metrics(os.path.join(out_dir, "metrics.jsonl"))


