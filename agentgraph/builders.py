"""Graphs users start from: per-scalar MLPs wired like MPLP, and seeded random DAG networks.

Naming conventions (used by helpers and tests):

* inputs ``("x", i)`` (slot ``i`` of ``batch["x"]``), targets ``("y", j)`` (slot ``j`` of
  ``batch["y"]``), loss units ``("loss", j)``;
* ``mlp``: synapses ``("w", l, i, j)``, biases ``("b", l, j)``, activation units
  ``("a", l, j)`` for layer ``l`` (0-based, from ``sizes[l]`` to ``sizes[l+1]`` units);
* softmax units ``("softmax", j)`` and their normaliser ``("softmax_norm",)``;
* ``grid``: cells ``("cell", i, j)`` (row ``i``, column ``j``).

Wiring follows the MPLP reference implementation: forward ``a(l-1,i) -> w(l,i,j) -> b(l,j) ->
a(l,j)``; backward ``a(l,j) -> b(l,j) -> w(l,i,j) -> a(l-1,i)`` — the bias agent's outgoing
message feeds all its weights.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.nodes.base import Kind
from agentgraph.nodes.activations import ACTIVATIONS
from agentgraph.nodes.losses import LOSSES
from agentgraph.network import FieldInit, Network, Readout

__all__ = ["NEIGHBOURS", "grid", "mlp", "mlp_network", "random_dag", "random_dag_network", "mlp_weights",
           "library_network", "as_network"]


def _check_choice(value: str, options, what: str) -> None:
    if value not in options:
        raise AgentGraphError(f"Unknown {what} {value!r}; choose one of {sorted(options)}.")


def _attach_head(g: AgentGraph, outputs: np.ndarray, loss: str) -> None:
    """Wire output units (agent indices) to loss agents (through a softmax group for CE)."""
    n = len(outputs)
    targets = g.add_agents([("y", j) for j in range(n)], "target", slots=range(n))
    losses = g.add_agents([("loss", j) for j in range(n)], loss)
    g.add_arrows(targets, losses, "forward", port="target", by_index=True)
    if loss == "cross_entropy":
        norm = np.repeat(g.add_agents([("softmax_norm",)], "softmax_norm"), n)
        units = g.add_agents([("softmax", j) for j in range(n)], "softmax")
        # every logit reaches the normaliser twice: parallel arrows into the max and lse ports
        g.add_arrows(outputs, norm, "forward", port="max", by_index=True)
        g.add_arrows(outputs, norm, "forward", port="lse", by_index=True)
        g.add_arrows(norm, units, "forward", port="norm", by_index=True)
        g.add_arrows(outputs, units, "forward", port="x", by_index=True)
        g.add_arrows(units, losses, "forward", port="pred", by_index=True)
        g.add_arrows(losses, units, "backward", port="m", by_index=True)
        g.add_arrows(losses, norm, "backward", port="gp", src_port="gp", by_index=True)
        g.add_arrows(norm, units, "backward", port="dot", by_index=True)
        g.add_arrows(units, outputs, "backward", port="m", by_index=True)
    else:
        g.add_arrows(outputs, losses, "forward", port="pred", by_index=True)
        g.add_arrows(losses, outputs, "backward", port="m", by_index=True)


def mlp(
    sizes: Sequence[int],
    activation: str = "sigmoid",
    loss: str = "cross_entropy",
    *,
    output_activation: str | None = None,
    init_std: float = 0.05,
    seed: int = 0,
) -> AgentGraph:
    """The per-scalar MPLP graph of a dense network: one agent per weight, bias, unit, softmax
    unit and loss unit.

    Args:
        sizes: ``(n_0, ..., n_L)`` units per layer; ``n_0`` inputs, ``n_L`` outputs.
        activation: hidden-layer activation (a name in :data:`~agentgraph.nodes.ACTIVATIONS`).
        loss: ``"cross_entropy"`` (softmax → elementwise ``-t log p``) or ``"l2"``.
        output_activation: activation on the output layer; ``None`` feeds the biases straight
            into the head.
        init_std: weights start ``~ N(0, init_std)``; biases start at 0.
        seed: RNG seed for the weights.

    Returns:
        An :class:`AgentGraph` with ``sum(n_l * n_{l+1})`` synapse agents. Groups are per layer:
        ``"synapse:l"``, ``"bias:l"``, ``"<activation>:l"``.

    Example:
        >>> g = mlp([4, 3, 2], activation="relu", loss="cross_entropy")
        >>> len(g.agents("synapse")), len(g.agents("bias")), len(g.agents("softmax"))
        (18, 5, 2)
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise AgentGraphError(f"mlp sizes need at least two positive layer sizes, got {sizes}.")
    _check_choice(activation, ACTIVATIONS, "activation")
    _check_choice(loss, LOSSES, "loss")
    if output_activation is not None:
        _check_choice(output_activation, ACTIVATIONS, "output_activation")
    rng = np.random.default_rng(seed)
    g = AgentGraph()
    prev = g.add_agents([("x", i) for i in range(sizes[0])], "input", slots=range(sizes[0]))
    L = len(sizes) - 1
    for l in range(L):
        n_in, n_out = sizes[l], sizes[l + 1]
        ws = g.add_agents(
            [("w", l, i, j) for i in range(n_in) for j in range(n_out)], "synapse",
            groups=f"synapse:{l}", states={"w": rng.normal(0.0, init_std, size=n_in * n_out)},
        )
        bs = g.add_agents([("b", l, j) for j in range(n_out)], "bias", groups=f"bias:{l}")
        src = np.repeat(prev, n_out)  # synapse (i, j) is row i * n_out + j
        dst = np.tile(bs, n_in)
        g.add_arrows(src, ws, "forward", port="x", by_index=True)
        g.add_arrows(ws, dst, "forward", port="x", by_index=True)
        g.add_arrows(dst, ws, "backward", port="m", by_index=True)
        if l > 0:
            g.add_arrows(ws, src, "backward", port="m", by_index=True)
        act = activation if l < L - 1 else output_activation
        if act is None:
            prev = bs
            continue
        units = g.add_agents([("a", l, j) for j in range(n_out)], act, groups=f"{act}:{l}")
        g.add_arrows(bs, units, "forward", port="x", by_index=True)
        g.add_arrows(units, bs, "backward", port="m", by_index=True)
        prev = units
    _attach_head(g, prev, loss)
    return g.validate()


def random_dag(
    n_inputs: int,
    n_hidden: int,
    n_outputs: int,
    *,
    edge_prob: float = 0.3,
    parallel_prob: float = 0.1,
    activation: str = "tanh",
    loss: str = "l2",
    init_std: float = 0.5,
    seed: int = 0,
) -> AgentGraph:
    """A seeded random non-layered network of per-scalar agents.

    Units are ordered ``inputs, hidden 0..H-1, outputs``; each hidden or output unit ``v`` draws
    each earlier unit (inputs and earlier hidden units) as a source with probability
    ``edge_prob`` — so there are skip connections across any distance, sparse connectivity and
    several paths between two units. Every unit gets at least one source and every hidden unit
    at least one consumer. With probability ``parallel_prob`` a connection gets a second,
    parallel synapse, and (independently) a synapse's arrows into and back from its bias are
    doubled — parallel arrows that count twice, in both sweeps.

    Agents: inputs ``("x", i)``; synapses ``("w", k)``; unit biases ``("b", v)``; hidden
    activations ``("a", v)``; output biases feed the head (as in :func:`mlp`).

    Example:
        >>> g = random_dag(3, 6, 2, edge_prob=0.4, seed=1)
        >>> g.number_of_agents() > 20
        True
    """
    for name, v in (("n_inputs", n_inputs), ("n_hidden", n_hidden), ("n_outputs", n_outputs)):
        if int(v) < (0 if name == "n_hidden" else 1):
            raise AgentGraphError(f"random_dag: {name} must be positive, got {v}.")
    if not (0.0 <= edge_prob <= 1.0 and 0.0 <= parallel_prob <= 1.0):
        raise AgentGraphError("random_dag: edge_prob and parallel_prob must lie in [0, 1].")
    _check_choice(activation, ACTIVATIONS, "activation")
    _check_choice(loss, LOSSES, "loss")
    rng = np.random.default_rng(seed)
    H, O = int(n_hidden), int(n_outputs)
    inputs = [("x", i) for i in range(n_inputs)]
    hidden_out = [("a", v) for v in range(H)]  # the sending end of hidden unit v
    # adjacency: for each receiving unit v (0..H+O-1) the list of source indices into `sources`
    incoming: list[list[int]] = []
    for v in range(H + O):
        n_cand = n_inputs + min(v, H)
        chosen = list(np.flatnonzero(rng.random(n_cand) < edge_prob))
        if not chosen:
            chosen = [int(rng.integers(n_cand))]
        incoming.append(chosen)
    for h in range(H):  # every hidden unit feeds something later
        idx = n_inputs + h
        if not any(idx in incoming[v] for v in range(h + 1, H + O)):
            v = int(rng.integers(h + 1, H + O))
            incoming[v].append(idx)

    g = AgentGraph()
    in_idx = g.add_agents(inputs, "input", slots=range(n_inputs))
    b_idx = g.add_agents([("b", v) for v in range(H + O)], "bias")
    a_idx = g.add_agents(hidden_out, activation)
    g.add_arrows(b_idx[:H], a_idx, "forward", port="x", by_index=True)
    g.add_arrows(a_idx, b_idx[:H], "backward", port="m", by_index=True)
    src_idx = np.concatenate([in_idx, a_idx])  # candidate sources, in topological order
    syn_src, syn_dst, doubled = [], [], []
    for v, chosen in enumerate(incoming):
        for u in chosen:
            copies = 2 if rng.random() < parallel_prob else 1
            for _ in range(copies):
                syn_src.append(u)
                syn_dst.append(v)
                doubled.append(rng.random() < parallel_prob)
    syn_src, syn_dst = np.asarray(syn_src, np.int64), np.asarray(syn_dst, np.int64)
    n_syn = len(syn_src)
    ws = g.add_agents([("w", k) for k in range(n_syn)], "synapse",
                      states={"w": rng.normal(0.0, init_std, size=n_syn)})
    g.add_arrows(src_idx[syn_src], ws, "forward", port="x", by_index=True)
    reps = np.where(doubled, 2, 1)
    w_rep, b_rep = np.repeat(ws, reps), np.repeat(b_idx[syn_dst], reps)
    g.add_arrows(w_rep, b_rep, "forward", port="x", by_index=True)
    g.add_arrows(b_rep, w_rep, "backward", port="m", by_index=True)
    from_hidden = syn_src >= n_inputs
    g.add_arrows(ws[from_hidden], src_idx[syn_src[from_hidden]], "backward", port="m", by_index=True)
    _attach_head(g, b_idx[H:], loss)
    return g.validate()


def mlp_weights(
    state: Mapping[Hashable, Mapping[str, np.ndarray]], sizes: Sequence[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read the dense ``(W_l [n_l, n_{l+1}], b_l [n_{l+1}])`` of an :func:`mlp` graph's state.

    Example:
        >>> from agentgraph.interpreter import init_state
        >>> [W.shape for W, b in mlp_weights(init_state(mlp([3, 2, 1], loss="l2"), 1), [3, 2, 1])]
        [(3, 2), (2, 1)]
    """
    out = []
    for l in range(len(sizes) - 1):
        W = np.array([[state[("w", l, i, j)]["w"] for j in range(sizes[l + 1])] for i in range(sizes[l])])
        b = np.array([state[("b", l, j)]["b"] for j in range(sizes[l + 1])])
        out.append((W, b))
    return out


def library_network(graph: AgentGraph, init_std: float, loss: str | None = None) -> Network:
    """A :class:`~agentgraph.network.Network` for a graph of library kinds built like
    :func:`mlp` / :func:`random_dag`: fresh weights ``~ N(0, init_std)``, biases 0; predictions
    are the softmax units' ``p`` (cross-entropy head) or the loss units' ``pred`` (L2 head).

    Example:
        >>> library_network(mlp([2, 2], loss="l2"), 0.1).readout.field
        'pred'
    """
    if loss is None:
        loss = "cross_entropy" if graph.agents("softmax") else "l2"
    n_out = len(graph.agents(loss))
    if loss == "cross_entropy":
        readout = Readout(tuple(("softmax", j) for j in range(n_out)), "p", kind="probs")
    else:
        readout = Readout(tuple(("loss", j) for j in range(n_out)), "pred", kind="values")
    return Network(graph, (FieldInit("synapse", "w", std=float(init_std)), FieldInit("bias", "b")), readout)


def mlp_network(sizes: Sequence[int], activation: str = "sigmoid", loss: str = "cross_entropy", *,
                output_activation: str | None = None, init_std: float = 0.05, seed: int = 0) -> Network:
    """:func:`mlp` as a :class:`~agentgraph.network.Network` (what meta-training runs on).

    Example:
        >>> net = mlp_network([4, 3, 2])
        >>> len(net.graph.agents("synapse")), net.readout.kind
        (18, 'probs')
    """
    g = mlp(sizes, activation, loss, output_activation=output_activation, init_std=init_std, seed=seed)
    return library_network(g, init_std, loss)


def random_dag_network(n_inputs: int, n_hidden: int, n_outputs: int, *, edge_prob: float = 0.3,
                       parallel_prob: float = 0.1, activation: str = "tanh", loss: str = "l2",
                       init_std: float = 0.5, seed: int = 0) -> Network:
    """:func:`random_dag` as a :class:`~agentgraph.network.Network`.

    Example:
        >>> random_dag_network(3, 4, 2, seed=1).readout.field
        'pred'
    """
    g = random_dag(n_inputs, n_hidden, n_outputs, edge_prob=edge_prob, parallel_prob=parallel_prob,
                   activation=activation, loss=loss, init_std=init_std, seed=seed)
    return library_network(g, init_std, loss)


def as_network(obj: AgentGraph | Network, init_std: float = 0.05, what: str = "the builder") -> Network:
    """A builder's result as a :class:`~agentgraph.network.Network`: a ``Network`` as it
    is; a graph of library weights and biases as :func:`library_network` (fresh weights ``~ N(0,
    init_std)``); any other graph with no fresh weights (every task starts from its declared
    state) and no read-out.

    Example:
        >>> as_network(mlp([2, 1], loss="l2")).init[0].field
        'w'
    """
    if isinstance(obj, Network):
        return obj
    if not isinstance(obj, AgentGraph):
        raise AgentGraphError(f"{what} returned {type(obj).__name__}; it must return an AgentGraph or a Network.")
    if obj.agents("synapse") and (obj.agents("softmax") or obj.agents("l2") or obj.agents("cross_entropy")):
        return library_network(obj, init_std)
    return Network(obj)


#: The Moore neighbourhood: port name -> the neighbour's ``(row, column)`` offset from the cell.
NEIGHBOURS: dict[str, tuple[int, int]] = {
    "nw": (-1, -1), "n": (-1, 0), "ne": (-1, 1), "w": (0, -1), "e": (0, 1), "sw": (1, -1), "s": (1, 0), "se": (1, 1),
}


def grid(height: int, width: int, kind: Kind, *, arrow_type: str = "tick", repeat: int = 1,
         group: str | None = None, states: Mapping[str, np.ndarray] | None = None) -> AgentGraph:
    """A ``height × width`` grid of cells of ``kind``, each joined to its (up to 8) Moore neighbours
    by **delayed** arrows of ``arrow_type`` into the port named by the neighbour's direction
    (:data:`NEIGHBOURS`; cells on the border receive nothing on the missing sides, i.e. zeros), run
    by the schedule ``Phase(arrow_type, repeat=repeat)`` — a neural cellular automaton's wiring:
    every tick, each cell reads what its neighbours sent at the previous tick.

    Args:
        height, width: grid size.
        kind: the cell kind; it acts on ``arrow_type`` with the eight direction ports and an
            output ``"out"`` of the same size (see :class:`agentgraph.models.nca.NCACell`).
        arrow_type: the phase's (user-named) arrow type.
        repeat: ticks per step.
        group: the cells' parameter-sharing group (default: the kind's name).
        states: initial values ``{field: [height * width, *shape]}`` in row-major cell order.

    Example:
        >>> from agentgraph.models.nca import NCACell
        >>> g = grid(3, 4, NCACell(channels=4, hidden=8))
        >>> g.number_of_agents(), g.number_of_arrows("tick")  # 3*4 cells; 2*(3*3+2*4+2*2*3) arrows
        (12, 58)
    """
    for v, what in ((height, "height"), (width, "width")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise AgentGraphError(f"grid: {what} must be a positive int, got {v!r}.")
    g = AgentGraph(kinds=[kind], schedule=Schedule((Phase(arrow_type, repeat=repeat, loss=True),)))
    names = [("cell", i, j) for i in range(height) for j in range(width)]
    g.add_agents(names, kind.name, groups=group, states=states)
    ii, jj = np.divmod(np.arange(height * width), width)
    for port, (di, dj) in NEIGHBOURS.items():
        si, sj = ii + di, jj + dj
        ok = (si >= 0) & (si < height) & (sj >= 0) & (sj < width)
        g.add_arrows((si * width + sj)[ok], np.flatnonzero(ok), arrow_type, port=port, by_index=True, delay=True)
    return g.validate()
