"""Dense per-scalar networks: MLPs wired like MPLP, seeded random DAG networks, and the
:class:`~agentgraph.network.Network` wrappers of library graphs (see :mod:`agentgraph.builders`
for the naming conventions)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.nodes.activations import ACTIVATIONS
from agentgraph.nodes.losses import LOSSES
from agentgraph.network import FieldInit, Network, Readout

__all__ = ["attach_head", "check_choice", "dense_layer", "mlp", "mlp_network", "random_dag", "random_dag_network", "mlp_weights",
           "library_network", "as_network"]


def check_choice(value: str, options, what: str) -> None:
    """An :class:`AgentGraphError` unless ``value`` is one of ``options`` (a builder argument)."""
    if value not in options:
        raise AgentGraphError(f"Unknown {what} {value!r}; choose one of {sorted(options)}.")


def attach_head(g: AgentGraph, outputs: np.ndarray, loss: str) -> None:
    """Wire output units (agent indices ``int [n]``) to ``n`` targets and loss agents (through a
    softmax group for cross-entropy), as every library builder ends."""
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
    check_choice(activation, ACTIVATIONS, "activation")
    check_choice(loss, LOSSES, "loss")
    if output_activation is not None:
        check_choice(output_activation, ACTIVATIONS, "output_activation")
    rng = np.random.default_rng(seed)
    g = AgentGraph()
    prev = g.add_agents([("x", i) for i in range(sizes[0])], "input", slots=range(sizes[0]))
    L = len(sizes) - 1
    for l in range(L):
        act = activation if l < L - 1 else output_activation
        prev = dense_layer(g, prev, sizes[l + 1], l, act, rng, init_std, l > 0)
    attach_head(g, prev, loss)
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
    check_choice(activation, ACTIVATIONS, "activation")
    check_choice(loss, LOSSES, "loss")
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
    attach_head(g, b_idx[H:], loss)
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


def dense_layer(g: AgentGraph, prev: np.ndarray, n_out: int, l: int, act: str | None, rng: np.random.Generator,
           init_std: float, backward_in: bool) -> np.ndarray:
    """Add dense layer ``l`` from units ``prev`` (agent indices ``int [n_in]``) to ``n_out`` units,
    wired as :func:`mlp` wires each layer (``backward_in``: backward arrows into ``prev``); returns
    its activation units (its biases if ``act`` is ``None``).

    Example:
        >>> g = AgentGraph(); x = g.add_agents([("x", 0), ("x", 1)], "input", slots=[0, 1])
        >>> len(dense_layer(g, x, 3, 0, "relu", np.random.default_rng(0), 0.1, False))
        3
    """
    n_in = len(prev)
    ws = g.add_agents([("w", l, i, j) for i in range(n_in) for j in range(n_out)], "synapse", groups=f"synapse:{l}",
                      states={"w": rng.normal(0.0, init_std, size=n_in * n_out)})
    bs = g.add_agents([("b", l, j) for j in range(n_out)], "bias", groups=f"bias:{l}")
    src, dst = np.repeat(prev, n_out), np.tile(bs, n_in)
    g.add_arrows(src, ws, "forward", port="x", by_index=True)
    g.add_arrows(ws, dst, "forward", port="x", by_index=True)
    g.add_arrows(dst, ws, "backward", port="m", by_index=True)
    if backward_in:
        g.add_arrows(ws, src, "backward", port="m", by_index=True)
    if act is None:
        return bs
    units = g.add_agents([("a", l, j) for j in range(n_out)], act, groups=f"{act}:{l}")
    g.add_arrows(bs, units, "forward", port="x", by_index=True)
    g.add_arrows(units, bs, "backward", port="m", by_index=True)
    return units
