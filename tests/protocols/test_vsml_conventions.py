"""VSML's convention options (``feed_label``, ``c0_init``, ``param_init``, ``batch_merge``,
``error_scale``) and the ``conventions: authors`` preset: each option changes the step (or the
init), the preset equals a NumPy reference written from the authors' equations (their
``VSMLRNN``: label slot 0, ``c0 ~ 1/√fan-in``, the first half of the LSTM states averaged over
the batch before each tick, error ``(p − y)/B``) tick by tick, and compiled == interpreter with
the options on, in float64. ``benchmarks/vsml_vs_authors.py`` runs their code itself."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import mlp_network
from agentgraph.protocols.base import resolve, settings_of
from agentgraph.protocols.vsml import GROUP, VsmlSettings, merge_halves, vsml

SIZES, M, H, K = [3, 4, 2], 4, 6, 2
AUTHORS = {"feed_label": False, "c0_init": "fan_in", "batch_merge": "half_mean", "error_scale": "batch_mean"}


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(2 * M + H, 4 * H)) * 1.5 / np.sqrt(2 * M + H), "b": rng.normal(size=4 * H) * 0.5,
            "w_fwd": rng.normal(size=(H, M)) * 2 / np.sqrt(H), "b_fwd": rng.normal(size=M) * 0.3,
            "w_bwd": rng.normal(size=(H, M)) * 2 / np.sqrt(H), "b_bwd": rng.normal(size=M) * 0.3,
            **{f"ln_{side}_scale": 1 + 0.3 * rng.normal(size=M) for side in ("fwd", "bwd")},
            **{f"ln_{side}_offset": 0.2 * rng.normal(size=M) for side in ("fwd", "bwd")}}


def _data(T=4, B=2, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(T, B, SIZES[0])), np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], size=(T, B))]


def _unit_c0(seed=2):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(SIZES[i], SIZES[i + 1], H)) * (np.arange(H) < H // 2)
            for i in range(len(SIZES) - 1)]


def _interpreted(settings, xs, ys, c0, params):
    """Predictions ``[T, B, n_out]`` and the final state: the interpreter, with the protocol's
    batch conventions applied around each step as its stepping does."""
    s = VsmlSettings(msg=M, hidden=H, micro_ticks=K, **settings)
    g = vsml(msg=M, hidden=H, micro_ticks=K, **settings).network(mlp_network(SIZES)).graph
    B = xs.shape[1]
    st = interpreter.init_state(g, B)
    for layer in range(len(SIZES) - 1):
        for i in range(SIZES[layer]):
            for j in range(SIZES[layer + 1]):
                st[("w", layer, i, j)]["c0"] = c0[layer][i, j]
    prm = {GROUP: dict(params)}
    if s.error_scale == "batch_mean":
        prm[GROUP]["error_scale"] = np.asarray(1.0 / B)
    preds = []
    for t in range(xs.shape[0]):
        if s.batch_merge == "half_mean":
            with jax.enable_x64(True):  # the interpreter's float64 kept
                for a in g.agents("vsml_synapse"):
                    st[a] = {**st[a], "h": np.asarray(merge_halves(jnp.asarray(st[a]["h"]), 0)),
                             "c": np.asarray(merge_halves(jnp.asarray(st[a]["c"]), 0))}
        st = interpreter.step(g, st, prm, {"x": xs[t], "y": ys[t]}).state
        preds.append(np.stack([st[("b", len(SIZES) - 2, j)]["z"] for j in range(SIZES[-1])], 1))
    return np.stack(preds), st, g


def _reference_authors(xs, ys, c0, P):
    """The authors' dense VSML from their equations (NumPy): layers ``[B, in, out, H]``."""
    T, B = xs.shape[:2]
    L = len(SIZES) - 1
    sig = lambda v: 1 / (1 + np.exp(-v))
    h = [np.zeros((B, SIZES[l], SIZES[l + 1], H)) for l in range(L)]
    c = [np.broadcast_to(c0[l] / np.sqrt(SIZES[l]), h[l].shape).copy() for l in range(L)]
    bwd_in = [np.zeros((B, SIZES[l + 1], M)) for l in range(L)]
    preds = []
    for t in range(T):
        if B > 1:
            for l in range(L):
                h[l][..., :H // 2] = h[l][..., :H // 2].mean(0, keepdims=True)
                c[l][..., :H // 2] = c[l][..., :H // 2].mean(0, keepdims=True)
        fwd = np.zeros((B, SIZES[0], M))
        fwd[..., 0] = xs[t]
        sent_back = [None] * L
        for l in range(L):
            x = np.concatenate([np.broadcast_to(fwd[:, :, None], h[l].shape[:3] + (M,)),
                                np.broadcast_to(bwd_in[l][:, None], h[l].shape[:3] + (M,))], -1)
            for _ in range(K):
                zz = np.concatenate([x, h[l]], -1) @ P["w"] + P["b"]
                i, g, f, o = np.split(zz, 4, -1)
                c[l] = sig(f + 5) * c[l] + sig(i - 5) * np.tanh(g)
                h[l] = sig(o) * np.tanh(c[l])
            fwd = (h[l] @ P["w_fwd"] + P["b_fwd"]).mean(1)
            sent_back[l] = (h[l] @ P["w_bwd"] + P["b_bwd"]).mean(2)
        z = 100 * np.tanh(fwd[..., 1] / 100)
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        for l in range(1, L):
            bwd_in[l - 1] = sent_back[l]
        bwd_in[L - 1] = np.zeros((B, SIZES[-1], M))
        bwd_in[L - 1][..., 0] = (p - ys[t]) / B
        preds.append(z)
    return np.stack(preds)


def test_preset_sets_the_authors_choices_and_options_win():
    s = VsmlSettings(conventions="authors", feed_label=True)
    assert (s.feed_label, s.c0_init, s.param_init, s.batch_merge, s.error_scale) == (
        True, "fan_in", "truncated", "half_mean", "batch_mean")
    d = VsmlSettings()
    assert (d.feed_label, d.c0_init, d.param_init, d.batch_merge, d.error_scale) == (
        True, "fixed", "normal", "independent", "per_example")
    assert vsml().stepping is None and vsml(conventions="authors").stepping is not None
    assert settings_of({"rule": "vsml", "conventions": "authors"})["batch_merge"] == "half_mean"
    assert resolve({"rule": "vsml", "conventions": "authors"}).settings["feed_label"] is False
    with pytest.raises(AgentGraphError, match="protocol.c0_init"):
        vsml(c0_init="bogus")


@pytest.mark.parametrize("option", [{"feed_label": False}, {"c0_init": "fan_in"}, {"batch_merge": "half_mean"},
                                    {"error_scale": "batch_mean"}, {"layer_norm": True}])
def test_each_option_changes_the_step(option):
    xs, ys = _data()
    c0, P = _unit_c0(), _params()
    base, _, _ = _interpreted({}, xs, ys, c0, P)
    got, _, _ = _interpreted(option, xs, ys, c0, P)
    assert np.max(np.abs(got - base)) > 1e-5


def test_param_init_truncated():
    key = jax.random.PRNGKey(0)
    net = mlp_network(SIZES)
    a = vsml(msg=M, hidden=H).init(key, vsml(msg=M, hidden=H).network(net).graph)
    b = vsml(msg=M, hidden=H, param_init="truncated").init(key, net.graph)
    assert jax.tree.map(jnp.shape, a) == jax.tree.map(jnp.shape, b)
    bound = 2 / 0.87962566103423978 / np.sqrt(2 * M + H)
    assert float(jnp.max(jnp.abs(b["w"]))) <= bound + 1e-6 < float(jnp.max(jnp.abs(a["w"]))) + bound
    assert not np.allclose(a["w"], b["w"])
    assert float(jnp.max(jnp.abs(b["b"]))) == 0.0
    ln = vsml(msg=M, hidden=H, layer_norm=True).init(key, net.graph)
    assert ln["ln_fwd_scale"].tolist() == [1.0] * M and ln["ln_bwd_offset"].tolist() == [0.0] * M


def test_c0_scale_is_one_over_sqrt_fan_in():
    g = vsml(c0_init="fan_in").network(mlp_network(SIZES)).graph
    st = interpreter.init_state(g, 1)
    assert np.isclose(float(st[("w", 0, 0, 0)]["c0_scale"]), 1 / np.sqrt(3))
    assert np.isclose(float(st[("w", 1, 3, 1)]["c0_scale"]), 1 / np.sqrt(4))


def test_authors_preset_equals_a_reference_of_their_equations():
    xs, ys = _data(T=5, B=2)
    c0, P = _unit_c0(), _params()
    got, _, _ = _interpreted({"conventions": "authors"}, xs, ys, c0, P)
    ref = _reference_authors(xs, ys, c0, P)
    assert np.max(np.abs(got - ref)) < 1e-10
    assert np.max(np.abs(ref)) > 1e-2  # not a trivially small case


def test_compiled_equals_interpreted_with_the_options_x64():
    xs, ys = _data(T=3, B=2)
    c0, P = _unit_c0(), _params()
    options = {**AUTHORS, "layer_norm": True}
    p = vsml(msg=M, hidden=H, micro_ticks=K, **options)
    _, st_i, g = _interpreted(options, xs, ys, c0, P)
    st = interpreter.init_state(g, 2)
    for layer in range(len(SIZES) - 1):
        for i in range(SIZES[layer]):
            for j in range(SIZES[layer + 1]):
                st[("w", layer, i, j)]["c0"] = c0[layer][i, j]
    with jax.enable_x64(True):
        prog = compile(g, dtype=jnp.float64)
        sc = prog.from_agents(st)
        params = {GROUP: {k: jnp.asarray(v, jnp.float64) for k, v in P.items()}}
        for t in range(3):
            sc, _ = p.stepping.step(None, prog, params, sc, {"x": xs[t], "y": ys[t]}, None, None)
        got = prog.to_agents(sc)
    for a in g.agents("vsml_synapse") + g.agents("vsml_output"):
        for f in ("h", "c", "z"):
            if f in st_i[a]:
                np.testing.assert_allclose(np.asarray(got[a][f]), st_i[a][f], atol=1e-10)


def test_two_phase_inputs_carried_changes_the_step_and_compiles_x64():
    xs, ys = _data(T=3, B=2)
    c0, P = _unit_c0(), _params()
    split, _, _ = _interpreted({"two_phase": True}, xs, ys, c0, P)
    carried_settings = {"two_phase": True, "two_phase_inputs": "carried"}
    carried, st_i, g = _interpreted(carried_settings, xs, ys, c0, P)
    assert np.max(np.abs(carried - split)) > 1e-5
    keep = {a: float(interpreter.init_state(g, 1)[a]["keep_bwd"]) for a in g.agents("vsml_synapse")}
    assert keep[("w", 0, 0, 0)] == 1.0 and keep[("w", 1, 0, 0)] == 0.0  # the output layer's error is cleared
    st = interpreter.init_state(g, 2)
    for layer in range(len(SIZES) - 1):
        for i in range(SIZES[layer]):
            for j in range(SIZES[layer + 1]):
                st[("w", layer, i, j)]["c0"] = c0[layer][i, j]
    with jax.enable_x64(True):
        prog = compile(g, dtype=jnp.float64)
        sc = prog.from_agents(st)
        params = {GROUP: {k: jnp.asarray(v, jnp.float64) for k, v in P.items()}}
        for t in range(3):
            sc, _ = prog.step(params, sc, {"x": xs[t], "y": ys[t]})
        got = prog.to_agents(sc)
    for a in g.agents("vsml_synapse"):
        for f in ("h", "c", "fwd_last", "bwd_last"):
            np.testing.assert_allclose(np.asarray(got[a][f]), st_i[a][f], atol=1e-10)
