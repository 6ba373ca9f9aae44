"""Buckets and pools: graphs of one bucket share one plan, one treedef and one executable; padding
changes no result; a pool of programs stacks and ``vmap``s."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, random_dag
from agentgraph.compiler import compile_pool, make_bucket
from agentgraph.compiler.program import _step_jit
from agentgraph.interpreter import init_state, step
from agentgraph.protocols import gradient


def _dags(n=3, **kw):
    kw = {"edge_prob": 0.4, "parallel_prob": 0.3, "activation": "tanh", "loss": "cross_entropy", **kw}
    return [random_dag(3, 5, 2, seed=s, **kw) for s in range(n)]


def _task(seed, B=3):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(B, 3)), "y": np.eye(2)[rng.integers(0, 2, B)]}


def _agents_close(got: dict, want: dict, tol: float) -> None:
    for a, fields in want.items():
        for f, v in fields.items():
            np.testing.assert_allclose(got[a][f], v, atol=tol, rtol=0, err_msg=f"{a!r}.{f}")


def test_pool_runs_through_one_trace_and_equals_each_graph_alone():
    """3 random DAGs of one pool: a jitted 3-step run traces once, and each graph's losses,
    states and (jitted, also traced once) reads equal those of the graph compiled alone: the
    padding rows change nothing."""
    graphs = _dags()
    B, batches = 3, [_task(s) for s in range(3)]
    traces, rows = [], []
    out = [("softmax", 1), ("softmax", 0)]  # every graph has them, at rows of its own
    read = jax.jit(lambda prog, s: prog.read(s, out, "p"))

    @jax.jit
    def run(prog, params, s, b):
        traces.append(1)
        return prog.step(params, s, b)

    with jax.enable_x64(True):
        progs = compile_pool(graphs)
        assert len({jax.tree.structure(p) for p in progs}) == 1
        assert len({tuple((l.kind, l.n) for l in p.plan.kinds) for p in progs}) == 1  # one state shape
        for g, p in zip(graphs, progs):
            alone = compile(g)
            assert alone.plan != p.plan  # really padded
            params = gradient.params(g, 0.3)
            s_pool, s_alone = p.init(B), alone.init(B)
            for b in batches:
                s_pool, l_pool = run(p, params, s_pool, b)
                s_alone, l_alone = alone.step(params, s_alone, b)
                assert abs(float(l_pool) - float(l_alone)) < 1e-12
            _agents_close(p.to_agents(s_pool), alone.to_agents(s_alone), 1e-12)
            rows.append(p.index[out[0]])
            np.testing.assert_allclose(read(p, s_pool), alone.read(s_alone, out, "p"), atol=1e-12, rtol=0)
    assert len(traces) == 1
    assert len(set(rows)) > 1  # the read agents sit at other rows in other graphs
    assert read._cache_size() == 1


def test_bucket_graphs_equal_the_interpreter_share_the_executable_and_vmap_over_graphs():
    """Random DAGs of one bucket: each equals the interpreter, none retraces, and ``vmap`` over the
    stacked programs equals each graph run alone."""
    graphs = _dags(4)
    progs = compile_pool(graphs)
    assert len({p.plan for p in progs}) == 1
    B, b = 3, _task(7)
    params = gradient.params(graphs[0], 0.3)
    progs[0].step(params, progs[0].init(B), b)
    before = _step_jit._cache_size()
    losses = []
    for g, p in zip(graphs, progs):
        s, loss = p.step(params, p.init(B), b)
        r = step(g, init_state(g, B), params, b)
        assert abs(float(loss) - r.loss) < 1e-5
        _agents_close(p.to_agents(s), r.state, 1e-5)
        losses.append(float(loss))
    assert _step_jit._cache_size() == before
    pool = jax.tree.map(lambda *xs: jnp.stack(xs), *progs)
    s_v, l_v = jax.vmap(lambda p: p.step(params, p.init(B), b))(pool)
    np.testing.assert_allclose(np.asarray(l_v), losses, atol=1e-6)
    for i, p in enumerate(progs):
        s_i, _ = p.step(params, p.init(B), b)
        np.testing.assert_allclose(s_v["synapse"]["w"][i], s_i["synapse"]["w"], atol=1e-6)


def test_compile_pool_is_compile_with_one_bucket_plus_the_shared_agents_rows():
    graphs = _dags(2)
    pool = compile_pool(graphs)
    for g, p in zip(graphs, pool):
        q = compile(g, bucket=make_bucket(graphs))
        assert p.plan == q.plan
        assert jax.tree.structure(p) != jax.tree.structure(q)  # the pool's shared agents are static
        rows = p.arrays.pop("pool/rows")
        for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
            np.testing.assert_array_equal(x, y)
        shared = [a for a in g.agents() if a in pool[0].index and a in pool[1].index]
        assert len(rows) == len(shared) > 0


def test_graph_outside_the_bucket_is_refused():
    small = random_dag(2, 3, 1, seed=0)
    big = random_dag(2, 12, 1, edge_prob=0.6, seed=1)
    with pytest.raises(AgentGraphError, match="does not fit the bucket"):
        compile(big, bucket=make_bucket([small]))
    with pytest.raises(AgentGraphError, match="does not fit the bucket"):
        compile_pool([big], bucket=make_bucket([small]))
