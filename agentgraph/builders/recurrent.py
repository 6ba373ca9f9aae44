"""An Elman recurrent network unrolled over ``T`` time steps, its weights tied across time.

``h_t = σ(x_t W_x + h_{t−1} W_h + b)`` with ``h_{−1} = 0``, and a dense read-out of the last
state into the head. Unrolled rather than run through delayed arrows: each time step has its own
agents — synapses ``("wx", t, i, j)`` (input ``i`` → unit ``j``) and ``("wh", t, k, j)`` (unit
``k`` of step ``t − 1`` → unit ``j``, from ``t = 1``), summing units ``("bh", t, j)`` and state
units ``("h", t, j)`` — so one inner step sees the whole sequence and backward messages run
back through time inside it (backpropagation through time as message passing). The uses of
one weight over time form one tie (``"wx/<i>/<j>"``, ``"wh/<k>/<j>"``, ``"bh/<j>"``; sum
reduction: the BPTT gradient). Inputs ``("x", t, i)`` read column ``t·n_in + i`` of
``batch["x"]``; the read-out is :func:`~agentgraph.builders.dense_layer` ``l = 1`` (synapses
``("w", 1, j, o)``, biases ``("b", 1, o)``). Groups: ``"synapse:0"``, ``"bias:0"``,
``"<activation>:0"`` for the recurrent part, ``"synapse:1"``, ``"bias:1"`` for the read-out.
"""

from __future__ import annotations

import numpy as np

from agentgraph.builders.dense import attach_head, check_choice, dense_layer
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.nodes.activations import ACTIVATIONS
from agentgraph.nodes.losses import LOSSES

__all__ = ["elman"]


def elman(n_in: int, n_hidden: int, n_out: int, steps: int, activation: str = "tanh", loss: str = "l2", *,
          init_std: float = 0.3, seed: int = 0) -> AgentGraph:
    """An Elman network over ``steps`` time steps as a per-scalar agent graph with weights tied
    across time (module docstring).

    Args:
        n_in, n_hidden, n_out: input, recurrent and output units.
        steps: ``T``, the sequence length (``batch["x"]`` is ``[B, T·n_in]``).
        activation: the recurrent units' activation (:data:`~agentgraph.nodes.ACTIVATIONS`).
        loss: ``"l2"`` or ``"cross_entropy"`` on the read-out of the last state.
        init_std: ``W_x``, ``W_h`` and read-out weights start ``~ N(0, init_std)``; biases 0.
        seed: RNG seed.

    Example:
        >>> g = elman(2, 3, 1, steps=4)
        >>> len(g.agents("synapse")), len(g.ties())  # 4·6 + 3·9 recurrent uses + 3 read-out; 6 + 9 + 3 ties
        (54, 18)
    """
    for v, what in ((n_in, "n_in"), (n_hidden, "n_hidden"), (n_out, "n_out"), (steps, "steps")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise AgentGraphError(f"elman: {what} must be a positive int, got {v!r}.")
    check_choice(activation, ACTIVATIONS, "activation")
    check_choice(loss, LOSSES, "loss")
    rng = np.random.default_rng(seed)
    Wx = rng.normal(0.0, init_std, (n_in, n_hidden))
    Wh = rng.normal(0.0, init_std, (n_hidden, n_hidden))
    g = AgentGraph()
    xs = g.add_agents([("x", t, i) for t in range(steps) for i in range(n_in)], "input", slots=range(steps * n_in))
    prev = None
    wx_all, wh_all, b_all = [], [], []
    for t in range(steps):
        bs = g.add_agents([("bh", t, j) for j in range(n_hidden)], "bias", groups="bias:0")
        wx = g.add_agents([("wx", t, i, j) for i in range(n_in) for j in range(n_hidden)], "synapse",
                          groups="synapse:0", states={"w": Wx.reshape(-1)})
        src = xs[t * n_in:(t + 1) * n_in]
        g.add_arrows(np.repeat(src, n_hidden), wx, "forward", port="x", by_index=True)
        g.add_arrows(wx, np.tile(bs, n_in), "forward", port="x", by_index=True)
        g.add_arrows(np.tile(bs, n_in), wx, "backward", port="m", by_index=True)
        if prev is not None:
            wh = g.add_agents([("wh", t, k, j) for k in range(n_hidden) for j in range(n_hidden)], "synapse",
                              groups="synapse:0", states={"w": Wh.reshape(-1)})
            g.add_arrows(np.repeat(prev, n_hidden), wh, "forward", port="x", by_index=True)
            g.add_arrows(wh, np.tile(bs, n_hidden), "forward", port="x", by_index=True)
            g.add_arrows(np.tile(bs, n_hidden), wh, "backward", port="m", by_index=True)
            g.add_arrows(wh, np.repeat(prev, n_hidden), "backward", port="m", by_index=True)
            wh_all.append(wh)
        hs = g.add_agents([("h", t, j) for j in range(n_hidden)], activation, groups=f"{activation}:0")
        g.add_arrows(bs, hs, "forward", port="x", by_index=True)
        g.add_arrows(hs, bs, "backward", port="m", by_index=True)
        wx_all.append(wx)
        b_all.append(bs)
        prev = hs
    for name, uses, n in (("wx", wx_all, n_in * n_hidden), ("wh", wh_all, n_hidden * n_hidden), ("bh", b_all, n_hidden)):
        if not uses:
            continue
        stacked = np.stack(uses)  # [uses over time, n]
        width = n_hidden
        for e in range(n):
            label = f"{name}/{e // width}/{e % width}" if name != "bh" else f"bh/{e}"
            g.tie(stacked[:, e], "w" if name != "bh" else "b", name=label, by_index=True)
    out = dense_layer(g, prev, n_out, 1, None, rng, init_std, True)
    attach_head(g, out, loss)
    return g.validate()
