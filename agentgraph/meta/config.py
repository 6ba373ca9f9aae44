"""Meta-training configuration: pydantic models read from YAML or TOML.

A config is checked completely before any compute: unknown fields, wrong types, out-of-range
values and missing data files are rejected with the field's dotted path (``meta.steps``) or the
file's path in the message.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic

from agentgraph.errors import AgentGraphError

__all__ = ["NetConfig", "DataConfig", "ProtocolConfig", "MetaConfig", "RunConfig", "TrainConfig", "load_config",
           "parse_config"]

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)


class NetConfig(pydantic.BaseModel):
    """The inner network: a per-scalar ``mlp`` or a seeded ``random_dag`` pool."""

    model_config = _STRICT
    kind: Literal["mlp", "random_dag"] = "mlp"
    sizes: list[pydantic.PositiveInt] = [144, 50, 10]
    activation: Literal["identity", "sigmoid", "tanh", "relu", "step"] = "sigmoid"
    loss: Literal["cross_entropy", "l2"] = "cross_entropy"
    init_std: pydantic.PositiveFloat = 0.05
    # random_dag only: hidden units, connection and parallel-synapse probabilities
    n_hidden: pydantic.NonNegativeInt = 20
    edge_prob: float = pydantic.Field(0.3, ge=0.0, le=1.0)
    parallel_prob: float = pydantic.Field(0.0, ge=0.0, le=1.0)

    @pydantic.model_validator(mode="after")
    def _check(self) -> NetConfig:
        if len(self.sizes) < 2:
            raise ValueError("sizes needs at least an input and an output size")
        return self


class DataConfig(pydantic.BaseModel):
    """The task family."""

    model_config = _STRICT
    task: Literal["sinusoid", "mnist", "digits", "fashion_mnist", "idx", "npz"] = "mnist"
    image_size: pydantic.PositiveInt | None = 12
    path: str | None = None  # your npz file (npz) or IDX directory (idx, fashion_mnist); else the cache dir
    cv_batch: pydantic.PositiveInt = 100

    @pydantic.model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.task in ("npz", "idx") and not self.path:
            raise ValueError(f"task {self.task!r} needs 'path' pointing at your data")
        return self


class ProtocolConfig(pydantic.BaseModel):
    """The learned protocol: ``mplp`` (learned backward), or ``sgd`` — plain SGD with
    ``sgd_lr`` (the gradient protocol), whose only trainable part is a MAML prior (the MAML
    baseline: needs ``meta.maml``)."""

    model_config = _STRICT
    rule: Literal["mplp", "sgd"] = "mplp"
    sgd_lr: pydantic.PositiveFloat = 0.05
    k: pydantic.PositiveInt = 4
    hidden: pydantic.NonNegativeInt = 7
    stateful: bool = True
    mlp: list[pydantic.PositiveInt] = [80, 40]
    sharing: Literal["group", "kind", "all"] = "group"
    premap: bool = False
    # the per-example gradient step as an extra learner input of weights and biases (paper §5):
    # "none"; "always" (training and evaluation: not a gradient-free protocol); "train" (scaled
    # from 1 down to 0 over meta.grad_input_anneal meta-steps, zero afterwards and at evaluation)
    grad_input: Literal["none", "train", "always"] = "none"


class MetaConfig(pydantic.BaseModel):
    """The inner loop and the outer (meta) loop."""

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
    hint_weight: float = pydantic.Field(0.7, ge=0.0)
    cv_weight: float = pydantic.Field(0.3, ge=0.0)
    prior_pool: pydantic.PositiveInt = 16
    maml: bool = False
    truncation: pydantic.PositiveInt | None = None
    remat: bool | Literal["full", "learner", "dots", "none"] = True  # true = full; see meta.loop.REMAT
    # the inner steps as one lax.scan ("scan": compiles fast) or written out one after another
    # ("unrolled": slower to compile, and with remat none it keeps each step's insides without
    # copying them into stacked scan buffers: faster on CPU; docs/performance.md)
    inner_loop: Literal["scan", "unrolled"] = "scan"
    calibration_rounds: pydantic.NonNegativeInt = 5
    calibration_blend: float = pydantic.Field(0.5, ge=0.0, le=1.0)
    # random_dag only: meta-train on this many seeded graphs (seeds run.seed, run.seed + 1, ...),
    # one per meta-step in turn; their layer groups share learners and normalisation
    graph_pool: pydantic.PositiveInt = 1
    # warm start by imitation: the first imitation_steps meta-steps fit the protocol's messages and
    # updates to backprop's / SGD(imitation_lr)'s on the first imitation_unroll inner steps
    # (agentgraph.meta.imitation); curriculum stages and the gradient fade count the meta-steps after them
    imitation_steps: pydantic.NonNegativeInt = 0
    imitation_lr: pydantic.PositiveFloat = 1.0
    imitation_unroll: pydantic.PositiveInt = 4
    imitation_meta_lr: pydantic.PositiveFloat | None = None  # the meta-optimiser's rate while imitating (default meta_lr)
    # unroll curriculum: [[from meta-step, inner steps], ...], e.g. [[0, 5], [200, 10], [400, 20]]:
    # meta-train on the first few inner steps of each task, lengthened at the given meta-steps
    curriculum: list[tuple[pydantic.NonNegativeInt, pydantic.PositiveInt]] | None = None
    # protocol.grad_input "train": meta-steps over which the gradient input fades out
    grad_input_anneal: pydantic.PositiveInt = 500

    @pydantic.model_validator(mode="after")
    def _check(self) -> MetaConfig:
        if self.hint_weight + self.cv_weight <= 0:
            raise ValueError("hint_weight + cv_weight must be positive")
        if self.truncation is not None and self.truncation > self.inner_steps:
            raise ValueError("truncation must not exceed inner_steps")
        if self.imitation_steps and self.imitation_unroll > self.inner_steps:
            raise ValueError("imitation_unroll must not exceed inner_steps")
        if self.curriculum is not None:
            starts = [s for s, _ in self.curriculum]
            if not starts or starts[0] != 0 or starts != sorted(set(starts)):
                raise ValueError("curriculum must start at meta-step 0 with strictly increasing meta-steps, "
                                 "e.g. [[0, 5], [200, 10], [400, 20]]")
            if any(k > self.inner_steps for _, k in self.curriculum):
                raise ValueError("curriculum inner steps must not exceed inner_steps")
            if self.truncation is not None:
                raise ValueError("curriculum and truncation cannot be combined; choose one")
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


class TrainConfig(pydantic.BaseModel):
    """Everything ``agentgraph train`` needs.

    Example:
        >>> cfg = TrainConfig(data={"task": "sinusoid"}, net={"sizes": [1, 20, 20, 1], "activation": "relu", "loss": "l2"})
        >>> cfg.meta.hint_weight, cfg.net.sizes
        (0.7, [1, 20, 20, 1])
    """

    model_config = _STRICT
    net: NetConfig = NetConfig()
    data: DataConfig = DataConfig()
    protocol: ProtocolConfig = ProtocolConfig()
    meta: MetaConfig = MetaConfig()
    run: RunConfig = RunConfig()

    @pydantic.model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.data.task == "sinusoid" and (self.net.sizes[0] != 1 or self.net.sizes[-1] != 1):
            raise ValueError("the sinusoid task needs net.sizes to start and end with 1")
        if self.meta.graph_pool > 1 and self.net.kind != "random_dag":
            raise ValueError("meta.graph_pool > 1 needs net.kind 'random_dag' (an mlp has one graph)")
        if self.protocol.rule == "sgd" and self.meta.imitation_steps:
            raise ValueError("meta.imitation_steps needs protocol.rule 'mplp' (the sgd rule has no learners to warm-start)")
        if self.protocol.rule == "sgd" and not self.meta.maml:
            raise ValueError("protocol.rule 'sgd' learns only a MAML prior: set meta.maml to true")
        if self.data.task == "sinusoid" and self.net.loss != "l2":
            raise ValueError("the sinusoid task is a regression: set net.loss to 'l2'")
        size = self.data.image_size
        if self.data.task in ("mnist", "digits", "fashion_mnist", "idx", "npz") and size and self.net.sizes[0] != size * size:
            raise ValueError(
                f"net.sizes[0] is {self.net.sizes[0]} but data.image_size {size} gives {size * size} inputs"
            )
        return self


def _format(e: pydantic.ValidationError, source: str) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        parts.append(f"  {loc}: {err['msg']}")
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
    if not p.is_file():
        raise AgentGraphError(f"Config file {str(p)!r} does not exist.")
    text = p.read_text()
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
    for dotted, value in (overrides or {}).items():
        node = data
        *head, last = dotted.split(".")
        for part in head:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise AgentGraphError(f"Override {dotted!r}: {part!r} is not a section of the config.")
        node[last] = value
    return parse_config(data, repr(str(p)))
