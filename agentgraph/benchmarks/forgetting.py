"""Catastrophic forgetting: a learner trained on a sequence of tasks, scored on every task after
each one.

Three pieces, each a small contract:

* :class:`Task` — a classification task's train and test arrays and, for task-incremental
  scoring, the classes its predictions are restricted to; :func:`permuted_tasks` (permuted
  MNIST: one fixed pixel permutation per task) and :func:`split_tasks` (split MNIST: pairs of
  classes) build the standard sequences from any :class:`~agentgraph.data.Dataset`.
* :class:`Learner` — ``init(key) -> state``, ``update(state, batch) -> state``,
  ``logits(state, x) -> [C, n_out]``: pure functions over a state pytree, jittable.
  :func:`optax_learner` (backprop with an optax optimiser on a library network) and
  :func:`protocol_learner` (any protocol's compiled network) make them.
* :func:`run_sequence` — the accuracy matrix ``R[i, j]`` (task ``j`` after training on task
  ``i``); :func:`forgetting` and :func:`average_accuracy` summarise it.

Example:
    >>> import numpy as np
    >>> R = np.array([[0.9, 0.1], [0.6, 0.8]])
    >>> round(forgetting(R), 3), round(average_accuracy(R), 3)
    (0.3, 0.7)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentgraph.data import Dataset
from agentgraph.errors import AgentGraphError

__all__ = ["Learner", "Task", "average_accuracy", "forgetting", "optax_learner", "permuted_tasks",
           "protocol_learner", "run_sequence", "split_tasks", "train_task"]


class Task(NamedTuple):
    """One classification task.

    Attributes:
        name: a label.
        x_train, x_test: float32 ``[N, d]`` / ``[M, d]``.
        y_train, y_test: int labels ``[N]`` / ``[M]``.
        classes: the classes predictions are restricted to when scoring (task-incremental), or
            ``None`` (all outputs).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[int, ...] | None = None


def permuted_tasks(ds: Dataset, n_tasks: int = 5, seed: int = 0, test: int | None = None) -> list[Task]:
    """Permuted-``ds``: task 0 the data as it is, task ``t`` its pixels in one fixed random order.

    Example:
        >>> from agentgraph.data import load_dataset
        >>> ts = permuted_tasks(load_dataset("digits"), 3)
        >>> [t.name for t in ts], ts[1].x_train.shape == ts[0].x_train.shape
        (['perm0', 'perm1', 'perm2'], True)
    """
    rng = np.random.default_rng(seed)
    d = ds.x_train.shape[1]
    out = []
    for t in range(n_tasks):
        perm = np.arange(d) if t == 0 else rng.permutation(d)
        out.append(Task(f"perm{t}", ds.x_train[:, perm], ds.y_train, ds.x_test[:test, perm], ds.y_test[:test]))
    return out


def split_tasks(ds: Dataset, groups: Sequence[Sequence[int]] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)),
                test: int | None = None) -> list[Task]:
    """Split-``ds``: one task per group of classes, scored among that group's classes only.

    Example:
        >>> from agentgraph.data import load_dataset
        >>> ts = split_tasks(load_dataset("digits"))
        >>> ts[0].name, ts[0].classes, sorted(set(ts[0].y_train.tolist()))
        ('split0-1', (0, 1), [0, 1])
    """
    out = []
    for g in groups:
        g = tuple(int(c) for c in g)
        tr, te = np.isin(ds.y_train, g), np.isin(ds.y_test, g)
        if not tr.any() or not te.any():
            raise AgentGraphError(f"split_tasks: classes {g} have no training or test examples in this dataset.")
        out.append(Task("split" + "-".join(map(str, g)), ds.x_train[tr], ds.y_train[tr], ds.x_test[te][:test],
                        ds.y_test[te][:test], g))
    return out


class Learner(NamedTuple):
    """A learning rule on one network, as pure functions over its state pytree.

    Attributes:
        name: a label.
        init: ``key -> state``: a fresh network (and optimiser) state.
        update: ``(state, {"x": [B, d], "y": [B, n_out] one-hot}) -> state``: one step.
        logits: ``(state, x [C, d]) -> [C, n_out]``: predictions on held-out examples.
        batch: the batch size its updates take.
    """

    name: str
    init: Callable[[jax.Array], Any]
    update: Callable[[Any, dict], Any]
    logits: Callable[[Any, jax.Array], jax.Array]
    batch: int = 8


def optax_learner(ctx: Any, opt: optax.GradientTransformation, name: str, batch: int = 8) -> Learner:
    """Backprop with ``opt`` on the library network of a meta-training context ``ctx``
    (:func:`~agentgraph.meta.context.make_context`); fresh weights as the context draws them.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> ctx = make_context(parse_config({"net": {"sizes": [64, 10]}, "data": {"task": "digits", "image_size": 8}}))
        >>> L = optax_learner(ctx, optax.sgd(0.1), "sgd")
        >>> s = L.update(L.init(jax.random.PRNGKey(0)), {"x": jnp.ones((8, 64)), "y": jnp.eye(10)[:8]})
        >>> L.logits(s, jnp.zeros((3, 64))).shape
        (3, 10)
    """
    prog = ctx.plain

    def forward(w, x, y):
        s, loss = prog.forward(None, ctx.start(w, x.shape[0], plain=True), {"x": x, "y": y})
        return loss, ctx.predict(s, plain=True)

    def init(key):
        w = ctx.fresh(key, plain=True)
        return w, opt.init(w)

    def update(state, b):
        w, o = state
        g = jax.grad(lambda w: forward(w, b["x"], b["y"])[0])(w)
        u, o = opt.update(g, o, w)
        return optax.apply_updates(w, u), o

    def logits(state, x):
        return forward(state[0], x, jnp.zeros((x.shape[0], len(ctx.base.readout.agents))))[1]

    return Learner(name, init, update, logits, batch)


def protocol_learner(ctx: Any, params: Any, name: str, batch: int = 8) -> Learner:
    """The context's protocol (``params`` from ``ctx.params``) on its compiled network; held-out
    predictions by :meth:`~agentgraph.meta.context.Context.held_out`.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> from agentgraph.meta.context import make_context
        >>> ctx = make_context(parse_config({"net": {"sizes": [64, 10]}, "data": {"task": "digits", "image_size": 8},
        ...                                  "protocol": {"rule": "attention", "lr": 0.1}}))
        >>> L = protocol_learner(ctx, ctx.params({}, {}), "attention")
        >>> L.logits(L.init(jax.random.PRNGKey(0)), jnp.zeros((3, 64))).shape
        (3, 10)
    """
    prog, stage = ctx.program, ctx.protocol.stage(None)

    def init(key):
        return ctx.start(ctx.fresh(key), batch)

    def update(state, b):
        return ctx.step(prog, params, state, b, stage, None)[0]

    def logits(state, x):
        return ctx.held_out(prog, params, state, {"x": x, "y": jnp.zeros((x.shape[0], len(ctx.net.readout.agents)))})

    return Learner(name, init, update, logits, batch)


@functools.lru_cache(maxsize=64)
def _masked_accuracy(learner: Learner) -> Callable:
    """One jitted ``(state, x, y, mask) -> accuracy`` per learner (predictions restricted to ``mask``)."""
    @jax.jit
    def acc(state, x, y, mask):
        z = jnp.where(mask, learner.logits(state, x), -jnp.inf)
        return (z.argmax(-1) == y).mean()
    return acc


def _accuracy(learner: Learner, n_out: int):
    acc = _masked_accuracy(learner)

    def run(state, task: Task):
        mask = np.ones(n_out, bool) if task.classes is None else np.isin(np.arange(n_out), task.classes)
        return float(acc(state, jnp.asarray(task.x_test), jnp.asarray(task.y_test), jnp.asarray(mask)))

    return run


def train_task(learner: Learner, state: Any, task: Task, steps: int, key: jax.Array, n_out: int) -> Any:
    """``steps`` updates of ``learner`` on batches drawn (with replacement) from ``task``'s
    training split; returns the new state.

    Example (``L`` a :class:`Learner`, ``t`` a :class:`Task`, ten classes)::

        state = train_task(L, L.init(jax.random.PRNGKey(0)), t, 100, jax.random.PRNGKey(1), 10)
    """
    idx = jax.random.randint(key, (steps, learner.batch), 0, task.x_train.shape[0])
    xs = jnp.asarray(task.x_train)[idx]
    ys = jax.nn.one_hot(jnp.asarray(task.y_train)[idx], n_out)
    return _scan_updates(learner)(state, xs, ys)


@functools.lru_cache(maxsize=64)
def _scan_updates(learner: Learner) -> Callable:
    """One jitted scan of ``learner.update`` over ``[steps, B, ...]`` batches (per learner)."""
    @jax.jit
    def scan(state, xs, ys):
        return jax.lax.scan(lambda s, b: (learner.update(s, {"x": b[0], "y": b[1]}), None), state, (xs, ys))[0]
    return scan


def run_sequence(learner: Learner, tasks: Sequence[Task], steps: int, key: jax.Array, n_out: int) -> np.ndarray:
    """Train ``learner`` (fresh) on ``tasks`` in order, ``steps`` updates each; after each task
    score every task's test split. Returns ``R [T, T]``: ``R[i, j]`` = accuracy on task ``j``
    after training on task ``i``.

    Example (``L`` a :class:`Learner`; ``tests/benchmarks/test_forgetting.py`` runs one)::

        R = run_sequence(L, split_tasks(load_dataset("mnist", size=12)), 100, jax.random.PRNGKey(0), 10)
        forgetting(R), average_accuracy(R)
    """
    k_init, k_train = jax.random.split(key)
    state = learner.init(k_init)
    acc = _accuracy(learner, n_out)
    R = np.zeros((len(tasks), len(tasks)))
    for i, task in enumerate(tasks):
        state = train_task(learner, state, task, steps, jax.random.fold_in(k_train, i), n_out)
        R[i] = [acc(state, t) for t in tasks]
    return R


def forgetting(R: np.ndarray) -> float:
    """Average forgetting (Chaudhry et al. 2018): over every task but the last, its best accuracy
    after any earlier point of the sequence minus its accuracy at the end.

    Example:
        >>> forgetting(np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.5, 0.5, 1.0]]))
        0.5
    """
    T = R.shape[0]
    if T < 2:
        return 0.0
    return float(np.mean([R[j:T - 1, j].max() - R[T - 1, j] for j in range(T - 1)]))


def average_accuracy(R: np.ndarray) -> float:
    """Mean accuracy over all tasks after the last one (``R[-1].mean()``).

    Example:
        >>> average_accuracy(np.array([[0.9, 0.1], [0.6, 0.8]]))
        0.7
    """
    return float(np.mean(R[-1]))
