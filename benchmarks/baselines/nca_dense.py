"""A hand-written dense neural cellular automaton in JAX: the baseline of ``bench_nca.py``, written
from the equations of ``agentgraph/protocols/nca.py``'s docstring on a ``[B, H, W, C]`` state
array (zero-padded 3×3 neighbourhood by slicing, not from the kinds).

``tests/benchmarks/test_nca_dense.py`` checks it computes what the compiled agent graph does.

Example:
    >>> import jax, jax.numpy as jnp
    >>> p = {"w1": jnp.zeros((12, 8)), "b1": jnp.zeros(8), "w2": jnp.zeros((8, 4))}
    >>> nca_step(p, jnp.zeros((2, 5, 5, 4))).shape
    (2, 5, 5, 4)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_KX = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
_OFFSETS = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]


def nca_step(params, s):
    """One tick: ``s [B, H, W, C]`` → the new state (every cell updates; pre-update alive mask)."""
    H, W = s.shape[1:3]
    pad = jnp.pad(s, ((0, 0), (1, 1), (1, 1), (0, 0)))
    nb = {o: pad[:, 1 + o[0]:1 + o[0] + H, 1 + o[1]:1 + o[1] + W] for o in _OFFSETS}
    sx = sum(_KX[di + 1, dj + 1] * v for (di, dj), v in nb.items() if _KX[di + 1, dj + 1])
    sy = sum(_KX.T[di + 1, dj + 1] * v for (di, dj), v in nb.items() if _KX.T[di + 1, dj + 1])
    h = jax.nn.relu(jnp.concatenate([s, sx, sy], -1) @ params["w1"] + params["b1"])
    alpha = jnp.max(jnp.stack([s[..., 3]] + [v[..., 3] for v in nb.values()]), axis=0)
    return (s + h @ params["w2"]) * (alpha > 0.1)[..., None]


def nca_grow(params, s, ticks: int):
    """``ticks`` ticks (``lax.scan``, remat per tick); returns ``(s, rgba frames [ticks, B, H, W, 4])``."""
    def body(s, _):
        s = nca_step(params, s)
        return s, s[..., :4]

    return jax.lax.scan(jax.checkpoint(body), s, None, length=ticks)
