"""Convolutional networks as per-scalar agent graphs: one synapse agent per *use* of a kernel
weight, tied across positions (:mod:`agentgraph.graph.ties`).

A convolution layer of kernel ``k``, stride ``s``, padding ``p`` from a ``[C_in, H, W]`` map to
``C_out`` channels has, for every output position ``(y, x)`` and every kernel entry
``(c_out, c_in, i, j)`` whose input position ``(y·s + i − p, x·s + j − p)`` lies inside the map
(uses that would read the zero padding are left out: they add nothing), one synapse agent
``("cw", l, c_out, c_in, i, j, y, x)``. All uses of one kernel entry form the tie
``"cw<l>/<c_out>/<c_in>/<i>/<j>"`` on ``w`` (sum reduction: the kernel's gradient is the sum
over positions); the summing units ``("cb", l, c_out, y, x)`` are bias agents whose ``b`` is tied
per channel (``"cb<l>/<c_out>"``); activation units ``("ca", l, c_out, y, x)`` follow. Pooling
layers are agents too: ``("pool", q, c, y, x)`` (:class:`~agentgraph.nodes.AvgPool`, or
:class:`~agentgraph.nodes.MaxPool` with one :class:`~agentgraph.nodes.MaxGate`
``("gate", q, c, y, x, dy, dx)`` per input). Dense layers and the head are those of
:func:`~agentgraph.builders.mlp` (``("w", l, i, j)``, ``("b", l, j)``, ``("a", l, j)``), reading
the last map flattened in ``(c, y, x)`` order. Inputs ``("x", i)`` read column
``i = (c·H + y)·W + x`` of ``batch["x"]`` (an NCHW image flattened).

``l`` counts the layers with weights (conv and dense), ``q`` the position in ``layers``; groups
are ``"synapse:l"``, ``"bias:l"``, ``"<activation>:l"`` as in :func:`~agentgraph.builders.mlp`.
Each conv layer records a ``"conv"`` layout hint (:meth:`~agentgraph.AgentGraph.add_hint`):
the compiler verifies it and lowers the layer to ``lax.conv_general_dilated``
(:mod:`agentgraph.compiler.conv`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agentgraph.builders.dense import attach_head, check_choice, dense_layer
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.nodes.activations import ACTIVATIONS
from agentgraph.nodes.losses import LOSSES

__all__ = ["Conv", "Dense", "Pool", "cnn", "layer_spec"]


@dataclasses.dataclass(frozen=True)
class Conv:
    """A convolution layer: ``channels`` output channels, square ``kernel``, ``stride``, zero
    ``padding``; followed by the network's activation.

    Example:
        >>> Conv(8, kernel=3, stride=2).out_size(28)
        13
    """

    channels: int
    kernel: int = 3
    stride: int = 1
    padding: int = 0

    def out_size(self, n: int) -> int:
        """The output height (width) for an input of height (width) ``n``."""
        return (n + 2 * self.padding - self.kernel) // self.stride + 1


@dataclasses.dataclass(frozen=True)
class Pool:
    """A pooling layer: ``size × size`` windows every ``stride`` (default ``size``), ``"avg"`` or
    ``"max"``.

    Example:
        >>> Pool(2).out_size(6)
        3
    """

    size: int = 2
    stride: int | None = None
    mode: str = "avg"

    def out_size(self, n: int) -> int:
        """The output height (width) for an input of height (width) ``n``."""
        return (n - self.size) // (self.stride or self.size) + 1


@dataclasses.dataclass(frozen=True)
class Dense:
    """A dense hidden layer of ``units`` units (followed by the network's activation).

    Example:
        >>> Dense(32).units
        32
    """

    units: int


LAYERS = {"conv": Conv, "pool": Pool, "dense": Dense}


def layer_spec(spec: Conv | Pool | Dense | Mapping[str, Any]) -> Conv | Pool | Dense:
    """A layer from its dataclass or a mapping ``{"type": "conv" | "pool" | "dense", ...fields}``
    (how a config writes it).

    Example:
        >>> layer_spec({"type": "conv", "channels": 8, "kernel": 3, "stride": 2})
        Conv(channels=8, kernel=3, stride=2, padding=0)
    """
    if isinstance(spec, (Conv, Pool, Dense)):
        return spec
    if not isinstance(spec, Mapping) or spec.get("type") not in LAYERS:
        raise AgentGraphError(f"cnn: layer {spec!r} must be Conv/Pool/Dense or a mapping with type one of {sorted(LAYERS)}.")
    cls = LAYERS[spec["type"]]
    fields = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(spec) - fields - {"type"})
    if extra:
        raise AgentGraphError(f"cnn: a {spec['type']} layer has no option(s) {extra}; it takes {sorted(fields)}.")
    return cls(**{k: v for k, v in spec.items() if k != "type"})


def _positive(v: Any, what: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise AgentGraphError(f"cnn: {what} must be an int >= {minimum}, got {v!r}.")
    return int(v)


def _conv(g: AgentGraph, prev: np.ndarray, shape: tuple[int, int, int], layer: Conv, l: int, act: str,
          rng: np.random.Generator, init_std: float, backward_in: bool) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Add conv layer ``l`` reading units ``prev`` (``[C·H·W]`` in (c, y, x) order)."""
    C, H, W = shape
    k, s, p, Co = layer.kernel, layer.stride, layer.padding, layer.channels
    Ho, Wo = layer.out_size(H), layer.out_size(W)
    if Ho < 1 or Wo < 1:
        raise AgentGraphError(f"cnn: conv layer {l} (kernel {k}, stride {s}, padding {p}) does not fit a {H}×{W} map.")
    co, ci, i, j, y, x = (a.reshape(-1) for a in np.meshgrid(np.arange(Co), np.arange(C), np.arange(k), np.arange(k),
                                                            np.arange(Ho), np.arange(Wo), indexing="ij"))
    iy, ix = y * s + i - p, x * s + j - p
    ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    co, ci, i, j, y, x, iy, ix = (a[ok] for a in (co, ci, i, j, y, x, iy, ix))
    tie = ((co * C + ci) * k + i) * k + j
    kernel = rng.normal(0.0, init_std, size=Co * C * k * k)
    ws = g.add_agents(list(zip(["cw"] * len(co), [l] * len(co), co.tolist(), ci.tolist(), i.tolist(), j.tolist(),
                               y.tolist(), x.tolist())),
                      "synapse", groups=f"synapse:{l}", states={"w": kernel[tie]})
    units = [(c, yy, xx) for c in range(Co) for yy in range(Ho) for xx in range(Wo)]
    bs = g.add_agents([("cb", l, *u) for u in units], "bias", groups=f"bias:{l}")
    src = prev[(ci * H + iy) * W + ix]
    dst = bs[(co * Ho + y) * Wo + x]
    g.add_arrows(src, ws, "forward", port="x", by_index=True)
    g.add_arrows(ws, dst, "forward", port="x", by_index=True)
    g.add_arrows(dst, ws, "backward", port="m", by_index=True)
    if backward_in:
        g.add_arrows(ws, src, "backward", port="m", by_index=True)
    order = np.argsort(tie, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(tie[order])) + 1, len(tie)]
    for a, b in zip(starts[:-1], starts[1:]):
        t = int(tie[order[a]])
        c_o, rest = divmod(t, C * k * k)
        c_i, rest = divmod(rest, k * k)
        g.tie(ws[order[a:b]], "w", name=f"cw{l}/{c_o}/{c_i}/{rest // k}/{rest % k}", by_index=True)
    for c in range(Co):
        g.tie(bs[c * Ho * Wo:(c + 1) * Ho * Wo], "b", name=f"cb{l}/{c}", by_index=True)
    full = np.full(Co * C * k * k * Ho * Wo, -1, np.int64)  # every (co, ci, i, j, y, x) use; -1: padding
    full[np.flatnonzero(ok)] = ws
    g.add_hint("conv", synapses=full.reshape(Co, C, k, k, Ho, Wo), inputs=prev.copy(), outputs=bs.copy(),
               in_shape=(C, H, W), stride=s, padding=p)
    units_a = g.add_agents([("ca", l, *u) for u in units], act, groups=f"{act}:{l}")
    g.add_arrows(bs, units_a, "forward", port="x", by_index=True)
    g.add_arrows(units_a, bs, "backward", port="m", by_index=True)
    return units_a, (Co, Ho, Wo)


def _pool(g: AgentGraph, prev: np.ndarray, shape: tuple[int, int, int], layer: Pool, q: int,
          backward_in: bool) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Add pooling layer ``q`` over units ``prev`` (``[C·H·W]``)."""
    C, H, W = shape
    k, s = layer.size, layer.stride or layer.size
    Ho, Wo = layer.out_size(H), layer.out_size(W)
    if layer.mode not in ("avg", "max"):
        raise AgentGraphError(f"cnn: pool layer {q} has mode {layer.mode!r}; use 'avg' or 'max'.")
    if Ho < 1 or Wo < 1:
        raise AgentGraphError(f"cnn: pool layer {q} (size {k}, stride {s}) does not fit a {H}×{W} map.")
    c, y, x, dy, dx = (a.reshape(-1) for a in np.meshgrid(np.arange(C), np.arange(Ho), np.arange(Wo), np.arange(k),
                                                         np.arange(k), indexing="ij"))
    src = prev[(c * H + y * s + dy) * W + x * s + dx]
    kind = "avg_pool" if layer.mode == "avg" else "max_pool"
    names = [("pool", q, cc, yy, xx) for cc in range(C) for yy in range(Ho) for xx in range(Wo)]
    pools = g.add_agents(names, kind, states={"n": np.full(len(names), float(k * k))} if kind == "avg_pool" else None)
    dst = pools[(c * Ho + y) * Wo + x]
    if kind == "max_pool":
        gates = g.add_agents(list(zip(["gate"] * len(c), [q] * len(c), c.tolist(), y.tolist(), x.tolist(), dy.tolist(),
                                      dx.tolist())), "max_gate")
        g.add_arrows(src, gates, "forward", port="x", by_index=True)
        g.add_arrows(gates, dst, "forward", port="x", by_index=True)
        g.add_arrows(dst, gates, "backward", port="m", by_index=True)
        if backward_in:
            g.add_arrows(gates, src, "backward", port="m", by_index=True)
    else:
        g.add_arrows(src, dst, "forward", port="x", by_index=True)
        if backward_in:
            g.add_arrows(dst, src, "backward", port="m", by_index=True)
    return pools, (C, Ho, Wo)


def cnn(
    input_shape: Sequence[int],
    layers: Sequence[Conv | Pool | Dense | Mapping[str, Any]],
    n_out: int,
    activation: str = "relu",
    loss: str = "cross_entropy",
    *,
    init_std: float | str = 0.1,
    seed: int = 0,
) -> AgentGraph:
    """A convolutional network as a per-scalar agent graph with tied kernels (module docstring).

    Args:
        input_shape: ``(C, H, W)`` of one input image (``batch["x"]`` holds it flattened NCHW).
        layers: :class:`Conv`, :class:`Pool` and :class:`Dense` layers in order (or mappings,
            see :func:`layer_spec`); conv and dense layers are followed by ``activation``.
        n_out: output units (a dense layer into the head, no activation).
        activation: a name in :data:`~agentgraph.nodes.ACTIVATIONS`.
        loss: ``"cross_entropy"`` or ``"l2"``.
        init_std: kernel entries and dense weights start ``~ N(0, init_std)`` (one draw per
            kernel entry, shared by its uses), or ``"he"``: ``N(0, 2 / fan_in)`` per layer
            (fan-in ``C_in·k²`` for a conv layer); biases start at 0.
        seed: RNG seed.

    Returns:
        A validated :class:`AgentGraph`.

    Example:
        >>> g = cnn((1, 6, 6), [Conv(2, kernel=3), Pool(2)], n_out=3)
        >>> len(g.agents("synapse")), len(g.ties())  # 2·9·16 kernel uses + 8·3 dense; 18 + 2 ties
        (312, 20)
    """
    if len(tuple(input_shape)) != 3:
        raise AgentGraphError(f"cnn: input_shape must be (C, H, W), got {tuple(input_shape)!r}.")
    shape = tuple(_positive(v, "input_shape entries") for v in input_shape)
    n_out = _positive(n_out, "n_out")
    check_choice(activation, ACTIVATIONS, "activation")
    check_choice(loss, LOSSES, "loss")
    specs = [layer_spec(s) for s in layers]
    for q, s in enumerate(specs):
        for f in dataclasses.fields(s):
            v = getattr(s, f.name)
            if f.name == "mode" or (f.name == "stride" and v is None):
                continue
            _positive(v, f"layer {q} {f.name}", 0 if f.name == "padding" else 1)
    if not (init_std == "he" or (isinstance(init_std, (int, float)) and not isinstance(init_std, bool) and init_std > 0)):
        raise AgentGraphError(f"cnn: init_std must be a positive number or 'he', got {init_std!r}.")
    std = (lambda fan_in: float(np.sqrt(2.0 / fan_in))) if init_std == "he" else (lambda fan_in: float(init_std))
    rng = np.random.default_rng(seed)
    g = AgentGraph()
    n_in = int(np.prod(shape))
    prev = g.add_agents([("x", i) for i in range(n_in)], "input", slots=range(n_in))
    backward_in, l = False, 0  # no backward arrow runs into the inputs
    flat: int | None = None  # units once the map is flattened
    for q, s in enumerate(specs):
        if isinstance(s, Conv):
            if flat is not None:
                raise AgentGraphError(f"cnn: layer {q} is a conv layer after a dense one; put conv and pool layers first.")
            prev, shape = _conv(g, prev, shape, s, l, activation, rng, std(shape[0] * s.kernel ** 2), backward_in)
            l += 1
        elif isinstance(s, Pool):
            if flat is not None:
                raise AgentGraphError(f"cnn: layer {q} is a pool layer after a dense one; put conv and pool layers first.")
            prev, shape = _pool(g, prev, shape, s, q, backward_in)
        else:
            prev = dense_layer(g, prev, _positive(s.units, f"layer {q} units"), l, activation, rng, std(len(prev)),
                               backward_in)
            flat, l = s.units, l + 1
        backward_in = True
    out = dense_layer(g, prev, n_out, l, None, rng, std(len(prev)), backward_in)
    attach_head(g, out, loss)
    return g.validate()
