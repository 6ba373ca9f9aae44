"""Per-block message buffers (agentgraph.compiler.buffers) and the pooling window lowerings:
reads assemble exactly the rows written (zeros elsewhere) in both layouts, and the ``pool`` /
``unpool`` table entries recognise k×k windows over a (c, y, x) map and nothing else."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import compile, mlp, random_dag
from agentgraph.compiler.buffers import MAX_PIECES_PER_READ, Messages
from agentgraph.compiler.lowerings import Inbox, PortArrows, choose_lowering, receive
from agentgraph.compiler.plan import PortPlan


@pytest.mark.parametrize("pieces", [True, False])
def test_messages_read_what_was_written_and_zeros_elsewhere(pieces):
    rng = np.random.default_rng(0)
    M, B = 11, 3
    want = np.zeros((M, B, 2), np.float32)
    m = Messages({2: M, 1: 4}, B, jnp.float32, pieces)
    for start, n in [(6, 3), (0, 2), (3, 2)]:  # rows 2, 5, 9, 10 stay unwritten
        v = rng.normal(size=(n, B, 2)).astype(np.float32)
        m.write(2, start, jnp.asarray(v))
        want[start:start + n] = v
    for lo, hi in [(0, M), (1, 4), (6, 9), (7, 8), (9, 11), (2, 3)]:
        np.testing.assert_array_equal(np.asarray(m.rows(2, lo, hi)), want[lo:hi])
    buf, off = m.window(2, 4, 8)
    assert off == (4 if pieces else 0)
    np.testing.assert_array_equal(np.asarray(buf)[4 - off:8 - off], want[4:8])
    np.testing.assert_array_equal(np.asarray(m.full(2)), want)
    assert 1 in m and 3 not in m


def _windows(C, H, W, k):
    """(src, dst) of avg pooling k×k / stride k over a (C, H, W) map in (c, y, x) order."""
    src, dst = [], []
    Ho, Wo = H // k, W // k
    for c in range(C):
        for py in range(Ho):
            for px in range(Wo):
                r = (c * Ho + py) * Wo + px
                for dy in range(k):
                    for dx in range(k):
                        src.append((c * H + py * k + dy) * W + px * k + dx)
                        dst.append(r)
    return np.array(src), np.array(dst)


@pytest.mark.parametrize("C,H,W,k", [(2, 4, 6, 2), (3, 6, 3, 3), (1, 2, 2, 2), (2, 4, 2, 2)])
def test_pool_and_unpool_match_windows_and_receive_them(C, H, W, k):
    src, dst = _windows(C, H, W, k)
    base = 5
    n = C * (H // k) * (W // k)
    name, m = choose_lowering(PortArrows(src + base, dst, n))
    if W == k:  # one window per map row: each window is k·k consecutive rows, the ``rows`` entry's pattern
        assert name == "rows"
        m = type(m)(base, 1, kernel=k)
    else:
        assert (name, m.base, m.param, m.kernel) == ("pool", base, W // k, k)
    # its transpose: every map unit reads its window's pool
    order = np.argsort(src, kind="stable")
    name_t, mt = choose_lowering(PortArrows(dst[order] + 1, src[order], C * H * W))
    if W == k:  # a map row of k units reads one pool: ``repeat``
        assert name_t == "repeat"
        mt = type(mt)(1, 1, kernel=k)
    else:
        assert (name_t, mt.base, mt.param, mt.kernel) == ("unpool", 1, W // k, k)
    # both receive what the generic segment lowering receives
    with jax.enable_x64(True):
        _receive_pool_unpool(src, dst, base, n, m, mt, C * H * W, k)


def _receive_pool_unpool(src, dst, base, n, m, mt, n_map, k):
    rng = np.random.default_rng(1)
    B, M = 2, base + n_map + 3
    bufs = Messages({1: M}, B, jnp.float64, pieces=True)
    vals = rng.normal(size=(M, B, 1))
    bufs.write(1, 0, jnp.asarray(vals))
    for agg in ("sum", "mean", "max"):
        got = receive(Inbox(bufs, {}, bufs.dtype), PortPlan("x", 1, agg, "pool", base, m.param, "", len(src), kernel=k), n, B)
        red = {"sum": np.add.reduceat, "max": np.maximum.reduceat}
        want = (red.get(agg, np.add.reduceat)(vals[src + base], np.arange(0, len(src), k * k), axis=0)
                / (k * k if agg == "mean" else 1))
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)
    got = receive(Inbox(bufs, {}, bufs.dtype), PortPlan("m", 1, "sum", "unpool", 1, mt.param, "", n_map, kernel=k), n_map, B)
    np.testing.assert_allclose(np.asarray(got)[src], vals[dst + 1], rtol=1e-12)


def test_shuffled_windows_fall_back_to_the_generic_lowerings():
    src, dst = _windows(2, 4, 4, 2)
    perm = np.random.default_rng(0).permutation(8)  # receivers in another order than (c, y, x)
    d2 = perm[dst]
    o = np.lexsort((src, d2))
    assert choose_lowering(PortArrows(src[o], d2[o], 8))[0] == "segment"
    order = np.argsort(src, kind="stable")
    t_src = perm[dst][order]  # map units reading shuffled pools
    assert choose_lowering(PortArrows(t_src, src[order], 32))[0] == "pick"


def test_piecewise_is_chosen_where_reads_assemble_few_pieces():
    assert compile(mlp([3, 4, 2])).plan.piecewise == ("backward", "forward")
    # a random DAG: backward blocks scatter their rows, and forward ports read many waves' outputs
    prog = compile(random_dag(3, 12, 2, seed=0))
    assert prog.plan.piecewise == ()
    worst = max(len({b.start for w in prog.plan.forward for b in w if b.kind == "bias"}), 0)
    assert worst > MAX_PIECES_PER_READ
