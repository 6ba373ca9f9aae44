"""Evolution strategies as the meta-optimiser (``meta.optimizer: {kind: es}``): every strategy
runs a generation; ES meta-trains (a MAML prior on digits, accuracy up); a run killed between
checkpoints resumes bit-identical (the strategy's state is in the checkpoint); a candidate with a
NaN fitness is ranked last and reported, a generation with no finite candidate is not taken;
bad ES settings are refused naming the field."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError
from agentgraph import checkpoint as ckpt
from agentgraph.meta import es as es_mod
from agentgraph.meta.config import parse_config
from agentgraph.meta.context import make_context
from agentgraph.meta.optimizers import make_meta_step
from agentgraph.meta.strategies import ES_STRATEGIES
from agentgraph.meta.state import NON_FINITE, TAKEN
from agentgraph.meta.tasks import task_family
from agentgraph.meta.train import init_training_shapes, train
from helpers import _metrics


def _tiny(opt, out_dir="unused", schedules=None, **meta):
    return parse_config({"data": {"task": "sinusoid", "cv_batch": 20}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
                         "protocol": {"rule": "sgd", "lr": 0.1},
                         "meta": {"inner_steps": 2, "batch": 4, "outer_batch": 2, "prior_pool": 2, "maml": True,
                                  "objective": "heldout", "optimizer": opt, **meta},
                         "schedules": schedules or {}, "run": {"out_dir": str(out_dir)}})


def _digits(out_dir, steps):
    """A MAML prior for SGD(0.1) on 8×8 digits, (64, 10) sigmoid, 2 inner steps: 650 numbers."""
    return parse_config({"data": {"task": "digits", "image_size": 8, "cv_batch": 50},
                         "net": {"sizes": [64, 10], "activation": "sigmoid", "loss": "cross_entropy"},
                         "protocol": {"rule": "sgd", "lr": 0.1},
                         "meta": {"inner_steps": 2, "batch": 8, "meta_steps": steps, "prior_pool": 2, "maml": True,
                                  "objective": "heldout", "outer_batch": 2,
                                  "optimizer": {"kind": "es", "strategy": "open_es", "popsize": 16, "sigma": 0.05,
                                                "lr": 0.05}},
                         "run": {"out_dir": str(out_dir), "checkpoint_every": 4, "eval_every": steps, "eval_runs": 10}})


def _flat(tree):
    return np.concatenate([np.ravel(v) for v in jax.tree.leaves(tree)])


@pytest.mark.parametrize("strategy", sorted(ES_STRATEGIES))
def test_every_strategy_runs_a_generation_and_moves_its_mean(strategy):
    cfg = _tiny({"kind": "es", "strategy": strategy, "popsize": 8, "sigma": 0.1})
    ctx = make_context(cfg)
    ts0 = init_training_shapes(ctx)
    ts, m, status = make_meta_step(ctx, task_family(cfg))(ts0, 0, ctx.program)
    assert int(status) == TAKEN and int(m["nan_candidates"]) == 0
    moved = np.abs(_flat(ts.trainable) - _flat(ts0.trainable)).max()
    assert 0 < moved < 10 and np.isfinite(_flat(ts.trainable)).all()
    assert float(m["best_fitness"]) <= float(m["meta_loss"])  # the best candidate is no worse than the mean


def test_chunked_population_scores_as_the_vmapped_one():
    """``meta.optimizer.chunk``: candidates scored by lax.map over chunks (3 does not divide 8)."""
    outs = []
    for chunk in (None, 3):
        cfg = _tiny({"kind": "es", "strategy": "open_es", "popsize": 8, "sigma": 0.1, "chunk": chunk})
        ctx = make_context(cfg)
        ts, m, _ = make_meta_step(ctx, task_family(cfg))(init_training_shapes(ctx), 0, ctx.program)
        outs.append((_flat(ts.trainable), float(m["meta_loss"])))
    np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[1][1], outs[0][1], rtol=1e-5)


def test_es_meta_trains_and_a_killed_run_resumes_bit_identical(tmp_path):
    ref = _digits(tmp_path / "ref", 16)
    train(ref, progress=False, log=lambda s: None)
    evals = [r["eval"] for r in _metrics(ref.run.out_dir) if "eval" in r]
    assert evals[-1] > evals[0] + 0.15, evals  # accuracy after 2 SGD steps from the evolved prior
    cut = _digits(tmp_path / "cut", 16)
    train(cut, progress=False, log=lambda s: None, max_steps=6)
    os.remove(os.path.join(cut.run.out_dir, "ckpt_00000005.npz"))  # as if killed after step 5, before saving it
    train(cut, resume=True, progress=False, log=lambda s: None)
    a, b = ckpt.latest(ref.run.out_dir), ckpt.latest(cut.run.out_dir)
    fa, ha = ckpt.load(a)
    fb, _ = ckpt.load(b)
    assert sorted(fa) == sorted(fb) and any(".mean" in k for k in fa)  # the strategy's state is saved
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert strip(_metrics(cut.run.out_dir)) == strip(_metrics(ref.run.out_dir))


def _nan_where(pred):
    """``batch_meta_loss`` with the fitness of candidates ``pred(candidate)`` set to NaN."""
    real = es_mod.batch_meta_loss

    def patched(tr, *a):
        loss, aux = real(tr, *a)
        return jnp.where(pred(tr), jnp.nan, loss), aux

    return patched


def test_nan_fitness_ranks_last_and_is_reported_and_all_nan_is_not_taken(tmp_path, monkeypatch):
    cfg = _tiny({"kind": "es", "strategy": "open_es", "popsize": 8, "sigma": 0.1}, tmp_path / "run", meta_steps=2)
    ctx = make_context(cfg)
    ts0 = init_training_shapes(ctx)
    x0 = _flat(ts0.trainable)[0]
    first = lambda tr: _flat_j(tr)[0]  # noqa: E731
    monkeypatch.setattr(es_mod, "batch_meta_loss", _nan_where(lambda tr: first(tr) > x0))
    ts, m, status = make_meta_step(ctx, task_family(cfg))(ts0, 0, ctx.program)
    assert int(status) == TAKEN and int(m["nan_candidates"]) == 4  # antithetic: half the pairs' + side
    assert np.isfinite(_flat(ts.trainable)).all() and np.isfinite(float(m["meta_loss"]))
    # ranked last: the mean moves away from the NaN side along that coordinate
    assert _flat(ts.trainable)[0] < x0
    logs = []
    train(cfg, progress=False, log=logs.append)
    assert any("non-finite fitness" in s and "ranked last" in s for s in logs), logs
    monkeypatch.setattr(es_mod, "batch_meta_loss", _nan_where(lambda tr: True))
    ts, m, status = make_meta_step(ctx, task_family(cfg))(ts0, 0, ctx.program)
    assert int(status) == NON_FINITE and np.array_equal(_flat(ts.trainable), _flat(ts0.trainable))


def _flat_j(tree):
    return jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(tree)])


@pytest.mark.parametrize("opt, match", [
    ({"kind": "es", "strategy": "cma-es"}, r"meta.optimizer.strategy: 'cma-es' is not one of \['cma_es'"),
    ({"kind": "es", "strategy": "cma_es", "lr": 0.1}, r"meta.optimizer: lr: strategy 'cma_es' adapts its own step size and takes no lr"),
    ({"kind": "es", "strategy": "open_es", "popsize": 7}, r"meta.optimizer: popsize: .*antithetic pairs, so popsize must be even, got 7"),
    ({"kind": "es", "sigma": 0}, r"meta.optimizer.sigma: Input should be greater than 0"),
    ({"kind": "evolution"}, r"meta.optimizer: Input tag 'evolution' found using 'kind' does not match"),
])
def test_bad_es_settings_are_refused_naming_the_field(opt, match):
    with pytest.raises(AgentGraphError, match=match):
        _tiny(opt)


def test_es_refuses_a_gradient_warm_start_and_a_meta_lr_schedule(tmp_path):
    with pytest.raises(AgentGraphError, match=r"schedules\.meta_lr sets the gradient meta-optimiser's rate"):
        _tiny({"kind": "es"}, schedules={"meta_lr": [[0, 1e-3]]})
    cfg = parse_config({"data": {"task": "sinusoid", "cv_batch": 20}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
                        "protocol": {"rule": "mplp", "imitation_steps": 3, "calibration_rounds": 1},
                        "meta": {"inner_steps": 2, "batch": 4, "optimizer": {"kind": "es", "popsize": 4}},
                        "run": {"out_dir": str(tmp_path / "run")}})
    with pytest.raises(AgentGraphError, match=r"3 warm-start meta-steps.*protocol.imitation_steps: 0"):
        train(cfg, progress=False, log=lambda s: None)


def test_es_records_the_centres_fitness_every_generation():
    """The centre's fitness is logged each generation, on the same tasks as the population."""
    from agentgraph.meta.config import parse_config
    from agentgraph.meta.context import make_context
    from agentgraph.meta.devices import device_mesh
    from agentgraph.meta.es import make_es_step
    from agentgraph.meta.optimizers import init_training_shapes
    from agentgraph.meta.tasks import task_family

    cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"},
                        "protocol": {"rule": "sgd"}, "meta": {"inner_steps": 2, "batch": 4, "maml": True, "prior_pool": 2,
                        "objective": "heldout", "optimizer": {"kind": "es", "strategy": "snes", "popsize": 4}}})
    ctx = make_context(cfg)
    step = make_es_step(ctx, task_family(cfg), mesh=device_mesh())
    ts, metrics, _ = step(init_training_shapes(ctx), 0, ctx.program)
    assert np.isfinite(float(metrics["centre_fitness"]))
    assert float(metrics["centre_fitness"]) != float(metrics["meta_loss"])  # the centre is not the population mean
