"""One compiled agent graph trained batch by batch under fixed rule parameters, scored on held-out
data — the loop the MNIST benchmarks (``cnn_mnist.py``, ``local_rules_pc.py``) share."""

from __future__ import annotations

import jax
import numpy as np

from agentgraph import compile
from agentgraph.network import Network, read


class GraphTrainer:
    """``net`` compiled, its state for batches of ``batch``: ``train(x [B, n_in], y [B, 10])`` one
    step (returns the loss), ``accuracy(x [N, n_in], labels [N])`` on held-out data in chunks.

    Example:
        >>> from agentgraph.builders import mlp_network
        >>> from agentgraph.protocols import gradient
        >>> net = mlp_network([4, 10], loss="cross_entropy")
        >>> t = GraphTrainer(net, gradient.params(net.graph, 0.1), batch=2)
        >>> float(t.train(np.ones((2, 4), np.float32), np.eye(10, dtype=np.float32)[[0, 1]])) > 0
        True
    """

    def __init__(self, net: Network, params, batch: int) -> None:
        self.net = net
        self.prog = compile(net.graph)
        self.state = self.prog.init(batch)
        self._step = jax.jit(lambda prog, s, b: prog.step(params, s, b))
        self._fwd = jax.jit(lambda prog, s, b: prog.forward(params, s, b)[0])

    def train(self, x, y):
        self.state, loss = self._step(self.prog, self.state, {"x": x, "y": y})
        return loss

    def accuracy(self, x, y, chunk: int = 1000) -> float:
        s = self.prog.resize(self.state, chunk)
        hits = 0
        for i in range(0, len(x), chunk):
            out = self._fwd(self.prog, s, {"x": x[i:i + chunk], "y": np.zeros((chunk, 10), np.float32)})
            hits += int((np.argmax(np.asarray(read(self.prog, out, self.net.readout)), 1) == y[i:i + chunk]).sum())
        return hits / len(x)
