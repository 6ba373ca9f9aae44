"""The autodiff oracle: a graph's forward sweep as one differentiable JAX function, and one SGD
step by ``jax.grad`` of it — what the gradient protocol (backprop as message passing) and every
kind's hand-written backward are tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agentgraph.arrows.ports import aggregate
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.interpreter import _check_batch, _in_arrows, generations_of

__all__ = ["loss_function", "sgd_reference"]


def loss_function(graph: AgentGraph) -> Callable[[Mapping, Mapping, Mapping], jax.Array]:
    """The graph's forward sweep as one differentiable JAX function — the autodiff oracle.

    Returns ``f(agent_params, example_state, batch) -> scalar``: ``agent_params`` is
    ``{agent: {per-agent field: value}}``, ``example_state`` is ``{agent: {per-example field:
    [B, ...]}}`` (as from :func:`~agentgraph.interpreter.init_state`), and the result is the batch
    mean of the summed loss agents' losses. It calls the kinds' forward functions directly, so
    ``jax.grad`` of it checks any kind's hand-written backward. Every forward function receives
    ``params=None`` (a kind whose forward reads its group's params, like BLUR's, is not covered),
    and a graph with delayed forward arrows is refused.

    Example:
        >>> import numpy as np, jax
        >>> from agentgraph.builders import mlp
        >>> from agentgraph.interpreter import init_state
        >>> g = mlp([2, 1], loss="l2", seed=0)
        >>> s = init_state(g, 2)
        >>> f = loss_function(g)
        >>> pa = {a: {k: v for k, v in d.items() if not g.kind_of(a).fields[k].per_example} for a, d in s.items()}
        >>> ex = {a: {k: v for k, v in d.items() if g.kind_of(a).fields[k].per_example} for a, d in s.items()}
        >>> float(f(pa, ex, {"x": np.ones((2, 2)), "y": np.zeros((2, 1))})) >= 0
        True
    """
    graph.validate()
    if graph.arrays().type_mask("forward", delayed=True).any():
        raise AgentGraphError("forward_loss: the graph has delayed forward arrows; the oracle differentiates one "
                              "forward sweep without messages in flight.")
    gens = generations_of(graph, "forward")
    inbound = _in_arrows(graph, "forward")
    nodes = graph.nx.nodes

    def f(agent_params: Mapping, example_state: Mapping, batch: Mapping) -> jax.Array:
        B = next(iter(np.shape(v)[0] for v in batch.values()))
        data = _check_batch(graph, batch, B)
        sent: dict[Hashable, dict[str, Any]] = {}
        total = jnp.zeros(B)
        for gen in gens:
            for agent in gen:
                kind = graph.kind_of(agent)
                if not kind.runs("forward"):
                    continue
                arrows = inbound.get(agent, [])
                inbox = {}
                for port, spec in kind.forward_ports.items():
                    msgs = [sent[s][o] for s, o, pp, _ in arrows if pp == port]
                    inbox[port] = (
                        aggregate(jnp.stack(msgs), spec.aggregation, spec.size)
                        if msgs else jnp.zeros((B, spec.size))
                    )
                if kind.external is not None:
                    inbox["data"] = jnp.asarray(data[kind.external][:, int(nodes[agent]["slot"])])
                pa = dict(agent_params.get(agent, {}))
                ex = dict(example_state.get(agent, {}))
                p = None

                def one(ex_b, in_b, pa=pa, kind=kind, p=p):
                    return kind.forward(p, {**pa, **ex_b}, in_b)

                new, raw = jax.vmap(one)(ex, inbox)
                sent[agent] = raw if isinstance(raw, Mapping) else {"out": raw}
                if kind.loss_field is not None:
                    total = total + jnp.reshape(new[kind.loss_field], (B, -1)).sum(axis=1)
        return jnp.mean(total)

    return f


def sgd_reference(
    graph: AgentGraph, state: Mapping[Hashable, Mapping[str, Any]], lr: float, batch: Mapping[str, Any]
) -> dict[Hashable, dict[str, np.ndarray]]:
    """One SGD step by ``jax.grad`` of :func:`loss_function`: the per-agent fields after it.

    Returns ``{agent: {per-agent field: value - lr * grad}}`` in float64.

    Example:
        >>> import numpy as np
        >>> from agentgraph.builders import mlp
        >>> from agentgraph.interpreter import init_state
        >>> g = mlp([2, 1], loss="l2", seed=0)
        >>> new = sgd_reference(g, init_state(g, 2), 0.1, {"x": np.ones((2, 2)), "y": np.zeros((2, 1))})
        >>> sorted(new[("b", 0, 0)])
        ['b']
    """
    with jax.enable_x64(True):
        pa, ex = {}, {}
        for a, fields in state.items():
            kind = graph.kind_of(a)
            pa[a] = {k: jnp.asarray(v, jnp.float64) for k, v in fields.items() if not kind.fields[k].per_example}
            ex[a] = {k: jnp.asarray(v, jnp.float64) for k, v in fields.items() if kind.fields[k].per_example}
        grads = jax.grad(loss_function(graph))(pa, ex, batch)
        return {
            a: {k: np.asarray(v - lr * grads[a][k]) for k, v in fields.items()}
            for a, fields in pa.items()
        }
