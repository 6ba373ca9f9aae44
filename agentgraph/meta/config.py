"""Meta-training configuration: pydantic models read from YAML or TOML.

A config is checked completely before any compute: unknown fields, wrong types, out-of-range
values and missing data files are rejected with the field's dotted path (``meta.steps``) or the
file's path in the message.
"""

from __future__ import annotations

import inspect
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic

from agentgraph import builders
from agentgraph.errors import AgentGraphError
from agentgraph.meta.strategies import ES_STRATEGIES

__all__ = ["apply_overrides", "NetConfig", "DataConfig", "ESOptimizerConfig", "GradientOptimizerConfig", "MetaConfig", "RunConfig", "TrainConfig", "load_config", "parse_config"]

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _finite_everywhere(value: Any, where: str) -> None:
    """Free-form settings (``protocol:``, ``net.args``) hold no NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}; numbers in a config must be finite")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_everywhere(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite_everywhere(v, f"{where}[{i}]")


_MLP = inspect.signature(builders.mlp).parameters  # the library builder's defaults are the config's

#: Library network builders (``net.kind``); anything else must be ``"package.module:function"``.
NET_KINDS = ("mlp", "random_dag")

#: Options that moved from ``meta`` into the MPLP protocol's own section, and their new names.
MOVED_TO_PROTOCOL = {"imitation_steps": "imitation_steps", "imitation_lr": "imitation_lr",
                     "imitation_unroll": "imitation_unroll", "imitation_meta_lr": "imitation_meta_lr",
                     "calibration_rounds": "calibration_rounds", "calibration_blend": "calibration_blend",
                     "grad_input_anneal": "grad_input_anneal"}


class NetConfig(pydantic.BaseModel):
    """The inner network: a per-scalar ``mlp``, a seeded ``random_dag``, or your builder
    ``"package.module:function"`` called with ``args`` (and ``seed=`` if it takes one) that
    returns an :class:`~agentgraph.AgentGraph` or a :class:`~agentgraph.network.Network`."""

    model_config = _STRICT
    kind: str = "mlp"
    sizes: list[pydantic.PositiveInt] = [144, 50, 10]
    activation: str = _MLP["activation"].default  # a library activation (agentgraph.nodes.ACTIVATIONS)
    loss: str = _MLP["loss"].default  # a library loss (agentgraph.nodes.LOSSES)
    init_std: pydantic.PositiveFloat = 0.05
    # random_dag only: hidden units, connection and parallel-synapse probabilities
    n_hidden: pydantic.NonNegativeInt = 20
    edge_prob: float = pydantic.Field(0.3, ge=0.0, le=1.0)
    parallel_prob: float = pydantic.Field(0.0, ge=0.0, le=1.0)
    # a user builder's keyword arguments
    args: dict[str, Any] = {}

    @pydantic.model_validator(mode="after")
    def _check(self) -> NetConfig:
        _finite_everywhere(self.args, "args")
        if len(self.sizes) < 2:
            raise ValueError("sizes needs at least an input and an output size")
        if self.kind not in NET_KINDS and ":" not in self.kind:
            raise ValueError(f"kind {self.kind!r} is neither one of {NET_KINDS} nor 'package.module:function'")
        from agentgraph.nodes.activations import ACTIVATIONS
        from agentgraph.nodes.losses import LOSSES

        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r} is not one of {sorted(LOSSES)}")
        if self.args and self.kind in NET_KINDS:
            raise ValueError(f"args are for your own builder; the library builder {self.kind!r} takes the fields "
                             "of net: (sizes, activation, ...)")
        return self

    @property
    def library(self) -> bool:
        """The network is one of the library builders (its sizes describe it)."""
        return self.kind in NET_KINDS


class DataConfig(pydantic.BaseModel):
    """The task family: a registered name (:data:`agentgraph.meta.tasks.TASKS`) or your
    ``"package.module:function"`` taking the config and returning a
    :class:`~agentgraph.meta.tasks.TaskFamily`."""

    model_config = _STRICT
    task: str = "mnist"
    image_size: pydantic.PositiveInt | None = 12
    path: str | None = None  # your npz file (npz) or IDX directory (idx, fashion_mnist); else the cache dir
    cv_batch: pydantic.PositiveInt = 100
    # continual learning: each inner loop is a sequence of this many tasks, each the dataset with its
    # pixels in a fresh random order (permuted tasks), inner_steps / sequence steps each; the held-out
    # set holds cv_batch / sequence examples of every task (meta.objective: continual scores them all)
    sequence: pydantic.PositiveInt = 1

    @pydantic.model_validator(mode="after")
    def _check(self) -> DataConfig:
        from agentgraph.meta.tasks import TASKS

        if self.task not in TASKS and ":" not in self.task:
            raise ValueError(f"task {self.task!r} is neither one of {sorted(TASKS)} nor 'package.module:function'")
        if self.task in ("npz", "idx") and not self.path:
            raise ValueError(f"task {self.task!r} needs 'path' pointing at your data")
        return self


class GradientOptimizerConfig(pydantic.BaseModel):
    """``meta.optimizer`` for gradient meta-training (the default): Adam at ``meta.meta_lr`` on
    the gradient through the unroll, each tensor's gradient divided by its norm."""

    model_config = _STRICT
    kind: Literal["gradient"] = "gradient"


class ESOptimizerConfig(pydantic.BaseModel):
    """``meta.optimizer`` for evolution strategies (:mod:`agentgraph.meta.es`, from evosax): the
    meta-parameters flattened into one vector, ``popsize`` candidates per generation scored by the
    meta-objective (no gradient: accuracy, ``meta.objective: readout_accuracy``, or a step
    activation are fine), the search distribution updated by ``strategy``.

    Example:
        >>> ESOptimizerConfig(kind="es", strategy="cma_es", popsize=80, sigma=0.1).lr is None
        True
    """

    model_config = _STRICT
    kind: Literal["es"]
    strategy: str = "open_es"  # one of agentgraph.meta.strategies.ES_STRATEGIES
    popsize: pydantic.PositiveInt = 64
    sigma: pydantic.PositiveFloat = 0.03  # the search distribution's initial standard deviation
    # the mean's learning rate for strategies that follow an estimated gradient (open_es: Adam,
    # pgpe: ClipUp, snes: SGD); null: the strategy's default (agentgraph.meta.strategies.ES_STRATEGIES)
    lr: pydantic.PositiveFloat | None = None
    # score a device's candidates this many at a time (lax.map over chunks, each chunk vmapped):
    # less memory, and on CPU often faster than one vmap over all (docs/compiler.md);
    # null: all of a device's candidates in one vmap
    chunk: pydantic.PositiveInt | None = None

    @pydantic.field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        if v not in ES_STRATEGIES:
            raise ValueError(f"{v!r} is not one of {sorted(ES_STRATEGIES)}")
        return v

    @pydantic.model_validator(mode="after")
    def _check(self) -> ESOptimizerConfig:
        spec = ES_STRATEGIES[self.strategy]
        if self.lr is not None and spec.default_lr is None:
            raise ValueError(f"lr: strategy {self.strategy!r} adapts its own step size and takes no lr; remove it")
        if spec.antithetic and self.popsize % 2:
            raise ValueError(f"popsize: strategy {self.strategy!r} samples antithetic pairs, so popsize must be "
                             f"even, got {self.popsize}")
        if self.popsize < spec.min_popsize:
            raise ValueError(f"popsize: strategy {self.strategy!r} needs at least {spec.min_popsize}, "
                             f"got {self.popsize}")
        return self


class MetaConfig(pydantic.BaseModel):
    """The inner loop and the outer (meta) loop, for any protocol."""

    def unroll_at(self, step: int) -> int:
        """Inner steps meta-trained on at meta-step ``step`` (``inner_steps`` without a curriculum).

        Example:
            >>> MetaConfig(curriculum=[[0, 5], [100, 20]]).unroll_at(99)
            5
        """
        k = self.inner_steps
        for start, length in self.curriculum or ():
            if step >= start:
                k = length
        return k

    def lr_at(self, step: int | Any) -> float | Any:
        """The meta-learning rate at meta-step ``step`` (a Python or a traced integer):
        ``meta_lr``, or ``meta_lr_schedule`` interpolated linearly between its points and held
        after the last.

        Example:
            >>> MetaConfig(meta_lr_schedule=[[0, 1e-3], [100, 1e-3], [200, 1e-5]]).lr_at(150)
            0.000505
        """
        if not self.meta_lr_schedule:
            return self.meta_lr
        xs = [float(s) for s, _ in self.meta_lr_schedule]
        ys = [float(v) for _, v in self.meta_lr_schedule]
        if isinstance(step, int):
            import numpy as np

            return float(np.interp(step, xs, ys))
        import jax.numpy as jnp

        return jnp.interp(step, jnp.array(xs), jnp.array(ys))

    model_config = _STRICT
    inner_steps: pydantic.PositiveInt = 20
    batch: pydantic.PositiveInt = 8
    outer_batch: pydantic.PositiveInt = 1
    # how the tasks of an outer batch are run: "vmap" (batched), "map" (one after another, each
    # unbatched: on CPU XLA copies and transposes the task axis of batched learner products),
    # "auto" = map on CPU, vmap on accelerators
    outer_map: Literal["auto", "vmap", "map"] = "auto"
    meta_steps: pydantic.PositiveInt = 5000
    meta_lr: pydantic.PositiveFloat = 5e-4
    # meta-learning-rate schedule: [[from meta-step, meta-lr], ...], linear in between, held after
    # the last point, e.g. [[0, 1e-3], [4000, 1e-3], [8000, 1e-5]] (replaces meta_lr; counts
    # meta-loss steps, after any warm start, like curriculum)
    meta_lr_schedule: list[tuple[pydantic.NonNegativeInt, pydantic.PositiveFloat]] | None = None
    # the meta-objective (agentgraph.meta.objectives): "hint_cv" (MPLP's) = hint_weight * mean hint loss +
    # cv_weight * held-out loss; "heldout" = final held-out loss (MAML); "readout" /
    # "readout_accuracy" = loss / error of the read-out predictions on held-out data (rules with no
    # loss agent, e.g. BLUR); "online" = mean loss of each batch's predictions before learning from it
    objective: str = "hint_cv"
    hint_weight: float = pydantic.Field(0.7, ge=0.0)
    cv_weight: float = pydantic.Field(0.3, ge=0.0)
    prior_pool: pydantic.PositiveInt = 16
    # learn the initial weights too (MAML): any protocol
    maml: bool = False
    # start from this checkpoint's (or exported protocol's) meta-parameters and stats instead of
    # fresh ones: fine-tuning, e.g. on another activation (the meta-optimiser's state starts fresh,
    # no calibration and no warm start run; a MAML prior, if any, starts fresh)
    init_from: str | None = None
    truncation: pydantic.PositiveInt | None = None
    remat: bool | Literal["full", "learner", "dots", "none"] = True  # true = full; see agentgraph.unroll.REMAT
    # the inner steps as one lax.scan ("scan": compiles fast) or written out one after another
    # ("unrolled": slower to compile, and with remat none it keeps each step's insides without
    # copying them into stacked scan buffers: faster on CPU; docs/performance.md)
    inner_loop: Literal["scan", "unrolled"] = "scan"
    # random_dag only: meta-train on this many seeded graphs (seeds run.seed, run.seed + 1, ...),
    # one per meta-step in turn, all through one compiled meta-step (one bucket)
    graph_pool: pydantic.PositiveInt = 1
    # unroll curriculum: [[from meta-step, inner steps], ...], e.g. [[0, 5], [200, 10], [400, 20]]:
    # meta-train on the first few inner steps of each task, lengthened at the given meta-steps
    curriculum: list[tuple[pydantic.NonNegativeInt, pydantic.PositiveInt]] | None = None
    # the meta-optimiser: {kind: gradient} (Adam at meta_lr on the gradient through the unroll),
    # or evolution strategies {kind: es, strategy: open_es | cma_es | ..., popsize, sigma, lr}
    optimizer: GradientOptimizerConfig | ESOptimizerConfig = pydantic.Field(
        default_factory=GradientOptimizerConfig, discriminator="kind")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            moved = sorted(k for k in data if k in MOVED_TO_PROTOCOL)
            if moved:
                raise ValueError("; ".join(f"meta.{k} is an MPLP option now: write it as protocol.{MOVED_TO_PROTOCOL[k]}"
                                           for k in moved))
        return data

    @pydantic.model_validator(mode="after")
    def _check(self) -> MetaConfig:
        from agentgraph.meta.objectives import OBJECTIVES

        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r} is not one of {sorted(OBJECTIVES)}")
        if self.hint_weight + self.cv_weight <= 0:
            raise ValueError("hint_weight + cv_weight must be positive")
        if self.truncation is not None and self.truncation > self.inner_steps:
            raise ValueError("truncation must not exceed inner_steps")
        if self.curriculum is not None:
            starts = [s for s, _ in self.curriculum]
            if not starts or starts[0] != 0 or starts != sorted(set(starts)):
                raise ValueError("curriculum must start at meta-step 0 with strictly increasing meta-steps, "
                                 "e.g. [[0, 5], [200, 10], [400, 20]]")
            if any(k > self.inner_steps for _, k in self.curriculum):
                raise ValueError("curriculum inner steps must not exceed inner_steps")
            if self.truncation is not None:
                raise ValueError("curriculum and truncation cannot be combined; choose one")
        if self.meta_lr_schedule is not None:
            starts = [s for s, _ in self.meta_lr_schedule]
            if not starts or starts[0] != 0 or starts != sorted(set(starts)):
                raise ValueError("meta_lr_schedule must start at meta-step 0 with strictly increasing meta-steps, "
                                 "e.g. [[0, 1e-3], [4000, 1e-3], [8000, 1e-5]]")
            if self.optimizer.kind != "gradient":
                raise ValueError("meta_lr_schedule sets the gradient meta-optimiser's rate; with "
                                 f"optimizer.kind {self.optimizer.kind!r} remove it (ES: optimizer.lr)")
        return self


class RunConfig(pydantic.BaseModel):
    """Where results go and how often."""

    model_config = _STRICT
    seed: int = 0
    out_dir: str = "runs/default"
    checkpoint_every: pydantic.PositiveInt = 50
    keep: pydantic.PositiveInt = 3
    # every eval_every meta-steps (0: never), score the protocol on eval_runs fresh networks (the
    # metric after the last inner step, on the evaluation set) into metrics.jsonl as "eval"
    eval_every: pydantic.NonNegativeInt = 0
    eval_runs: pydantic.PositiveInt = 20
    # numerical health (docs/reliability.md): a meta-step is not taken — and never checkpointed —
    # when its meta-loss or gradient is not finite, its meta-loss exceeds max_meta_loss, or its
    # update would take a meta-parameter's magnitude past max_meta_param (null: no bound); after
    # max_bad_steps such steps in a row the run stops, naming its last good checkpoint
    max_meta_loss: pydantic.PositiveFloat | None = 1e6
    max_meta_param: pydantic.PositiveFloat | None = 1e3
    max_bad_steps: pydantic.PositiveInt = 20


class TrainConfig(pydantic.BaseModel):
    """Everything ``agentgraph train`` needs. ``protocol`` is ``{"rule": name, **settings}``,
    validated by that protocol's own model (:func:`~agentgraph.protocols.base.resolve`) and
    stored with every setting filled in.

    Example:
        >>> cfg = TrainConfig(data={"task": "sinusoid"}, net={"sizes": [1, 20, 20, 1], "activation": "relu", "loss": "l2"})
        >>> cfg.meta.hint_weight, cfg.net.sizes, cfg.protocol["rule"]
        (0.7, [1, 20, 20, 1], 'mplp')
    """

    model_config = _STRICT
    net: NetConfig = NetConfig()
    data: DataConfig = DataConfig()
    protocol: dict[str, Any] = {"rule": "mplp"}
    meta: MetaConfig = MetaConfig()
    run: RunConfig = RunConfig()

    @pydantic.field_validator("protocol", mode="after")
    @classmethod
    def _protocol(cls, v: dict[str, Any]) -> dict[str, Any]:
        from agentgraph.protocols.base import settings_of

        _finite_everywhere(v, "protocol")
        return settings_of(v)

    def make_protocol(self):
        """The :class:`~agentgraph.protocols.base.Protocol` of the ``protocol:`` section.

        Example:
            >>> TrainConfig(protocol={"rule": "sgd", "lr": 0.1}).make_protocol().name
            'sgd'
        """
        from agentgraph.protocols.base import resolve

        return resolve(self.protocol)

    @pydantic.model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.meta.graph_pool > 1 and self.net.kind == "mlp":
            raise ValueError("meta.graph_pool > 1 needs net.kind 'random_dag' or a seeded builder (an mlp has one graph)")
        if not self.net.library:
            return self
        if self.data.task == "sinusoid" and (self.net.sizes[0] != 1 or self.net.sizes[-1] != 1):
            raise ValueError("the sinusoid task needs net.sizes to start and end with 1")
        if self.data.task == "sinusoid" and self.net.loss == NetConfig.model_fields["loss"].default:
            raise ValueError("the sinusoid task is a regression: set net.loss to the squared error")
        S = self.data.sequence
        if S > 1 and (self.meta.inner_steps % S or self.data.cv_batch % S):
            raise ValueError(f"data.sequence {S} must divide meta.inner_steps ({self.meta.inner_steps}) and "
                             f"data.cv_batch ({self.data.cv_batch}): every task of the sequence gets an equal share")
        if S > 1 and self.data.task == "sinusoid":
            raise ValueError("data.sequence > 1 (permuted-task sequences) needs an image task, not the sinusoid")
        size = self.data.image_size
        if self.data.task in ("mnist", "digits", "fashion_mnist", "idx", "npz") and size and self.net.sizes[0] != size * size:
            raise ValueError(
                f"net.sizes[0] is {self.net.sizes[0]} but data.image_size {size} gives {size * size} inputs"
            )
        return self


#: Sections that are tagged unions, and their tags (left out of error paths).
TAGGED = {"optimizer": ("gradient", "es")}


def _format(e: pydantic.ValidationError, source: str) -> str:
    parts = []
    for err in e.errors():
        # a tagged union (meta.optimizer) puts its tag in the path: meta.optimizer.es.strategy
        path = [x for i, x in enumerate(err["loc"]) if not (i and err["loc"][i - 1] in TAGGED and x in TAGGED[err["loc"][i - 1]])]
        loc = ".".join(str(x) for x in path) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if loc == "protocol" and msg.startswith("invalid settings"):  # the protocol's own model names its fields
            parts.extend(f"  {line}" for line in msg.split(": ", 1)[1].split("; "))
            continue
        parts.append(f"  {loc}: {msg}")
    return f"Invalid config {source}:\n" + "\n".join(parts)


def parse_config(data: dict[str, Any], source: str = "<dict>") -> TrainConfig:
    """Validate a config mapping; errors name every offending field by its dotted path.

    Example:
        >>> parse_config({"meta": {"inner_steps": 5}}).meta.inner_steps
        5
        >>> try:
        ...     parse_config({"meta": {"inner_stepz": 5}})
        ... except AgentGraphError as e:
        ...     print(str(e).splitlines()[1].strip())
        meta.inner_stepz: Extra inputs are not permitted
    """
    if not isinstance(data, dict):
        raise AgentGraphError(f"Invalid config {source}: the top level must be a mapping, got {type(data).__name__}.")
    try:
        return TrainConfig.model_validate(data)
    except pydantic.ValidationError as e:
        raise AgentGraphError(_format(e, source)) from None


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config and validate it.

    Args:
        path: the config file.
        overrides: dotted-path values applied on top (``{"run.seed": 3}``), as the CLI's flags do.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.toml"
        >>> _ = p.write_text("[meta]\\ninner_steps = 3\\n[net]\\nsizes = [64, 10]\\n[data]\\ntask = 'digits'\\nimage_size = 8\\n")
        >>> load_config(p, {"run.seed": 7}).run.seed
        7
    """
    p = Path(path)
    if p.is_dir():
        raise AgentGraphError(f"Config {str(p)!r} is a directory; pass a .yaml, .yml or .toml file.")
    if not p.is_file():
        raise AgentGraphError(f"Config file {str(p)!r} does not exist.")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise AgentGraphError(f"Config {str(p)!r} is not UTF-8 text ({e.reason} at byte {e.start}); "
                              "is it really a config file?") from None
    except OSError as e:
        from agentgraph.errors import io_error

        raise io_error(str(p), e, "read the config") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise AgentGraphError(f"Config {str(p)!r}: unknown format {p.suffix!r}; use .yaml, .yml or .toml.")
    except AgentGraphError:
        raise
    except Exception as e:  # a syntax error in the file
        raise AgentGraphError(f"Config {str(p)!r} could not be parsed: {e}") from None
    if not isinstance(data, dict):
        raise AgentGraphError(f"Invalid config {str(p)!r}: the top level must be a mapping of sections "
                              f"(net:, data:, protocol:, meta:, run:), got {type(data).__name__}.")
    return parse_config(apply_overrides(data, overrides), repr(str(p)))


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``data`` with dotted-path values set (``{"run.seed": 3}``), as ``--set`` does; sections
    are created where missing.

    Raises:
        AgentGraphError: a path runs through a value that is not a section.

    Example:
        >>> apply_overrides({"run": {"seed": 0}}, {"run.seed": 3, "meta.batch": 4})
        {'run': {'seed': 3}, 'meta': {'batch': 4}}
    """
    for dotted, value in (overrides or {}).items():
        node = data
        *head, last = dotted.split(".")
        for part in head:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise AgentGraphError(f"Override {dotted!r}: {part!r} is not a section of the config.")
        node[last] = value
    return data
