"""A neural cellular automaton (Mordvintsev et al., Distill 2020) as an agent graph.

Every cell of a :func:`~agentgraph.builders.grid` is an :class:`NCACell` agent with a ``C``-channel
state ``s`` (per example: channels 0–3 are premultiplied RGBA, the rest hidden). Each tick a cell
reads what its eight neighbours sent at the previous tick (delayed arrows, one port per direction;
zeros beyond the border), perceives its 3×3 neighbourhood through the identity and the Sobel-x/y
filters (``3C`` numbers), and applies the one update network every cell shares (the learned part,
group ``"nca_cell"``)::

    p  = [s, Σ_d kx[d] m_d, Σ_d ky[d] m_d]          (m_d: the message from direction d)
    ds = relu(p W1 + b1) W2                         (W2 starts at zero)
    s ← (s + ds) · [max(alpha of s and of every m_d) > 0.1]      ("alive" masking)

and sends its new state. Differences from the paper's NCA: every cell updates at every tick (no
stochastic update mask) and the alive mask is taken before the update only.

:func:`seed` makes the state a growth starts from (one live cell in the centre, and the messages in
flight set to the same states, so the first tick already sees the seed — exactly the standard NCA);
:func:`grow` runs ticks and returns the RGBA frames; :func:`train` fits the update network by
gradient through the ticks so that the pattern grows into a target and stays.

Example:
    >>> import jax
    >>> from agentgraph import compile
    >>> from agentgraph.builders import grid
    >>> cell = NCACell(channels=8, hidden=16)
    >>> prog = compile(grid(6, 6, cell))
    >>> params = init_params(jax.random.PRNGKey(0), cell)
    >>> state, frames = grow(params, prog, seed(prog, 2, 6, 6), 3, 6, 6)
    >>> frames.shape
    (3, 2, 6, 6, 4)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentgraph.arrows.ports import Port
from agentgraph.arrows.schedule import DELAYED
from agentgraph.builders import NEIGHBOURS
from agentgraph.errors import AgentGraphError
from agentgraph.nodes.base import Field, Kind

__all__ = ["GROUP", "NCACell", "SOBEL_X", "SOBEL_Y", "heart", "grow", "init_params", "seed", "train"]

#: The cells' parameter-sharing group.
GROUP = "nca_cell"

_KX = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
#: Sobel-x weight of each neighbour direction (the centre's is 0).
SOBEL_X: dict[str, float] = {p: float(_KX[di + 1, dj + 1]) for p, (di, dj) in NEIGHBOURS.items()}
#: Sobel-y weight of each neighbour direction.
SOBEL_Y: dict[str, float] = {p: float(_KX.T[di + 1, dj + 1]) for p, (di, dj) in NEIGHBOURS.items()}


class NCACell(Kind):
    """One cell: state ``s [channels]`` per example; acts on ``arrow_type`` (default ``tick``)
    with one port per neighbour direction and output ``"out"`` (its new state).

    ``params`` (its group's): ``{"w1": [3C, hidden], "b1": [hidden], "w2": [hidden, C]}``.

    Example:
        >>> import jax.numpy as jnp
        >>> cell = NCACell(channels=4, hidden=8)
        >>> p = init_params(jax.random.PRNGKey(0), cell)
        >>> s = {"s": jnp.zeros(4).at[3].set(1.0)}
        >>> new, out, upd = cell.act("tick", p, s, {d: jnp.zeros(4) for d in NEIGHBOURS})
        >>> out["out"].tolist()  # W2 starts at zero: nothing changes yet
        [0.0, 0.0, 0.0, 1.0]
    """

    name = "nca_cell"

    def __init__(self, channels: int = 16, hidden: int = 128, arrow_type: str = "tick") -> None:
        if channels < 4:
            raise AgentGraphError(f"NCACell needs at least 4 channels (RGBA), got {channels}.")
        self.channels, self.hidden, self.arrow_type = int(channels), int(hidden), arrow_type
        self.fields = {"s": Field((self.channels,), per_example=True)}
        self.acts_on = (arrow_type,)
        self.arrow_ports = {arrow_type: {d: Port(self.channels, "sum") for d in NEIGHBOURS}}
        self.arrow_outputs = {arrow_type: {"out": self.channels}}

    def act(self, arrow_type, params, state, inbox):
        s = state["s"]
        sx = sum(w * inbox[d] for d, w in SOBEL_X.items() if w)
        sy = sum(w * inbox[d] for d, w in SOBEL_Y.items() if w)
        h = jax.nn.relu(jnp.concatenate([s, sx, sy]) @ params["w1"] + params["b1"])
        alpha = jnp.max(jnp.stack([s[3]] + [inbox[d][3] for d in NEIGHBOURS]))
        new = (s + h @ params["w2"]) * (alpha > 0.1)
        return {**state, "s": new}, {"out": new}, {}


def init_params(key: jax.Array, cell: NCACell) -> dict[str, jax.Array]:
    """The update network: ``w1 [3C, hidden] ~ N(0, 1/3C)``, ``b1 = 0``, ``w2 = 0``.

    Example:
        >>> {k: v.shape for k, v in init_params(jax.random.PRNGKey(0), NCACell(4, 8)).items()}
        {'w1': (12, 8), 'b1': (8,), 'w2': (8, 4)}
    """
    c, h = cell.channels, cell.hidden
    return {"w1": jax.random.normal(key, (3 * c, h)) / np.sqrt(3 * c), "b1": jnp.zeros(h), "w2": jnp.zeros((h, c))}


def seed(prog: Any, batch_size: int, height: int, width: int) -> dict:
    """The compiled state a growth starts from: every cell zero but the centre one, whose alpha and
    hidden channels are 1; the messages in flight hold the same states (so tick 0 sees the seed).

    Returns:
        a state of ``prog`` (``prog.init(batch_size)`` layout).
    """
    agents = {}
    channels = None
    for i in range(height):
        for j in range(width):
            kind = prog.kinds[prog.index[("cell", i, j)][0]]
            channels = kind.channels
            v = np.zeros((batch_size, channels))
            if (i, j) == (height // 2, width // 2):
                v[:, 3:] = 1.0
            agents[("cell", i, j)] = {"s": v}
    agents[DELAYED] = {(kind.arrow_type, a, "out"): st["s"] for a, st in agents.items()}
    return prog.from_agents(agents)


def _rgba(prog: Any, state: Mapping, height: int, width: int) -> jax.Array:
    """``[B, height, width, 4]``: the cells' RGBA channels (rows are in row-major cell order)."""
    s = state[GROUP]["s"]  # [N, B, C]
    rows = np.array([prog.index[("cell", i, j)][1] for i in range(height) for j in range(width)])
    return jnp.moveaxis(s[rows, :, :4], 1, 0).reshape(s.shape[1], height, width, 4)


def grow(params: Mapping, prog: Any, state: Mapping, ticks: int, height: int, width: int) -> tuple[dict, jax.Array]:
    """Run ``ticks`` steps of the grid (``lax.scan``, remat per tick).

    Returns:
        ``(state, frames [ticks, B, height, width, 4])``: the RGBA after each tick.
    """
    def body(s, _):
        s, _ = prog.step({GROUP: params}, s, {})
        return s, _rgba(prog, s, height, width)

    return jax.lax.scan(jax.checkpoint(body), state, None, length=ticks)


def heart(size: int = 16, color: tuple[float, float, float] = (0.9, 0.15, 0.25)) -> np.ndarray:
    """A ``[size, size, 4]`` premultiplied-RGBA heart glyph (alpha 1 inside, 0 outside).

    Example:
        >>> h = heart(16); h.shape, float(h[..., 3].max()), 40 < int(h[..., 3].sum()) < 120
        ((16, 16, 4), 1.0, True)
    """
    y, x = np.mgrid[0:size, 0:size]
    u = (x - (size - 1) / 2) / (size * 0.36)
    v = -(y - (size - 1) / 2 - size * 0.04) / (size * 0.36)
    inside = ((u * u + v * v - 1) ** 3 - u * u * v ** 3) <= 0
    out = np.zeros((size, size, 4))
    out[inside, :3] = color
    out[inside, 3] = 1.0
    return out


def train(prog: Any, cell: NCACell, target: np.ndarray, *, steps: int = 1000, batch_size: int = 4,
          ticks: tuple[int, int] = (32, 48), lr: float = 2e-3, seed_key: int = 0, pool_size: int = 0,
          params: Mapping | None = None, callback: Callable[[int, float], None] | None = None
          ) -> tuple[dict, list[float]]:
    """Fit the update network so that a seed grows into ``target`` and stays: the loss is the mean
    squared error of the RGBA against ``target [H, W, 4]``, averaged over ticks
    ``ticks[0]..ticks[1]`` (Adam, gradients clipped to norm 1, through every tick).

    With ``pool_size > 0`` (the paper's sample pool, for persistence) each step starts from
    ``batch_size`` states drawn from a pool of earlier results, one of them reset to the seed,
    and writes the grown states back — so the rule also learns to keep a grown pattern.

    Returns:
        ``(params, losses)``; ``callback(step, loss)`` is called after every step.
    """
    height, width = target.shape[:2]
    lo, hi = ticks
    if not 0 < lo <= hi:
        raise AgentGraphError(f"train: ticks must be 0 < lo <= hi, got {ticks}.")
    params = init_params(jax.random.PRNGKey(seed_key), cell) if params is None else dict(params)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    opt_state = opt.init(params)
    start = seed(prog, batch_size, height, width)
    tgt = jnp.asarray(target, start[GROUP]["s"].dtype)
    take = lambda tree, idx: jax.tree.map(lambda v: v[:, idx], tree)  # noqa: E731  (batch is axis 1)

    def loss_fn(p, s0):
        s, frames = grow(p, prog, s0, hi, height, width)
        return jnp.mean((frames[lo - 1:] - tgt) ** 2), s

    @jax.jit
    def update(p, o, s0):
        (loss, s), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s0)
        upd, o = opt.update(g, o, p)
        return optax.apply_updates(p, upd), o, loss, s

    pool = seed(prog, pool_size, height, width) if pool_size else None
    rng = np.random.default_rng(seed_key)
    losses = []
    for i in range(steps):
        if pool is None:
            s0 = start
        else:
            idx = rng.choice(pool_size, batch_size, replace=False)
            s0 = take(pool, idx)
            s0 = jax.tree.map(lambda v, w: v.at[:, 0].set(w[:, 0]), s0, start)  # one fresh seed
        params, opt_state, loss, s = update(params, opt_state, s0)
        if pool is not None:
            pool = jax.tree.map(lambda v, w: v.at[:, idx].set(w), pool, s)
        losses.append(float(loss))
        if callback is not None:
            callback(i, losses[-1])
    return params, losses
