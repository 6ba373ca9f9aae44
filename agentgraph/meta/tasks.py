"""Task families for meta-training: what one inner loop sees.

A *task* is ``{"train": {"x": [K, B, n_in], "y": [K, B, n_out]}, "cv": {"x": [C, n_in], "y":
[C, n_out]}}``: ``K`` inner-step batches and a held-out set. Samplers are pure JAX functions of a
PRNG key, so an outer batch of tasks is ``vmap(sample)(keys)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.errors import AgentGraphError

__all__ = ["NET_NEEDS", "TASKS", "NetNeeds", "TaskFamily", "image_family", "register_task", "sinusoid_family",
           "sinusoid_task", "task_family"]


@dataclasses.dataclass(frozen=True)
class TaskFamily:
    """A task sampler and what it produces.

    Attributes:
        sample: ``key -> task`` (pure, vmap-able).
        n_in, n_out: input and output sizes.
        classification: targets are one-hot classes (accuracy is meaningful).
        eval_set: ``key -> (x [C, n_in], y [C, n_out])`` for evaluation (test split; for the
            sinusoid, 100 evenly spaced points of a fresh task) — with the task's train batches
            from ``eval_sample``.
        eval_sample: ``key -> task`` drawing training batches for evaluation runs (same family;
            for images, from the training split) and the evaluation set in ``"cv"``.
    """

    sample: Callable[[jax.Array], dict]
    eval_sample: Callable[[jax.Array], dict]
    n_in: int
    n_out: int
    classification: bool


def sinusoid_task(key: jax.Array, steps: int, batch: int, cv: int, *, evenly_spaced: bool = False) -> dict:
    """One sinusoid regression task ``y = A sin(x + p)``, ``A ∈ [0.1, 0.5]``, ``p ∈ [0, π]``,
    ``x ∈ [-5, 5]`` (MPLP §4.1): train ``[K, B, 1]``, held-out ``[cv, 1]`` (evenly spaced when
    ``evenly_spaced``, as the paper's evaluation loss).

    Example:
        >>> import jax
        >>> t = sinusoid_task(jax.random.PRNGKey(0), 5, 10, 100)
        >>> t["train"]["x"].shape, t["cv"]["y"].shape
        ((5, 10, 1), (100, 1))
    """
    from agentgraph.data import sample_sinusoid_task

    return sample_sinusoid_task(key, steps, batch, cv, evenly_spaced=evenly_spaced)


def sinusoid_family(cfg: Any) -> TaskFamily:
    """The sinusoid regression family of MPLP §4.1 (``data.task: sinusoid``)."""
    K, B, C = cfg.meta.inner_steps, cfg.meta.batch, cfg.data.cv_batch
    return TaskFamily(
        sample=lambda key: sinusoid_task(key, K, B, C),
        eval_sample=lambda key: sinusoid_task(key, K, B, 100, evenly_spaced=True),
        n_in=1, n_out=1, classification=False,
    )


def image_family(cfg: Any) -> TaskFamily:
    """Classification tasks from a dataset of :func:`agentgraph.data.load_dataset`
    (``data.task``: ``mnist``, ``digits``, ``fashion_mnist``, ``idx``, ``npz``): each task is
    ``K`` random training batches and a held-out set; evaluation's held-out set is the test split.
    With ``data.continual.tasks: S > 1`` a task is a sequence of ``S`` permuted tasks
    (:func:`~agentgraph.data.classification.sample_permuted_sequence`)."""
    from agentgraph.data import load_dataset, sample_classification_task
    from agentgraph.data.classification import sample_permuted_sequence

    K, B, C = cfg.meta.inner_steps, cfg.meta.batch, cfg.data.cv_batch
    kwargs: dict[str, Any] = {"size": cfg.data.image_size}
    if cfg.data.task in ("npz", "idx", "fashion_mnist"):
        kwargs["path"] = cfg.data.path
    elif cfg.data.path:
        kwargs["cache_dir"] = cfg.data.path
    ds = load_dataset(cfg.data.task, **kwargs)
    x_tr, y_tr = jnp.asarray(ds.x_train, jnp.float32), jnp.asarray(ds.y_train)
    x_te, y_te = jnp.asarray(ds.x_test, jnp.float32), jnp.asarray(ds.y_test)
    n_in, n_cls = int(x_tr.shape[1]), int(ds.n_classes)
    if cfg.net.library and n_cls > cfg.net.sizes[-1] and n_in == cfg.net.sizes[0]:
        split, labels = ("train", ds.y_train) if ds.y_train.max() >= cfg.net.sizes[-1] else ("test", ds.y_test)
        i = int(np.argmax(labels >= cfg.net.sizes[-1]))
        raise AgentGraphError(
            f"Dataset {cfg.data.task!r}{_where(cfg)}: y_{split}[{i}] is {int(labels[i])}, but net.sizes ends with "
            f"{cfg.net.sizes[-1]} (classes 0 .. {cfg.net.sizes[-1] - 1}). Fix that label, or, if the data really has "
            f"{n_cls} classes, set net.sizes to end with {n_cls}."
        )
    if cfg.net.library and (n_in != cfg.net.sizes[0] or n_cls != cfg.net.sizes[-1]):
        raise AgentGraphError(
            f"Dataset {cfg.data.task!r} has {n_in} inputs and {n_cls} classes but net.sizes is "
            f"{cfg.net.sizes}; set net.sizes to start with {n_in} and end with {n_cls}."
        )

    S = cfg.data.continual.tasks

    def sample(key):
        if S > 1:
            return sample_permuted_sequence(key, x_tr, y_tr, n_cls, S, K, B, C)
        return sample_classification_task(key, x_tr, y_tr, n_cls, K, B, C)

    def eval_sample(key):
        k1, k2 = jax.random.split(key)
        if S > 1:
            return sample_permuted_sequence(k1, x_tr, y_tr, n_cls, S, K, B, C, x_te, y_te)
        task = sample_classification_task(k1, x_tr, y_tr, n_cls, K, B, 1)
        idx = jax.random.choice(k2, x_te.shape[0], (C,), replace=False)
        task["cv"] = {"x": x_te[idx], "y": jax.nn.one_hot(y_te[idx], n_cls)}
        return task

    return TaskFamily(sample=sample, eval_sample=eval_sample, n_in=n_in, n_out=n_cls, classification=True)


def _where(cfg: Any) -> str:
    return f" ({cfg.data.path!r})" if cfg.data.path else ""


@dataclasses.dataclass(frozen=True)
class NetNeeds:
    """What a task family needs of a library network (``net.sizes``, ``net.loss``), checked when
    the config is read, before any data is loaded.

    Attributes:
        n_in, n_out: the input and output counts (``None``: any, or read from the data).
        image_inputs: ``data.image_size ** 2`` inputs (when ``image_size`` is set).
        loss: the loss the task needs (``"l2"`` for a regression), ``None`` for any.
        sequences: the task can be run as permuted-task sequences (``data.continual``).
        reads: the optional ``data:`` fields the task reads (besides ``task``, ``cv_batch``,
            ``continual``); setting another one to a non-default value is refused (the user
            would believe it is used).
    """

    n_in: int | None = None
    n_out: int | None = None
    image_inputs: bool = False
    loss: str | None = None
    sequences: bool = True
    reads: tuple[str, ...] = ("image_size", "path")

    def problems(self, task: str, sizes: list[int] | None, loss: str | None, image_size: int | None,
                 sequence: int = 1) -> list[str]:
        """What a config contradicts of these needs, each message naming the fields; ``sizes``
        and ``loss`` are ``None`` for a network of your own builder (not checked).

        Example:
            >>> NET_NEEDS["sinusoid"].problems("sinusoid", [1, 20, 2], "l2", None)
            ["data.task 'sinusoid' needs net.sizes to end with 1, got [1, 20, 2]"]
        """
        out = []
        for end, want, i in (("start", self.n_in, 0), ("end", self.n_out, -1)):
            if sizes is not None and want is not None and sizes[i] != want:
                out.append(f"data.task {task!r} needs net.sizes to {end} with {want}, got {sizes}")
        if sizes is not None and self.image_inputs and image_size and sizes[0] != image_size * image_size:
            out.append(f"net.sizes[0] is {sizes[0]} but data.image_size {image_size} gives {image_size * image_size} "
                       "inputs")
        if loss is not None and self.loss is not None and loss != self.loss:
            why = "is a regression: set net.loss to the squared error" if self.loss == "l2" else "needs net.loss"
            out.append(f"data.task {task!r} {why} {self.loss!r}, not {loss!r}")
        if sequence > 1 and not self.sequences:
            out.append(f"data.continual.tasks {sequence} (permuted-task sequences) needs an image task, not "
                       f"{task!r}")
        return out


#: Registered task families (``data.task``): ``name -> (config) -> TaskFamily``. Add yours with
#: :func:`register_task`, or name a factory ``"package.module:function"`` in the config.
TASKS: dict[str, Callable[[Any], TaskFamily]] = {
    "sinusoid": sinusoid_family,
    "mnist": image_family,
    "digits": image_family,
    "fashion_mnist": image_family,
    "idx": image_family,
    "npz": image_family,
}

#: What each registered task needs of a library network (:class:`NetNeeds`); a task not listed
#: needs nothing the config can check (its family checks the data against the network).
NET_NEEDS: dict[str, NetNeeds] = {
    "sinusoid": NetNeeds(n_in=1, n_out=1, loss="l2", sequences=False, reads=()),
    "digits": NetNeeds(image_inputs=True, reads=("image_size",)),  # embedded in scikit-learn: no path
    **{name: NetNeeds(image_inputs=True) for name in ("mnist", "fashion_mnist", "idx", "npz")},
}


def register_task(name: str, factory: Callable[[Any], TaskFamily], needs: NetNeeds | None = None) -> None:
    """Make ``data.task: <name>`` use ``factory(cfg) -> TaskFamily``; ``needs``: what it needs of
    a library network, checked when a config is read.

    Example:
        >>> register_task("my_sine", sinusoid_family, NetNeeds(n_in=1, n_out=1, loss="l2"))
        >>> TASKS.pop("my_sine").__name__, NET_NEEDS.pop("my_sine").loss
        ('sinusoid_family', 'l2')
    """
    TASKS[name] = factory
    if needs is not None:
        NET_NEEDS[name] = needs
    else:
        NET_NEEDS.pop(name, None)


def task_family(cfg: Any) -> TaskFamily:
    """The task family of a :class:`~agentgraph.meta.config.TrainConfig`; loads data eagerly, so
    a missing dataset is reported before any compute.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 20, 1], "loss": "l2"}})
        >>> task_family(cfg).n_in
        1
    """
    factory = TASKS.get(cfg.data.task)
    if factory is None:
        from agentgraph.loading import load_callable

        factory = load_callable(cfg.data.task, "data.task")
    from agentgraph.errors_user import blame_user_code

    with blame_user_code(cfg, "building the task family"):
        family = factory(cfg)
    if not isinstance(family, TaskFamily):
        raise AgentGraphError(f"data.task {cfg.data.task!r} returned {type(family).__name__}, not a TaskFamily: "
                              "return agentgraph.meta.tasks.TaskFamily(sample=..., eval_sample=..., n_in=..., "
                              "n_out=..., classification=...).")
    return family
