"""The hand-written dense MAML + MPLP meta-step (the benchmark baseline) computes exactly the engine's
meta-loss and meta-gradient (float64, tiny setting of examples/configs/maml_sinusoid.toml)."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.loop import batch_meta_loss
from agentgraph.meta.optimizers import init_training_shapes
from agentgraph.meta.step import task_loss_fn
from agentgraph.meta.tasks import task_family

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"))
import maml_mplp_dense

#: XLA's backend optimisations off: the same numbers, compiled in about two thirds of the time
#: (the CI budget); what is compared is the maths, not the speed.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def test_dense_maml_mplp_equals_engine_meta_loss_and_gradient():
    hint_weight, cv_weight = 0.4, 0.6  # both terms of MPLP's hint_cv (the MAML setting has hint 0)
    cfg = parse_config({
        "net": {"sizes": [1, 4, 3, 1], "activation": "relu", "loss": "l2"},
        "data": {"task": "sinusoid", "cv_batch": 7},
        "protocol": {"rule": "mplp", "k": 2, "stateful": False, "mlp": [6, 5]},
        "meta": {"inner_steps": 2, "batch": 5, "outer_batch": 2, "maml": True,
                 "objective": {"kind": "hint_cv", "hint_weight": hint_weight, "cv_weight": cv_weight}},
    })
    with jax.enable_x64(True):
        ctx = make_context(cfg)
        ts = init_training_shapes(ctx)
        f64 = lambda t: jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), t)
        rng = np.random.default_rng(0)
        # non-trivial normalisation and update sizes, so that wiring mistakes show
        stats = {g: {"in_mean": rng.normal(0, 0.3, s["in_mean"].shape), "in_inv_std": rng.uniform(0.5, 2, s["in_inv_std"].shape),
                     "out_mean": rng.normal(0, 0.1, ())} for g, s in ts.stats.items()}
        learned = {g: {**p, "out_scale": jnp.asarray(0.3)} for g, p in ts.trainable["protocol"].items()}
        prior = jax.tree.map(lambda v: rng.normal(0, 0.5, v.shape), ts.trainable["prior"])
        trainable, stats = f64({"protocol": learned, "prior": prior}), f64(stats)
        tasks = f64(jax.vmap(task_family(cfg).sample)(jax.random.split(jax.random.PRNGKey(3), 2)))
        w0s = jax.tree.map(lambda v: jnp.stack([v, v]), trainable["prior"])  # unused: the prior replaces them
        one = task_loss_fn(ctx, warm=False, stage=None, phase=0)
        (loss_e, aux_e), g_e = jax.jit(jax.value_and_grad(
            lambda tr: batch_meta_loss(tr, stats, ctx, ctx.program, tasks, w0s, one), has_aux=True),
            compiler_options=FAST_COMPILE)(trainable)

        meta, norm = maml_mplp_dense.from_engine(ctx, trainable, stats)
        meta, norm = f64(meta), f64(norm)
        kw = {"activation": "relu", "loss": "l2", "k": 2, "hint_weight": hint_weight, "cv_weight": cv_weight}
        (loss_d, aux_d), g_d = jax.jit(jax.value_and_grad(
            lambda m: maml_mplp_dense.meta_loss(m, norm, tasks, **kw), has_aux=True), compiler_options=FAST_COMPILE)(meta)
        # the engine's meta-gradient in the dense layout: learners one to one, the prior as matrices
        g_e_dense = maml_mplp_dense.from_engine(ctx, g_e, stats)[0]

    assert loss_e.dtype == jnp.float64 and loss_d.dtype == jnp.float64
    np.testing.assert_allclose(float(loss_d), float(loss_e), rtol=0, atol=1e-9)
    for key in ("loss", "hint", "cv"):
        np.testing.assert_allclose(np.asarray(aux_d[key]), np.asarray(aux_e[key]), rtol=0, atol=1e-9)
    # the inner loop really learned: the held-out loss differs from the prior's
    assert abs(float(aux_e["loss"][-1] - aux_e["loss"][0])) > 1e-4
    # meta-gradient: the learners' and the prior's
    flat_e, tree_e = jax.tree.flatten(g_e_dense)
    flat_d, tree_d = jax.tree.flatten(g_d)
    assert tree_e == tree_d
    largest = max(float(np.abs(v).max()) for v in flat_e)
    assert largest > 1e-3  # a gradient that is there
    for a, b in zip(flat_e, flat_d):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-9)
