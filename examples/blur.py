"""BLUR (Sandler et al., ICML 2021) with the library protocol: a few inner steps of a random
genome and of the backprop genome on a small network, and the read-out they produce.

The protocol itself is :mod:`agentgraph.protocols.blur` (see docs/blur.md); meta-train a genome
with ``agentgraph train examples/configs/blur_digits.yaml``.

Run ``python examples/blur.py``.
"""

from __future__ import annotations

import jax
import numpy as np

from agentgraph.builders import mlp_network
from agentgraph.compiler import compile
from agentgraph.network import fresh_weights, read, with_weights
from agentgraph.protocols.blur import GROUP, backprop_genome, blur_network, init_genome

__all__ = ["main"]


def main(steps: int = 5, sizes=(4, 6, 3), batch_size: int = 8) -> dict[str, float]:
    """Train one network for ``steps`` steps with a random genome and with the backprop genome
    (σ = identity, so it is exactly SGD) on a fixed random regression task; returns the final
    squared error of each.

    Example:
        >>> errs = main(steps=3)
        >>> sorted(errs)
        ['backprop genome', 'random genome']
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, sizes[0]))
    y = x[:, :sizes[-1]] * 0.5
    out = {}
    for name, genome, sigma in (("random genome", init_genome(2, jax.random.PRNGKey(0)), "tanh"),
                                ("backprop genome", backprop_genome(0.1), "identity")):
        net = blur_network(mlp_network(sizes, activation="identity", loss="l2"), k=2, sigma=sigma, init_std=0.3)
        prog = compile(net.graph)
        state = prog.init(batch_size)
        w = fresh_weights(net.init, jax.random.PRNGKey(1), state)
        w["blur_synapse"]["w"] = w["blur_synapse"]["w"][:, :1].repeat(2, 1)  # both channels equal
        state = with_weights(state, w)
        for _ in range(steps):
            state, _ = prog.step({GROUP: genome}, state, {"x": x, "y": y})
        state, _ = prog.forward({GROUP: genome}, state, {"x": x, "y": y})
        out[name] = float(np.mean((np.asarray(read(prog, state, net.readout)) - y) ** 2))
    return out


if __name__ == "__main__":
    for k, v in main().items():
        print(f"{k}: mean squared error after 5 steps {v:.4f}")
