"""From a config to the objects meta-training works on: graphs, compiled programs, priors.

``Setup`` bundles the inner network's graph with MPLP kinds, its compiled program, the sharing
keys and where each parameter lives, so the inner loop, normalisation, evaluation and
checkpoints all agree on one layout.
"""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp

from agentgraph.builders import mlp, random_dag
from agentgraph.compiler import Program, compile
from agentgraph.graph import AgentGraph
from agentgraph.meta.config import TrainConfig
from agentgraph.protocols import mplp

__all__ = ["Setup", "build_graph", "make_setup", "predictions", "prior_pool", "with_params"]


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


def make_setup(cfg: TrainConfig, graph: AgentGraph | None = None) -> Setup:
    """Build and compile the inner network of ``cfg`` (or ``graph``, a library-kind network).

    Example:
        >>> from agentgraph.meta.config import parse_config
        >>> cfg = parse_config({"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}})
        >>> make_setup(cfg).n_synapses
        8
    """
    p = cfg.protocol
    config = mplp.MPLPConfig(k=p.k, hidden=p.hidden, stateful=p.stateful, mlp=tuple(p.mlp), premap=p.premap)
    base = graph if graph is not None else build_graph(cfg, seed=cfg.run.seed)
    g = base.with_kinds(mplp.kinds(config, p.sharing))
    prog = compile(g)
    plain = compile(base)
    n_out = cfg.net.sizes[-1]
    if cfg.net.loss == "cross_entropy":
        outputs, okind = tuple(("softmax", j) for j in range(n_out)), "p"
    else:
        outputs, okind = tuple(("loss", j) for j in range(n_out)), "pred"
    return Setup(cfg, g, prog, plain, config, mplp.share_keys(g, p.sharing),
                 len(base.agents("synapse")), len(base.agents("bias")), outputs, okind, tuple(base.groups()))


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
    """``state`` (of either program) with synapse weights ``w`` and biases ``b`` replaced."""
    out = dict(state)
    out["synapse"] = {**state["synapse"], "w": w.astype(state["synapse"]["w"].dtype)}
    out["bias"] = {**state["bias"], "b": b.astype(state["bias"]["b"].dtype)}
    return out


def predictions(setup: Setup, prog: Program, state: dict) -> jax.Array:
    """The network's predictions ``[B, n_out]`` after a forward sweep."""
    return prog.read(state, list(setup.outputs), setup.output_kind)

