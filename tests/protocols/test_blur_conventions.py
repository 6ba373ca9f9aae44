"""BLUR's conventions as options (issue 33): with ``conventions: authors`` one step of agentgraph's
BLUR — interpreter and compiled, on an ``mlp`` and a ``random_dag`` — equals an independent NumPy
reference of the authors' equations (``tests/protocols/blur_reference.py``) to 1e-10 in float64;
each convention alone matches the reference too; the preset, its validation and the defaults; the
initialisers and the L2 objective."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import mlp_network, random_dag_network
from agentgraph.network import fresh_weights, prediction_loss
from agentgraph.protocols.base import resolve, settings_of
from agentgraph.protocols.blur import AUTHORS, GROUP, BlurSettings, blur, init_genome, summed_over_batch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import blur_reference as ref  # noqa: E402

K, B = 3, 4
NETS = {"mlp": lambda: mlp_network([3, 4, 2], activation="tanh", loss="l2", seed=0),
        "random_dag": lambda: random_dag_network(3, 4, 2, edge_prob=0.5, parallel_prob=0.4, loss="l2", seed=4)}


def _genome(seed=7):
    g = {k: np.asarray(v, np.float64) for k, v in init_genome(K, jax.random.PRNGKey(seed), 1.0, "authors").items()}
    return {**g, "f": np.float64(0.8), "eta": np.float64(1.3), "f_t": np.float64(0.9), "eta_t": np.float64(0.07)}


def _start(topo, seed=0):
    rng = np.random.default_rng(seed)
    S, N = len(topo.syn_names), topo.n
    return rng.uniform(-1, 1, (S, K)), rng.uniform(-1, 1, (S, K)), rng.uniform(-1, 1, (N, K))


def _to_agents(st, topo, W, WB, Bias, separate):
    for s, name in enumerate(topo.syn_names):
        st[name]["w"] = W[s]
        if separate:
            st[name]["wb"] = WB[s]
    for j in range(topo.n_in, topo.n):
        st[topo.names[j]]["b"] = Bias[j]
    return st


def _check(state, topo, A, W, WB, Bias, separate, what):
    for s, name in enumerate(topo.syn_names):
        np.testing.assert_allclose(state[name]["w"], W[s], atol=1e-10, rtol=0, err_msg=f"{what}: {name} w")
        if separate:
            np.testing.assert_allclose(state[name]["wb"], WB[s], atol=1e-10, rtol=0, err_msg=f"{what}: {name} wb")
    for j in range(topo.n_in, topo.n):
        name = topo.names[j]
        np.testing.assert_allclose(state[name]["b"], Bias[j], atol=1e-10, rtol=0, err_msg=f"{what}: {name} b")
        np.testing.assert_allclose(state[name]["a"], A[:, j], atol=1e-10, rtol=0, err_msg=f"{what}: {name} a")


def _batches(topo, n, seed=1):
    rng = np.random.default_rng(seed)
    n_out = len(topo.outputs)
    return [{"x": rng.uniform(-1, 1, (B, topo.n_in)), "y": np.eye(n_out)[rng.integers(0, n_out, B)]} for _ in range(n)]


@pytest.fixture(scope="module")
def authors_programs():
    """One compiled float64 program per network and rule under ``conventions: authors`` (shared
    by the tests; compiled lazily, once)."""
    cache = {}

    def get(name, exact):
        if (name, exact) not in cache:
            net = NETS[name]()
            p = resolve({"rule": "blur", "conventions": "authors", "k": K, "exact": exact})
            b = p.network(net)
            with jax.enable_x64(True):
                cache[(name, exact)] = (net, p, b, compile(b.graph, dtype=jnp.float64))
        return cache[(name, exact)]
    return get


def _fused(prog, field):
    return [t for t, waves in prog.plan.sweeps for w in waves for blk in w for link in blk.outer if link.field == field]


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("name", sorted(NETS))
def test_authors_conventions_follow_the_numpy_reference(name, exact, authors_programs):
    """Two steps, interpreter and compiled (through the protocol's inner step, which sums the
    updates over the batch), against the reference with every authors' convention on (and
    ``exact: false``, the two-sweep rule, as a variant)."""
    net, p, b, prog = authors_programs(name, exact)
    if name == "mlp":  # the dense path: the feedback weights' Hebbian update is one outer product
        assert _fused(prog, "wb") == ["update" if exact else "backward"] * 2
    topo = ref.topology(net)
    genome = _genome()
    W, WB, Bias = _start(topo)
    st = _to_agents(interpreter.init_state(b.graph, B), topo, W, WB, Bias, True)
    with jax.enable_x64(True):
        sc = prog.from_agents(st)
        for batch in _batches(topo, 2):
            st = interpreter.step(b.graph, st, summed_over_batch({GROUP: genome}, B), batch).state
            sc, _ = p.inner_step(None, prog, {GROUP: genome}, sc, batch)
            A, W, WB, Bias = ref.step(topo, W, WB, Bias, genome, batch["x"], batch["y"], {**ref.AUTHORS, "exact": exact})
        got = prog.to_agents(sc)
    _check(st, topo, A, W, WB, Bias, True, "interpreter")
    _check(got, topo, A, W, WB, Bias, True, "compiled")
    hidden = [j for j in range(topo.n_in, topo.n) if j not in topo.outputs]
    assert np.abs(A[:, hidden]).max() > 1e-2 and np.abs(WB).max() > 0  # the sweeps did move the states


SINGLE = [("bias_state", "ones"), ("label_states", "zero"), ("label_coding", "pm1"), ("feedback", "separate"),
          ("sigma", "relu_tanh"), ("output_sigma", "identity"), ("batch_update", "sum"), ("exact", False)]


@pytest.mark.parametrize("option,value", SINGLE)
def test_each_convention_alone_follows_the_reference(option, value):
    """agentgraph's defaults with one convention switched (interpreter, random DAG)."""
    net = NETS["random_dag"]()
    topo = ref.topology(net)
    p = blur(k=K, **{option: value})
    b = p.network(net)
    genome = _genome(3)
    W, WB, Bias = _start(topo, 2)
    sep = option == "feedback"
    st = _to_agents(interpreter.init_state(b.graph, B), topo, W, WB, Bias, sep)
    params = {GROUP: genome}
    if option == "batch_update":
        params = summed_over_batch(params, B)
    for batch in _batches(topo, 2, seed=5):
        st = interpreter.step(b.graph, st, params, batch).state
        A, W, WB, Bias = ref.step(topo, W, WB, Bias, genome, batch["x"], batch["y"], {option: value})
    _check(st, topo, A, W, WB, Bias, sep, f"{option}={value}")


def test_each_convention_changes_the_step():
    """Every option moves some state of one step away from the defaults (none is inert)."""
    net = NETS["mlp"]()
    topo = ref.topology(net)
    genome = _genome(3)
    W, WB, Bias = _start(topo, 2)
    batch = _batches(topo, 1, seed=5)[0]
    base = ref.step(topo, W, WB, Bias, genome, batch["x"], batch["y"], ref.OURS)
    for option, value in SINGLE:
        other = ref.step(topo, W, WB, Bias, genome, batch["x"], batch["y"], {option: value})
        dev = max(np.abs(a - b).max() for a, b in zip(base, other))
        assert dev > 1e-3, (option, dev)


def test_preset_sets_every_convention_and_explicit_options_win():
    s = settings_of({"rule": "blur", "conventions": "authors"})
    assert {k: s[k] for k in AUTHORS} == AUTHORS
    s = settings_of({"rule": "blur", "conventions": "authors", "feedback": "tied", "sigma": "tanh"})
    assert s["feedback"] == "tied" and s["sigma"] == "tanh" and s["bias_state"] == "ones"
    assert settings_of(s) == s  # a checkpoint's stored settings mean the same again
    assert BlurSettings(conventions="agentgraph") == BlurSettings()
    # the defaults are this library's, as shipped: what older configs and checkpoints meant
    d = settings_of({"rule": "blur"})
    assert {k: d[k] for k in ("k", "sigma", "init_std", "genome_scale", "exact")} == \
        {"k": 2, "sigma": "tanh", "init_std": 0.1, "genome_scale": 0.5, "exact": True}
    assert d["conventions"] == "agentgraph" and d["batch_update"] == "mean" and d["feedback"] == "tied"
    assert resolve({"rule": "blur"}).stepping is None and resolve({"rule": "blur", "conventions": "authors"}).stepping
    for bad, field in (({"conventions": "paper"}, "conventions"), ({"feedback": "mirror"}, "feedback"),
                       ({"init_range": 0.0}, "init_range"), ({"output_sigma": "softsign"}, "output_sigma"),
                       ({"batch_size": 3}, "batch_size")):
        with pytest.raises(AgentGraphError, match=rf"protocol\.{field}"):
            resolve({"rule": "blur", **bad})
        with pytest.raises(AgentGraphError, match=rf"protocol\.{field}"):
            blur(**bad)


def test_authors_initialisation_of_synapses_and_genome():
    net = NETS["mlp"]()
    b = blur(k=K, conventions="authors", init_range=0.5).network(net)
    assert {(i.kind, i.field, i.dist, i.std) for i in b.init} == {
        ("blur_synapse", "w", "uniform", 0.5), ("blur_synapse", "wb", "uniform", 0.5),
        ("blur_neuron", "b", "uniform", 0.5), ("blur_output", "b", "uniform", 0.5)}
    prog = compile(b.graph)
    w = fresh_weights(b.init, jax.random.PRNGKey(0), prog.init(1))
    vals = np.concatenate([np.ravel(v) for f in w.values() for v in f.values()])
    assert np.abs(vals).max() <= 0.5 and np.abs(vals).max() > 0.4 and abs(vals.mean()) < 0.1
    assert not np.allclose(w["blur_synapse"]["w"], w["blur_synapse"]["wb"])  # drawn separately
    ours = blur(k=K).network(net)
    assert [(i.kind, i.field, i.std, i.dist) for i in ours.init] == [
        ("blur_synapse", "w", 0.1, "normal"), ("blur_output", "b", 0.0, "normal"), ("blur_neuron", "b", 0.0, "normal")]
    g = blur(k=K, conventions="authors").init(jax.random.PRNGKey(1), b.graph)
    assert [float(g[n]) for n in ("f", "eta", "f_t", "eta_t")] == pytest.approx([1.0, 1.0, 1.0, -1e-3])
    assert 0.5 < float(np.std(np.concatenate([np.ravel(g[m]) for m in ("nu", "mu", "nu_t", "mu_t")]))) < 1.6


def test_l2_objective_is_the_authors_l2_on_state_0_against_pm1_labels():
    """``objective: l2`` with ±1 labels reads ``(a₀ + 1)/2``: against one-hot targets its
    squared error is n_out/8 times the authors' mean L2 of state 0 against ±1 labels, and its
    argmax is state 0's."""
    net = NETS["mlp"]()
    p = blur(k=K, conventions="authors")
    b = p.network(net)
    assert b.readout.field == "p" and b.readout.kind == "values"
    prog = compile(b.graph)
    genome = p.init(jax.random.PRNGKey(0), b.graph)
    state = prog.init(B)
    state = {**state, **{kd: {**state[kd], **f} for kd, f in fresh_weights(b.init, jax.random.PRNGKey(1), state).items()}}
    rng = np.random.default_rng(0)
    y = np.eye(2)[rng.integers(0, 2, B)]
    s, _ = prog.forward({GROUP: genome}, state, {"x": rng.uniform(-1, 1, (B, 3)), "y": y})
    pred = np.asarray(prog.read(s, list(b.readout.agents), "p"))
    a0 = np.asarray(prog.read(s, list(b.readout.agents), "a"))[..., 0]
    np.testing.assert_allclose(pred, (a0 + 1) / 2, atol=1e-6)
    authors_l2 = np.mean((a0 - (2 * y - 1)) ** 2)
    ours = float(prediction_loss(jnp.asarray(pred), jnp.asarray(y), "values").mean())
    np.testing.assert_allclose(ours, authors_l2 * 2 / 8, rtol=1e-5)
    assert (np.argmax(pred, -1) == np.argmax(a0, -1)).all()
    assert blur(k=K, objective="l2").network(net).readout[1:] == ("a", 0, "values")
    assert blur(k=K).network(net).readout[1:] == ("a", 0, "logits")
