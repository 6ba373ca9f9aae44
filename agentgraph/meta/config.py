"""Meta-training configuration: pydantic models read from YAML or TOML.

A config has one section per component, each validated by that component's own model: ``net:``
(a tagged union on ``kind``, :mod:`agentgraph.meta.net_config`), ``data:``, ``protocol:`` (the
protocol's model, :func:`~agentgraph.protocols.base.resolve`), ``meta:`` (what every run needs;
its ``objective`` validated by the objective's model, :data:`~agentgraph.meta.objectives.OBJECTIVES`),
``schedules:`` (:mod:`agentgraph.meta.schedules`) and ``run:``. A config is checked completely
before any compute: unknown fields, wrong types, out-of-range values, options of the earlier
layout (:mod:`agentgraph.meta.config_upgrade`) and missing data files are rejected with the
field's dotted path (``meta.steps``) or the file's path in the message.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import SerializeAsAny

from agentgraph.errors import AgentGraphError
from agentgraph.meta.config_upgrade import MOVED, MOVED_TO_PROTOCOL, moved_messages, upgrade_config
from agentgraph.meta.net_config import (BuilderNetConfig, MLPNetConfig, NetConfig, RandomDagNetConfig,
                                        finite_everywhere, net_section)
from agentgraph.meta.objectives import HintCVSettings, ObjectiveSettings, objective_settings
from agentgraph.meta.schedules import SchedulesConfig
from agentgraph.meta.strategies import ES_STRATEGIES
from agentgraph.meta.tasks import NET_NEEDS, TASKS

__all__ = ["MOVED", "MOVED_TO_PROTOCOL", "BuilderNetConfig", "ContinualConfig", "DataConfig", "ESOptimizerConfig",
           "GradientOptimizerConfig", "MLPNetConfig", "MetaConfig", "NetConfig", "RandomDagNetConfig", "RunConfig",
           "SchedulesConfig", "TrainConfig", "apply_overrides", "load_config", "parse_config", "read_yaml",
           "upgrade_config"]

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ContinualConfig(pydantic.BaseModel):
    """``data.continual``: continual learning. Each inner loop is a sequence of ``tasks`` tasks,
    each the dataset with its pixels in a fresh random order (permuted tasks), ``inner_steps /
    tasks`` steps each; the held-out set holds ``cv_batch / tasks`` examples of every task
    (``meta.objective: continual`` scores them all). ``tasks: 1`` (the default): one task, as usual."""

    model_config = _STRICT
    tasks: pydantic.PositiveInt = 1


class DataConfig(pydantic.BaseModel):
    """The task family: a registered name (:data:`agentgraph.meta.tasks.TASKS`) or your
    ``"package.module:function"`` taking the config and returning a
    :class:`~agentgraph.meta.tasks.TaskFamily`."""

    model_config = _STRICT
    task: str = "mnist"
    image_size: pydantic.PositiveInt | None = 12
    path: str | None = None  # your npz file (npz) or IDX directory (idx, fashion_mnist); else the cache dir
    cv_batch: pydantic.PositiveInt = 100
    continual: ContinualConfig = ContinualConfig()

    @pydantic.model_validator(mode="after")
    def _check(self) -> DataConfig:
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
    """The inner loop and the outer (meta) loop: what every run needs, for any protocol."""

    model_config = _STRICT
    inner_steps: pydantic.PositiveInt = 20
    batch: pydantic.PositiveInt = 8
    outer_batch: pydantic.PositiveInt = 1
    # how the tasks of an outer batch are run: "vmap" (batched), "map" (one after another, each
    # unbatched: on CPU XLA copies and transposes the task axis of batched learner products),
    # "auto" = map on CPU, vmap on accelerators
    outer_map: Literal["auto", "vmap", "map"] = "auto"
    meta_steps: pydantic.PositiveInt = 5000
    meta_lr: pydantic.PositiveFloat = 5e-4  # schedules.meta_lr replaces it
    # the meta-objective (agentgraph.meta.objectives.OBJECTIVES), {kind: name, **its settings} or just
    # the name: hint_cv (MPLP's: hint_weight * mean hint loss + cv_weight * held-out loss; weights
    # 0.7 and 0.3), heldout (final held-out loss, MAML), readout / readout_accuracy (loss / error of
    # the read-out predictions on held-out data: rules with no loss agent, e.g. BLUR), online (mean
    # loss of each batch's predictions before learning from it), continual (data.continual)
    objective: SerializeAsAny[ObjectiveSettings] = HintCVSettings()
    prior_pool: pydantic.PositiveInt = 16
    # learn the initial weights too (MAML): any protocol
    maml: bool = False
    # start from this checkpoint's (or exported protocol's) meta-parameters and stats instead of
    # fresh ones: fine-tuning, e.g. on another activation (the meta-optimiser's state starts fresh,
    # no calibration and no warm start run; a MAML prior, if any, starts fresh)
    init_from: str | None = None
    remat: bool | Literal["full", "learner", "dots", "none"] = True  # true = full; see agentgraph.unroll.REMAT
    # the inner steps as one lax.scan ("scan": compiles fast) or written out one after another
    # ("unrolled": slower to compile, and with remat none it keeps each step's insides without
    # copying them into stacked scan buffers: faster on CPU; docs/performance.md)
    inner_loop: Literal["scan", "unrolled"] = "scan"
    # the meta-optimiser: {kind: gradient} (Adam at meta_lr on the gradient through the unroll),
    # or evolution strategies {kind: es, strategy: open_es | cma_es | ..., popsize, sigma, lr}
    optimizer: GradientOptimizerConfig | ESOptimizerConfig = pydantic.Field(
        default_factory=GradientOptimizerConfig, discriminator="kind")

    @pydantic.field_validator("objective", mode="before")
    @classmethod
    def _objective(cls, v: Any) -> ObjectiveSettings:
        return objective_settings(v)


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
    # phase runs per inner step (the sum of the network schedule's repeats) above which a run is
    # refused before compiling: each run is unrolled into the compiled step (agentgraph.meta.preflight)
    max_phase_runs: pydantic.PositiveInt = 256


class TrainConfig(pydantic.BaseModel):
    """Everything ``agentgraph train`` needs (module docstring). ``protocol`` is ``{"rule": name,
    **settings}``, validated by that protocol's own model
    (:func:`~agentgraph.protocols.base.resolve`) and stored with every setting filled in.

    Example:
        >>> cfg = TrainConfig(data={"task": "sinusoid"}, net={"sizes": [1, 20, 20, 1], "activation": "relu", "loss": "l2"})
        >>> cfg.meta.objective.hint_weight, cfg.net.sizes, cfg.protocol["rule"]
        (0.7, [1, 20, 20, 1], 'mplp')
    """

    model_config = _STRICT
    net: SerializeAsAny[NetConfig] = MLPNetConfig()
    data: DataConfig = DataConfig()
    protocol: dict[str, Any] = {"rule": "mplp"}
    meta: MetaConfig = MetaConfig()
    schedules: SchedulesConfig = SchedulesConfig()
    run: RunConfig = RunConfig()

    @pydantic.model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        moved = moved_messages(data)
        if moved:
            raise ValueError("\n".join(moved))
        return data

    @pydantic.field_validator("net", mode="before")
    @classmethod
    def _net(cls, v: Any) -> NetConfig:
        return net_section(v)

    @pydantic.field_validator("protocol", mode="after")
    @classmethod
    def _protocol(cls, v: dict[str, Any]) -> dict[str, Any]:
        from agentgraph.protocols.base import settings_of

        finite_everywhere(v, "protocol")
        return settings_of(v)

    def make_protocol(self):
        """The :class:`~agentgraph.protocols.base.Protocol` of the ``protocol:`` section.

        Example:
            >>> TrainConfig(protocol={"rule": "sgd", "lr": 0.1}).make_protocol().name
            'sgd'
        """
        from agentgraph.errors_user import blame_user_code
        from agentgraph.protocols.base import resolve

        with blame_user_code(self, "building the protocol"):
            return resolve(self.protocol)

    @pydantic.model_validator(mode="after")
    def _check(self) -> TrainConfig:
        """Checks across sections; what a task needs of the network is its entry of
        :data:`~agentgraph.meta.tasks.NET_NEEDS`."""
        m, d = self.meta, self.data
        problems = self.schedules.problems(m.inner_steps, m.optimizer.kind)
        S = d.continual.tasks
        if S > 1 and (m.inner_steps % S or d.cv_batch % S):
            problems.append(f"data.continual.tasks {S} must divide meta.inner_steps ({m.inner_steps}) and "
                            f"data.cv_batch ({d.cv_batch}): every task of the sequence gets an equal share")
        needs = NET_NEEDS.get(d.task)
        if needs is not None:
            for f in ("image_size", "path"):
                if f not in needs.reads and getattr(d, f) != DataConfig.model_fields[f].default:
                    problems.append(f"data.{f} is {getattr(d, f)!r}, but data.task {d.task!r} does not read it; "
                                    "remove it (or choose the task that reads it)")
            lib = self.net.library
            problems += needs.problems(d.task, self.net.sizes if lib else None, self.net.loss if lib else None,
                                       d.image_size, S)
        if problems:
            raise ValueError("\n".join(problems))
        return self


#: Sections that are tagged unions, and their tags (left out of error paths).
TAGGED = {"optimizer": ("gradient", "es")}


def _format(e: pydantic.ValidationError, source: str) -> str:
    parts = []
    for err in e.errors():
        # a tagged union (meta.optimizer) puts its tag in the path: meta.optimizer.es.strategy
        path = [x for i, x in enumerate(err["loc"]) if not (i and err["loc"][i - 1] in TAGGED and x in TAGGED[err["loc"][i - 1]])]
        loc = ".".join(str(x) for x in path)
        msg = err["msg"].removeprefix("Value error, ")
        if loc == "protocol" and msg.startswith("invalid settings"):  # the protocol's own model names its fields
            parts.extend(f"  {line}" for line in msg.split(": ", 1)[1].split("; "))
            continue
        for line in msg.split("\n"):  # a message that names its fields stands alone
            named = not loc or line.startswith(loc.split(".")[0] + ".")
            parts.append(f"  {line}" if named else f"  {loc}: {line}")
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
            data = read_yaml(text, f"Config {str(p)!r}") or {}
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
                              f"(net:, data:, protocol:, meta:, schedules:, run:), got {type(data).__name__}.")
    return parse_config(apply_overrides(data, overrides), repr(str(p)))


def read_yaml(text: str, where: str) -> Any:
    """YAML ``text`` read safely: plain data only (no tags of Python objects), and no aliases
    (``*name``) — a config needs none, and aliases are how a few lines expand into gigabytes
    ("billion laughs") or recurse forever.

    Raises:
        AgentGraphError: an alias, or a YAML error (``where`` names the source).

    Example:
        >>> read_yaml("meta: {batch: 4}", "demo")
        {'meta': {'batch': 4}}
        >>> try:
        ...     read_yaml("a: &x [1, 2]\\nb: *x", "demo")
        ... except AgentGraphError as e:
        ...     print(str(e).split(";")[0])
        demo uses the YAML alias *x (line 2)
    """
    import yaml

    class _NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):  # noqa: ANN001
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise AgentGraphError(f"{where} uses the YAML alias *{event.anchor} (line {event.start_mark.line + 1}); "
                                      "aliases are not allowed in configs (they can expand without bound): write the "
                                      "value out.")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=_NoAliases)  # noqa: S506 (a SafeLoader subclass)
    except AgentGraphError:
        raise
    except yaml.YAMLError as e:
        raise AgentGraphError(f"{where} could not be parsed (not valid YAML): {e}") from None


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
