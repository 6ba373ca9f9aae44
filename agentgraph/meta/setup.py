"""From a config to the objects meta-training works on: graphs, compiled programs, priors.

``Setup`` bundles the inner network's graph with MPLP kinds, its compiled program, the sharing
keys and where each parameter lives, so the inner loop, normalisation, evaluation and
checkpoints all agree on one layout.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.builders import mlp, random_dag
from agentgraph.compiler import Program, compile
from agentgraph.graph import AgentGraph
from agentgraph.meta.config import TrainConfig
from agentgraph.protocols import mplp

__all__ = ["Setup", "build_graph", "group_rows", "make_setup", "predictions", "prior_pool", "with_params"]


def build_graph(cfg: TrainConfig, seed: int = 0) -> AgentGraph:
    """The inner network (library kinds) a config describes.

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
        >>> len(build_graph(cfg).agents("synapse"))
        8
    """
    n = cfg.net
    if n.kind == "mlp":
        return mlp(n.sizes, activation=n.activation, loss=n.loss, init_std=n.init_std, seed=seed)
    return random_dag(n.sizes[0], n.n_hidden, n.sizes[-1], edge_prob=n.edge_prob, parallel_prob=n.parallel_prob,
                      activation=n.activation, loss=n.loss, init_std=n.init_std, seed=seed)


@dataclasses.dataclass(frozen=True)
class Setup:
    """Everything the meta-training code needs about the inner network.

    Attributes:
        cfg: the config.
        graph: the network with MPLP kinds.
        prog: its compiled program (MPLP protocol).
        plain: the same network with the library (gradient) kinds, compiled — for SGD/Adam
            baselines and for evaluating networks.
        config: the MPLP learner shape.
        keys: ``{group: (learner key, normalisation key, kind)}``.
        n_synapses, n_biases: how many weights and biases.
        outputs: the agents whose ``p`` (softmax) or ``x`` (identity head) are the predictions.
        plain_groups: the groups of the plain network (the gradient protocol's parameter keys).
    """

    cfg: TrainConfig
    graph: AgentGraph
    prog: Program
    plain: Program
    config: mplp.MPLPConfig
    keys: dict
    n_synapses: int
    n_biases: int
    outputs: tuple
    output_kind: str
    plain_groups: tuple = ()

    @functools.cached_property
    def teacher(self) -> Program:
        """The gradient protocol on the same network with recording kinds
        (:mod:`agentgraph.protocols.recording`): its per-example messages and updates, for
        imitation and for the gradient input. Compiled on first use."""
        from agentgraph.nodes.registry import default_kinds
        from agentgraph.protocols.recording import recording_kinds

        with jax.ensure_compile_time_eval():  # concrete arrays even if first used under a jit trace
            return compile(self.graph.with_kinds(recording_kinds(default_kinds())))


def make_setup(cfg: TrainConfig, graph: AgentGraph | None = None) -> Setup:
    """Build and compile the inner network of ``cfg`` (or ``graph``, a library-kind network).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
        >>> make_setup(cfg).n_synapses
        8
    """
    p = cfg.protocol
    config = mplp.MPLPConfig(k=p.k, hidden=p.hidden, stateful=p.stateful, mlp=tuple(p.mlp), premap=p.premap,
                             grad_input=p.grad_input != "none")
    base = graph if graph is not None else build_graph(cfg, seed=cfg.run.seed)
    g = base.with_kinds(mplp.kinds(config, p.sharing))
    prog = compile(g)
    plain = compile(base)
    n_out = cfg.net.sizes[-1]
    if cfg.net.loss == "cross_entropy":
        outputs, okind = tuple(("softmax", j) for j in range(n_out)), "p"
    else:
        outputs, okind = tuple(("loss", j) for j in range(n_out)), "pred"
    setup = Setup(cfg, g, prog, plain, config, mplp.share_keys(g, p.sharing),
                  len(base.agents("synapse")), len(base.agents("bias")), outputs, okind, tuple(base.groups()))
    return setup


def prior_pool(setup: Setup, key: jax.Array, size: int) -> dict[str, jax.Array]:
    """``size`` random initial networks: ``{"w": [P, n_synapses] ~ N(0, init_std), "b": [P,
    n_biases] = 0}`` in the programs' row order.

    Example:
        >>> import jax
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
        >>> prior_pool(make_setup(cfg), jax.random.PRNGKey(0), 3)["w"].shape
        (3, 8)
    """
    std = setup.cfg.net.init_std
    return {"w": std * jax.random.normal(key, (size, setup.n_synapses)), "b": jnp.zeros((size, setup.n_biases))}


def with_params(state: dict, w: jax.Array, b: jax.Array) -> dict:
    """``state`` (of either program) with synapse weights ``w [n_synapses]`` and biases ``b
    [n_biases]`` replaced (in the programs' row order).

    Example:
        >>> import jax.numpy as jnp
        >>> from agentgraph.meta.config import parse_config
        >>> s = make_setup(parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}}))
        >>> with_params(s.plain.init(2), jnp.ones(8), jnp.zeros(5))["synapse"]["w"].tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    out = dict(state)
    out["synapse"] = {**state["synapse"], "w": w.astype(state["synapse"]["w"].dtype)}
    out["bias"] = {**state["bias"], "b": b.astype(state["bias"]["b"].dtype)}
    return out


def predictions(setup: Setup, prog: Program, state: dict) -> jax.Array:
    """The network's predictions ``[B, n_out]`` after a forward sweep."""
    return prog.read(state, list(setup.outputs), setup.output_kind)



def group_rows(graph: AgentGraph, prog: Program, keys: dict) -> dict[str, tuple[str, np.ndarray]]:
    """``{group: (kind, rows)}``: where each learning group's agents live in ``prog``'s state
    (``state[kind][field][rows]``), for the groups of ``keys`` (:func:`~agentgraph.protocols.mplp.share_keys`).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
        >>> s = make_setup(cfg)
        >>> kind, rows = group_rows(s.graph, s.prog, s.keys)["synapse:0"]
        >>> kind, len(rows)
        ('synapse', 4)
    """
    A = graph.arrays()
    out = {}
    for group, (_, _, kname) in keys.items():
        agents = np.flatnonzero((A.group == A.group_names.index(group)) & (A.kind == A.kind_names.index(kname)))
        out[group] = (kname, prog.rows.row[agents])
    return out
