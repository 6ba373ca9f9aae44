"""Buckets: one padded structure several graphs fit into, so they share one executable.

:func:`make_bucket` takes several graphs and builds one *padded* structure into which each of
them fits: the union of their blocks, every block and every port's arrow count rounded up to a
power of two, segment lowerings everywhere. ``make_plan(graph, bucket=b)`` (or
``compile(graph, bucket=b)``) lowers a graph into it: padding agents ("phantoms") receive no
arrows and send to nobody; padding arrows point past the last destination and are dropped by the
segment reductions; phantom loss agents are masked out of the loss. Graphs of one bucket have
equal plans, so they share one executable. Like a JAX MD neighbour list, a bucket has a static
capacity: a graph that overflows it is refused, naming the block or port.

:func:`compile_pool` does it all for a list of graphs: their programs have one treedef (one jit
trace serves them all) and equal state shapes, and they stack into one pytree to ``vmap`` over —
the way meta-training cycles through a pool of random networks. An agent's row differs from
graph to graph, so the pool also records the agents every graph shares, and each program carries
their rows as a leaf (``arrays["pool/rows"]``): a read inside the shared trace gathers each
graph's own rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from agentgraph.compiler.analysis import analyse, block_edges, self_sets
from agentgraph.compiler.plan import make_plan
from agentgraph.compiler.program import Program, default_dtype
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph

__all__ = ["Bucket", "compile_pool", "make_bucket"]


def _pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class Bucket:
    """A padded structure several graphs fit into (see the module docstring). Build with
    :func:`make_bucket`; pass to ``compile(graph, bucket=...)``.

    Attributes:
        blocks: ``((sweep type, ((wave, kind, group, capacity), ...)), ...)``.
        ports: ``{(sweep, wave, kind, group, port): arrow capacity}``.
        rest: ``{kind: capacity}`` for agents of kinds that run in no sweep.
        selfs: ``((self-loop type, kind, group, repeats, capacity), ...)``.
        kinds: the kind names.
        schedule: the schedule every graph of the bucket runs.
    """

    blocks: Any
    ports: Any
    rest: Any
    selfs: Any
    kinds: tuple[str, ...]
    schedule: Any = None


def make_bucket(graphs: Sequence[AgentGraph], round_up=_pow2) -> Bucket:
    """The smallest padded structure every graph of ``graphs`` fits into.

    Args:
        graphs: one or more agent graphs (their kinds must agree by name).
        round_up: capacity rounding (default: next power of two).

    Example:
        >>> from agentgraph import random_dag
        >>> b = make_bucket([random_dag(2, 4, 1, seed=s) for s in range(3)])
        >>> sorted({k for _, k, _, _ in dict(b.blocks)["forward"]})[:3]
        ['bias', 'input', 'l2']
    """
    if not graphs:
        raise AgentGraphError("make_bucket needs at least one graph.")
    schedule = graphs[0].schedule
    for i, g in enumerate(graphs):
        if g.schedule != schedule:
            raise AgentGraphError(f"make_bucket: graph {i} runs {g.schedule}, graph 0 {schedule}; the graphs of "
                                  "a bucket share one schedule.")
    blocks: dict = {t: {} for t in schedule.sweep_types()}
    ports: dict = {}
    rest: dict = {}
    reflex: dict = {}
    kinds: set = set()
    for g in graphs:
        an = analyse(g)
        A = an.A
        kinds |= set(A.kind_names)
        for t in schedule.sweep_types():
            for key, agents in an.blocks[t].items():
                blocks[t][key] = max(blocks[t].get(key, 0), len(agents))
            for (key, p), (src, *_) in block_edges(an, t).items():
                pk = (t, *key, p)
                ports[pk] = max(ports.get(pk, 0), len(src))
        for k in A.kind_names:
            if an.layout_sweep[k] == "rest":
                rest[k] = max(rest.get(k, 0), int(np.count_nonzero(A.kind == A.kind_names.index(k))))
        for t in schedule.self_types():
            for (k, grp, r), agents in self_sets(A, t).items():
                reflex[(t, k, grp, r)] = max(reflex.get((t, k, grp, r), 0), len(agents))
    return Bucket(
        blocks=tuple((t, tuple(sorted((*key, round_up(n)) for key, n in v.items()))) for t, v in blocks.items()),
        ports=tuple(sorted((k, round_up(n)) for k, n in ports.items())),
        rest=tuple(sorted((k, round_up(n)) for k, n in rest.items())),
        selfs=tuple(sorted((*k, round_up(n)) for k, n in reflex.items())),
        kinds=tuple(sorted(kinds)),
        schedule=schedule,
    )


class _Pool:
    """The agents every graph of a :func:`compile_pool` pool has (same name, same kind):
    ``slot[agent] = (kind, i)``, and each pool program's leaf ``arrays["pool/rows"][i]`` is that
    agent's row in its own graph — so :meth:`Program.read` reads the right rows even where one
    trace serves the whole pool. One per pool, compared by identity."""

    __slots__ = ("slot",)

    def __init__(self, slot: dict) -> None:
        self.slot = slot


def compile_pool(graphs: Sequence[AgentGraph], *, bucket: Bucket | None = None, dtype=None) -> list[Program]:
    """Compile several graphs into one shared bucket: every program has the same treedef and
    state shapes, so one jitted function serves them all (traced once), and the programs stack
    into one pytree to ``vmap`` over. :meth:`Program.read` of a pool program reads the agents
    all the graphs share (the same name and kind), at each graph's own rows.

    Args:
        graphs: the graphs (their kinds must agree by name).
        bucket: the padded structure to use (default ``make_bucket(graphs)``).
        dtype: as in :func:`compile`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from agentgraph import random_dag
        >>> progs = compile_pool([random_dag(2, 3, 1, seed=s) for s in range(3)])
        >>> len({jax.tree.structure(p) for p in progs})
        1
        >>> pool = jax.tree.map(lambda *a: jnp.stack(a), *progs)
        >>> jax.vmap(lambda p: p.init(2))(pool)["synapse"]["w"].shape[0]
        3
    """
    graphs = list(graphs)
    bucket = make_bucket(graphs) if bucket is None else bucket
    made = [make_plan(g, bucket=bucket) for g in graphs]
    plan = made[0][0]  # equal for all (one bucket); one object, so treedef comparisons stop at identity
    dtype = default_dtype(dtype)
    progs = [Program(g, plan, arrays, rows, dtype) for g, (_, arrays, rows) in zip(graphs, made)]
    for i, p in enumerate(progs[1:], 1):
        if p._static != progs[0]._static:
            differ = sorted(k for (k, a), (_, b) in zip(p._static.kinds_items, progs[0]._static.kinds_items) if a != b)
            raise AgentGraphError(f"compile_pool: graph {i} declares kinds {differ} differently from graph 0; "
                                  "the graphs of a pool must share their kinds.")
        p._static = progs[0]._static
    shared = dict(progs[0].index)  # agents every graph has, with the same kind
    for p in progs[1:]:
        index = p.index
        shared = {a: kr for a, kr in shared.items() if index.get(a, (None,))[0] == kr[0]}
    pool = _Pool({a: (k, i) for i, (a, (k, _)) in enumerate(shared.items())})
    for p in progs:
        p._pool = pool
        p.arrays["pool/rows"] = jnp.asarray(np.array([p.index[a][1] for a in shared], np.int32))
    return progs
