"""Graphs users start from: per-scalar MLPs wired like MPLP, seeded random DAG networks,
convolutional networks with tied kernels, Elman recurrent networks unrolled in time, and grids.

Naming conventions (used by helpers and tests):

* inputs ``("x", i)`` (slot ``i`` of ``batch["x"]``), targets ``("y", j)`` (slot ``j`` of
  ``batch["y"]``), loss units ``("loss", j)``;
* ``mlp``: synapses ``("w", l, i, j)``, biases ``("b", l, j)``, activation units
  ``("a", l, j)`` for layer ``l`` (0-based, from ``sizes[l]`` to ``sizes[l+1]`` units);
* softmax units ``("softmax", j)`` and their normaliser ``("softmax_norm",)``;
* ``cnn``: see :func:`~agentgraph.builders.conv.cnn`; ``elman``: see
  :func:`~agentgraph.builders.recurrent.elman`;
* ``grid``: cells ``("cell", i, j)`` (row ``i``, column ``j``).

Wiring follows the MPLP reference implementation: forward ``a(l-1,i) -> w(l,i,j) -> b(l,j) ->
a(l,j)``; backward ``a(l,j) -> b(l,j) -> w(l,i,j) -> a(l-1,i)`` — the bias agent's outgoing
message feeds all its weights. No backward arrow runs into an input.
"""

from agentgraph.builders.conv import Conv, Dense, Pool, cnn, layer_spec
from agentgraph.builders.dense import (
    as_network, attach_head, check_choice, dense_layer, library_network, mlp, mlp_network, mlp_weights, random_dag,
    random_dag_network,
)
from agentgraph.builders.grid import NEIGHBOURS, grid
from agentgraph.builders.recurrent import elman

__all__ = ["NEIGHBOURS", "Conv", "Dense", "Pool", "as_network", "attach_head", "check_choice", "cnn", "dense_layer",
           "elman", "grid", "layer_spec", "library_network", "mlp", "mlp_network", "mlp_weights", "random_dag",
           "random_dag_network"]
