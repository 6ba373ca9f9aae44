"""The ``net:`` section of a config: a tagged union on ``kind``, one pydantic model per network
builder, each holding only its builder's settings and building its network.

* ``mlp`` (:class:`MLPNetConfig`): ``sizes``, ``activation``, ``loss``, ``init_std``;
* ``random_dag`` (:class:`RandomDagNetConfig`): those, plus ``n_hidden``, ``edge_prob``,
  ``parallel_prob`` and ``pool`` (meta-train on that many seeded graphs);
* ``cnn`` (:class:`CNNNetConfig`): ``input_shape``, ``layers``, ``n_out``, ``activation``,
  ``loss``, ``init_std`` — a convolutional network with tied kernels;
* your builder ``"package.module:function"`` (:class:`BuilderNetConfig`): ``args`` (its keyword
  arguments; ``seed=`` is passed when it takes one), ``init_std``, ``pool``.

A library builder is added by a model (a subclass of :class:`NetConfig` with a ``build``) and an
entry in :data:`NET_MODELS`.

Example:
    >>> net_section({"kind": "random_dag", "sizes": [4, 2], "n_hidden": 3}).pool
    1
    >>> net_section({"sizes": [4, 2], "n_hidden": 3})
    Traceback (most recent call last):
    ValueError: net.n_hidden is a setting of net.kind 'random_dag', not of 'mlp'
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Literal

import pydantic

from agentgraph import builders
from agentgraph.errors import AgentGraphError
from agentgraph.loading import load_callable
from agentgraph.network import Network

__all__ = ["NET_MODELS", "BuilderNetConfig", "CNNNetConfig", "MLPNetConfig", "NetConfig", "RandomDagNetConfig", "finite_everywhere",
           "net_model", "net_section"]

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
_MLP = inspect.signature(builders.mlp).parameters  # the library builder's defaults are the config's
_CNN = inspect.signature(builders.cnn).parameters


def finite_everywhere(value: Any, where: str) -> None:
    """Free-form settings (``protocol:``, ``net.args``) hold no NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}; numbers in a config must be finite")
    if isinstance(value, dict):
        for k, v in value.items():
            finite_everywhere(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            finite_everywhere(v, f"{where}[{i}]")


class NetConfig(pydantic.BaseModel):
    """What every ``net:`` model has: its ``kind`` and the scale of fresh weights."""

    model_config = _STRICT
    kind: str
    init_std: pydantic.PositiveFloat = 0.05

    @property
    def library(self) -> bool:
        """The network is one of the library builders (its ``sizes`` describe it)."""
        return self.kind in NET_MODELS

    @property
    def graphs(self) -> int:
        """How many seeded graphs meta-training cycles through (``net.pool``; 1 without one)."""
        return getattr(self, "pool", 1)

    def build(self, seed: int = 0) -> Network:
        """The network, its weights drawn from ``seed``."""
        raise NotImplementedError


class MLPNetConfig(NetConfig):
    """``net: {kind: mlp}``: a per-scalar MLP (:func:`agentgraph.builders.mlp_network`)."""

    kind: Literal["mlp"] = "mlp"
    sizes: list[pydantic.PositiveInt] = [144, 50, 10]
    activation: str = _MLP["activation"].default  # a library activation (agentgraph.nodes.ACTIVATIONS)
    loss: str = _MLP["loss"].default  # a library loss (agentgraph.nodes.LOSSES)

    @pydantic.model_validator(mode="after")
    def _check(self) -> MLPNetConfig:
        from agentgraph.nodes.activations import ACTIVATIONS
        from agentgraph.nodes.losses import LOSSES

        if len(self.sizes) < 2:
            raise ValueError("sizes needs at least an input and an output size")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r} is not one of {sorted(LOSSES)}")
        return self

    def build(self, seed: int = 0) -> Network:
        return builders.mlp_network(self.sizes, activation=self.activation, loss=self.loss, init_std=self.init_std,
                                    seed=seed)


class RandomDagNetConfig(MLPNetConfig):
    """``net: {kind: random_dag}``: a seeded random DAG with ``sizes[0]`` inputs, ``n_hidden``
    hidden units and ``sizes[-1]`` outputs (:func:`agentgraph.builders.random_dag_network`)."""

    kind: Literal["random_dag"] = "random_dag"  # type: ignore[assignment]
    n_hidden: pydantic.NonNegativeInt = 20
    edge_prob: float = pydantic.Field(0.3, ge=0.0, le=1.0)  # each forward connection's probability
    parallel_prob: float = pydantic.Field(0.0, ge=0.0, le=1.0)  # a second, parallel synapse's
    # meta-train on this many seeded graphs (seeds run.seed, run.seed + 1, ...), one per meta-step
    # in turn, all through one compiled meta-step (one bucket)
    pool: pydantic.PositiveInt = 1

    def build(self, seed: int = 0) -> Network:
        return builders.random_dag_network(self.sizes[0], self.n_hidden, self.sizes[-1], edge_prob=self.edge_prob,
                                           parallel_prob=self.parallel_prob, activation=self.activation,
                                           loss=self.loss, init_std=self.init_std, seed=seed)


class CNNNetConfig(NetConfig):
    """``net: {kind: cnn}``: a convolutional network with tied kernels
    (:func:`agentgraph.builders.cnn`): ``layers`` are mappings ``{type: conv, channels, kernel,
    stride, padding}``, ``{type: pool, size, stride, mode}``, ``{type: dense, units}``.

    Example:
        >>> c = CNNNetConfig(input_shape=[1, 8, 8], layers=[{"type": "conv", "channels": 4, "stride": 2}], n_out=3)
        >>> c.sizes, len(c.build().graph.ties())
        ([64, 3], 40)
    """

    kind: Literal["cnn"] = "cnn"
    input_shape: tuple[pydantic.PositiveInt, pydantic.PositiveInt, pydantic.PositiveInt] = (1, 28, 28)
    layers: list[dict[str, Any]] = [{"type": "conv", "channels": 8, "kernel": 3, "stride": 2}]
    n_out: pydantic.PositiveInt = 10
    activation: str = _CNN["activation"].default  # the library builder's defaults are the config's
    loss: str = _CNN["loss"].default
    init_std: pydantic.PositiveFloat = 0.1

    @pydantic.model_validator(mode="after")
    def _check(self) -> CNNNetConfig:
        self.build()  # the builder checks the layers against the input shape (errors name the layer)
        return self

    @property
    def sizes(self) -> list[int]:
        """``[inputs, outputs]``: what the task checks read."""
        C, H, W = self.input_shape
        return [C * H * W, self.n_out]

    def build(self, seed: int = 0) -> Network:
        g = builders.cnn(self.input_shape, self.layers, self.n_out, self.activation, self.loss, init_std=self.init_std,
                         seed=seed)
        return builders.library_network(g, self.init_std, self.loss)


class BuilderNetConfig(NetConfig):
    """``net: {kind: "package.module:function", args: {...}}``: your builder, called with
    ``args`` (and ``seed=`` if it takes one), returning an :class:`~agentgraph.AgentGraph` or a
    :class:`~agentgraph.network.Network`."""

    args: dict[str, Any] = {}
    pool: pydantic.PositiveInt = 1  # seeded graphs to cycle through, as random_dag's

    @pydantic.model_validator(mode="after")
    def _check(self) -> BuilderNetConfig:
        finite_everywhere(self.args, "args")
        if ":" not in self.kind:
            raise ValueError(f"kind {self.kind!r} is neither one of {sorted(NET_MODELS)} nor 'package.module:function'")
        return self

    def build(self, seed: int = 0) -> Network:
        fn = load_callable(self.kind, "net.kind")
        kwargs = dict(self.args)
        if "seed" in inspect.signature(fn).parameters:
            kwargs.setdefault("seed", seed)
        from agentgraph.errors_user import user_code_error

        try:
            out = fn(**kwargs)
        except AgentGraphError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's builder failed: name it and the fix
            err = user_code_error(e, {"net.kind": self.kind}, "building the network")
            if isinstance(e, TypeError) and (err is None or "argument" in str(e)):
                raise AgentGraphError(f"net.kind {self.kind!r} could not be called with net.args {sorted(self.args)}: "
                                      f"{e}") from None
            if err is None:
                raise
            raise err from None
        return builders.as_network(out, self.init_std, f"net.kind {self.kind!r}")


#: The library builders (``net.kind``) and their models; any other kind is ``"package.module:function"``
#: (:class:`BuilderNetConfig`).
NET_MODELS: dict[str, type[NetConfig]] = {"mlp": MLPNetConfig, "random_dag": RandomDagNetConfig, "cnn": CNNNetConfig}


def net_model(kind: str) -> type[NetConfig]:
    """The model of ``net.kind`` ``kind``.

    Example:
        >>> net_model("random_dag").__name__, net_model("pkg.mod:fn").__name__
        ('RandomDagNetConfig', 'BuilderNetConfig')
    """
    return NET_MODELS.get(kind, BuilderNetConfig)


def net_section(section: Any) -> NetConfig:
    """A ``net:`` mapping validated by its kind's model (``kind`` defaults to ``mlp``); a setting
    of another kind is named with the kind it belongs to.

    Raises:
        ValueError: a setting of another kind, or not a mapping.
        pydantic.ValidationError: the kind's model refuses a value.
    """
    if isinstance(section, NetConfig):
        return section
    if not isinstance(section, dict):
        raise ValueError(f"must be a mapping with a kind, got {type(section).__name__}")
    kind = section.get("kind", "mlp")
    if not isinstance(kind, str):
        raise ValueError(f"kind must be one of {sorted(NET_MODELS)} or 'package.module:function', got {kind!r}")
    model = net_model(kind)
    elsewhere = []
    for key in section:
        if key in model.model_fields:
            continue
        owners = [repr(k) for k, m in NET_MODELS.items() if key in m.model_fields]
        if key in BuilderNetConfig.model_fields:
            owners.append("'package.module:function' (your builder)")
        if owners:
            elsewhere.append(f"net.{key} is a setting of net.kind {' or '.join(owners)}, not of {kind!r}")
    if elsewhere:
        raise ValueError("\n".join(elsewhere))
    return model.model_validate(section)
