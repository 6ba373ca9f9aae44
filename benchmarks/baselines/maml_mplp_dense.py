"""A hand-written dense MAML + MPLP meta-step — the speed baseline of the MAML row (issue 36).

The same maths as meta-training ``examples/configs/maml_sinusoid.toml`` (MPLP learners learned
jointly with the network's initial weights, MAML's prior): for each task of the outer batch, start
from the prior ``(W_l, b_l)``, run ``K`` MPLP inner steps (:func:`mplp_dense.step`, stateless or
stateful learners), score ``hint_weight * mean over steps of the loss on the batch just learned
from (after the update) + cv_weight * held-out loss after the last step`` (MPLP's ``hint_cv``;
the MAML setting has ``hint_weight = 0``), average over the tasks, differentiate with respect to the
learners and the prior, and take one step of the meta-optimiser (each gradient tensor divided by
its norm, then Adam, as :func:`agentgraph.meta.gradient.meta_optimizer`).

Everything is weights as matrices and one batched learner call per layer (the pieces of
:mod:`mplp_dense`); only :func:`from_engine` / :func:`prior_to_dense` read the engine's layout,
to start both from the same numbers. ``tests/benchmarks/test_maml_mplp_dense.py`` checks the
meta-loss and meta-gradient equal the engine's in float64; ``benchmarks/bench_compiler.py --only
maml_mplp`` times the two meta-steps against each other.

Meta-parameters (``meta``): ``{"learned": {group: {"learner": ..., "out_scale": ()}}, "prior":
{"W": [W_l [I, J]], "b": [b_l [J]]}}``; the normalisation (``norm``, not trained): ``{group:
{"in_mean": [F], "in_inv_std": [F], "out_mean": ()}}``; groups are the engine's
(``synapse:l``, ``bias:l``, ``<activation>:l``, the loss's name). Tasks: ``{"train": {"x": [N, K,
B, n_in], "y": [N, K, B, n_out]}, "cv": {"x": [N, C, n_in], "y": [N, C, n_out]}}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import mplp_dense
import numpy as np

__all__ = ["from_engine", "make_meta_step", "meta_loss", "prior_to_dense", "task_meta_loss"]


def task_meta_loss(meta: Mapping[str, Any], norm: Mapping[str, Any], task: Mapping[str, Any], *, activation: str,
                   loss: str, k: int, hint_weight: float, cv_weight: float,
                   carry: Mapping[str, int] | None = None) -> tuple[jax.Array, dict]:
    """Meta-loss of one task (module docstring) and ``aux = {"loss": [K], "hint": [K], "cv": ()}``.

    Args:
        meta, norm: meta-parameters and normalisation (module docstring).
        task: one task, ``{"train": {"x": [K, B, n_in], "y": [K, B, n_out]}, "cv": {"x": [C, n_in],
            "y": [C, n_out]}}``.
        activation, loss, k: the network's hidden activation, its loss (``l2``,
            ``cross_entropy``), the message size.
        hint_weight, cv_weight: the ``hint_cv`` objective's weights.
        carry: GRU carry sizes for stateful learners (:func:`mplp_dense.init_state`); ``None``
            for stateless ones.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from agentgraph.learners.mlp import init_mlp
        >>> ks = iter(jax.random.split(jax.random.PRNGKey(0), 20))
        >>> F = {"synapse": 4, "bias": 4, "relu": 3, "l2": 4}
        >>> def grp(kind):
        ...     return {"learner": {"f": init_mlp(next(ks), [F[kind], 5, 1]), "g": init_mlp(next(ks), [F[kind], 5, 2])},
        ...             "out_scale": jnp.asarray(0.01)}
        >>> groups = {"synapse:0": "synapse", "synapse:1": "synapse", "bias:0": "bias", "bias:1": "bias",
        ...           "relu:0": "relu", "l2": "l2"}
        >>> meta = {"learned": {g: grp(kd) for g, kd in groups.items()},
        ...         "prior": {"W": [jnp.ones((1, 3)), jnp.ones((3, 1))], "b": [jnp.zeros(3), jnp.zeros(1)]}}
        >>> norm = {g: {"in_mean": jnp.zeros(F[kd]), "in_inv_std": jnp.ones(F[kd]), "out_mean": jnp.asarray(0.0)}
        ...         for g, kd in groups.items()}
        >>> task = {"train": {"x": jnp.ones((2, 4, 1)), "y": jnp.zeros((2, 4, 1))},
        ...         "cv": {"x": jnp.ones((6, 1)), "y": jnp.zeros((6, 1))}}
        >>> m, aux = task_meta_loss(meta, norm, task, activation="relu", loss="l2", k=2, hint_weight=0.0, cv_weight=1.0)
        >>> m.shape, aux["loss"].shape, aux["hint"].shape
        ((), (2,), (2,))
    """
    params = {g: {**meta["learned"][g], **norm[g]} for g in norm}
    prior = meta["prior"]
    B = task["train"]["x"].shape[1]
    n_out = prior["W"][-1].shape[1]
    state = mplp_dense.init_state(list(zip(prior["W"], prior["b"])), B, carry, n_out)
    kw = {"activation": activation, "loss": loss}

    def body(s, batch):
        s, l = mplp_dense.step(params, s, batch, k=k, act_group=activation, **kw)
        hint = mplp_dense.forward(s["W"], s["b"], batch["x"], batch["y"], **kw)["total"]
        return s, (l, hint)

    state, (losses, hints) = jax.lax.scan(jax.checkpoint(body), state, task["train"])
    cv = mplp_dense.forward(state["W"], state["b"], task["cv"]["x"], task["cv"]["y"], **kw)["total"]
    return hint_weight * hints.mean() + cv_weight * cv, {"loss": losses, "hint": hints, "cv": cv}


def meta_loss(meta: Mapping[str, Any], norm: Mapping[str, Any], tasks: Mapping[str, Any], *, outer: str = "auto",
              **kw: Any) -> tuple[jax.Array, dict]:
    """Mean :func:`task_meta_loss` over an outer batch (tasks stacked on axis 0), the tasks one
    after another (``outer="map"``) or vmapped (``"vmap"``); ``"auto"``: one after another on CPU,
    as the engine's ``meta.outer_map: auto`` does. Returns ``(meta_loss (), aux averaged over the
    tasks)``; ``kw``: :func:`task_meta_loss`'s settings.

    Example:
        >>> import inspect
        >>> "outer" in inspect.signature(meta_loss).parameters
        True
    """
    how = ("map" if jax.default_backend() == "cpu" else "vmap") if outer == "auto" else outer
    one = lambda t: task_meta_loss(meta, norm, t, **kw)
    metas, aux = jax.lax.map(one, tasks) if how == "map" else jax.vmap(one)(tasks)
    return metas.mean(), jax.tree.map(lambda v: v.mean(0), aux)


def make_meta_step(sample: Callable[[jax.Array], dict], outer_batch: int, seed: int, meta_lr: float,
                   **kw: Any) -> Callable:
    """The jitted dense meta-step ``(meta, opt_state, norm, step) -> (meta, opt_state, meta_loss)``:
    ``outer_batch`` tasks drawn by ``sample`` (a task sampler, ``key -> task``) with the keys the
    engine's meta-step draws for ``run.seed = seed`` at meta-step ``step``, the meta-loss and its
    gradient, each gradient tensor divided by its norm, one Adam step at ``meta_lr``
    (:func:`agentgraph.meta.gradient.meta_optimizer`; its state: ``opt.init(meta)``). ``kw``:
    :func:`meta_loss`'s settings.

    Example:
        >>> from agentgraph.meta.tasks import sinusoid_task
        >>> step = make_meta_step(lambda key: sinusoid_task(key, 2, 4, 6), 2, 0, 1e-4, activation="relu",
        ...                       loss="l2", k=2, hint_weight=0.0, cv_weight=1.0)
        >>> callable(step)
        True
    """
    from agentgraph.meta.gradient import meta_optimizer

    opt = meta_optimizer(meta_lr)
    data_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)

    def step_fn(meta, opt_state, norm, step):
        k_tasks, _ = jax.random.split(jax.random.fold_in(data_key, step))
        tasks = jax.vmap(sample)(jax.random.split(k_tasks, outer_batch))
        (loss, _), grads = jax.value_and_grad(meta_loss, has_aux=True)(meta, norm, tasks, **kw)
        updates, opt_state = opt.update(grads, opt_state, meta)
        return jax.tree.map(lambda p, u: p + u, meta, updates), opt_state, loss

    return jax.jit(step_fn)


def prior_to_dense(ctx: Any, weights: Mapping[str, Any]) -> dict:
    """The engine's weights ``{kind: {field: [N]}}`` (a MAML prior, or its gradient) of an
    :func:`~agentgraph.mlp` graph as ``{"W": [W_l [I, J]], "b": [b_l [J]]}`` (numpy).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> ctx = make_context(parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 3, 1], "loss": "l2"}}))
        >>> [W.shape for W in prior_to_dense(ctx, ctx.fresh(jax.random.PRNGKey(0)))["W"]]
        [(1, 3), (3, 1)]
    """
    from agentgraph.builders import mlp_weights

    agents = ctx.program.to_agents(ctx.start(weights, 1))
    Wb = mlp_weights(agents, list(ctx.cfg.net.sizes))
    return {"W": [np.asarray(W) for W, _ in Wb], "b": [np.asarray(b) for _, b in Wb]}


def from_engine(ctx: Any, trainable: Mapping[str, Any], stats: Mapping[str, Any]) -> tuple[dict, dict]:
    """``(meta, norm)`` of this module from the engine's MAML + MPLP training state: its
    trainable ``{"protocol": learned, "prior": weights}`` and normalisation ``stats`` (MPLP with
    ``sharing: group``, on an :func:`~agentgraph.mlp` graph). The learned part maps one to one
    (a group's learner is its own), so a gradient maps the same way.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> from agentgraph.meta.optimizers import init_training_shapes
        >>> ctx = make_context(parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 3, 1], "loss": "l2"},
        ...                                  "protocol": {"stateful": False}, "meta": {"maml": True}}))
        >>> ts = init_training_shapes(ctx)
        >>> meta, norm = from_engine(ctx, ts.trainable, ts.stats)
        >>> sorted(norm)
        ['bias:0', 'bias:1', 'l2', 'sigmoid:0', 'synapse:0', 'synapse:1']
    """
    from agentgraph.protocols.mplp.sharing import share_keys

    keys = share_keys(ctx.net.graph, "group")
    learned = {g: trainable["protocol"][lkey] for g, (lkey, _, _) in keys.items()}
    norm = {g: stats[nkey] for g, (_, nkey, _) in keys.items()}
    return {"learned": learned, "prior": prior_to_dense(ctx, trainable["prior"])}, norm
