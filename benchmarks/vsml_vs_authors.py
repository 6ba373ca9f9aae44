"""agentgraph's VSML tick against the authors' code (Kirsch & Schmidhuber, NeurIPS 2021,
``louiskirsch/vsml-neurips2021``, JAX + Haiku), tick by tick, on the same LSTM parameters, initial
cell states, inputs and labels (issue 33 item 3).

    python benchmarks/vsml_vs_authors.py DIR [--sizes 4 3 2] [--ticks 6] [--out FILE]

``DIR`` is a local copy of the authors' files (``models.py``, ``vsml_layers.py``,
``recurrent.py``, ``config.py``, ``jaxutil.py``); they are imported from there, never copied
into this project. Their code needs ``dm-haiku`` and ``chex`` (run this in an environment that
has them, e.g. a virtualenv with ``--system-site-packages``). Three shims let their 2021 code run
on today's JAX / Haiku, none of which changes a number: ``jax.tree_map`` is aliased to
``jax.tree.map``, ``hk.vmap`` gets ``split_rng=False`` (their vmaps draw no randomness) and
``hk.scan`` is run as a Python loop so that every tick can be recorded.

Their model is run unchanged (``models.VSMLRNN.__call__``); a recorder wraps its per-tick function
(``_batched_tick``) and keeps each tick's LSTM states, the messages between layers, the
predictions and the error messages. Ours is :func:`agentgraph.interpreter.step` with
``trace=True`` on :func:`agentgraph.protocols.vsml.vsml`'s network of ``mlp_network(sizes)``.
Both run in float64. Parameters are drawn once (our layout) and copied into theirs: the layouts
are the same (LSTM ``[x, h] W + b`` with gates ``i, g, f, o``; read-outs ``h W + b``), so the
map is by name only. Their initial cell state (random half) is replaced by the same array that
our synapses get as ``c0``.

Cases: each differs from the matched one in one convention only (the deviation "when only that one
is left unmatched"), then the authors' defaults against ours (all differing conventions at once)
and against ``conventions: authors``.

Compared per tick (max |ours − theirs| over the tensor's entries):
``h``, ``c``: every synapse's LSTM state after the tick; ``fwd``: the hidden units' forward
messages (the mean over their in-synapses); ``bwd``: the backward messages the hidden units send
back (mean over out-synapses); ``out``: the predictions; ``error``: the output error messages
(components 0 and 1, the error and the label slot).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentgraph import interpreter
from agentgraph.builders import mlp_network
from agentgraph.protocols.vsml import GROUP, VsmlSettings, merge_halves, vsml

_TRUNC = 0.87962566103423978  # std of N(0, 1) truncated at ±2 (haiku's TruncatedNormal rescales by it)
TENSORS = ("h", "c", "fwd", "bwd", "out", "error")


def load_authors(directory: str):
    """Import the authors' ``config`` and ``models`` from ``directory`` with the shims above."""
    import haiku as hk

    if not hasattr(jax, "tree_map"):
        jax.tree_map = jax.tree.map  # removed from JAX after their code was written
    if not getattr(hk, "_ag_shimmed", False):
        vmap = hk.vmap

        def hk_vmap(f, *a, **k):
            k.setdefault("split_rng", False)
            return vmap(f, *a, **k)

        def py_scan(f, carry, xs):
            ys = []
            for t in range(jax.tree.leaves(xs)[0].shape[0]):
                carry, y = f(carry, jax.tree.map(lambda v, t=t: v[t], xs))
                ys.append(y)
            return carry, jax.tree.map(lambda *v: jnp.stack(v), *ys)

        hk.vmap, hk.scan, hk._ag_shimmed = hk_vmap, py_scan, True
    sys.path.insert(0, str(pathlib.Path(directory).resolve()))
    import config
    import models

    return hk, config, models


def run_authors(directory, sizes, msg, hidden, micro_ticks, params, c0, xs, ys, *, feed_label, merge=True,
                error_mean=True, backward_pass=False, layer_norm=False):
    """Their model on ``xs [T, B, n_in]``, ``ys [T, B, C]``: per tick ``{"h", "c": per layer
    [B, in, out, H]; "fwd", "bwd": per hidden layer [B, n, M]; "out": [B, C]; "error": [B, C, 2]}``.

    ``merge=False`` turns off their batch merge (the first half of every LSTM state averaged over
    the batch before each tick, when ``B > 1``); ``error_mean=False`` uses the sum over the batch
    of the cross-entropy as the loss whose gradient is the error (theirs: the mean, so ``1/B``).
    ``backward_pass``: their reverse sweep after each forward tick (then ``h``, ``c``, ``bwd`` and
    ``error`` are read after the reverse sweep, ``fwd`` and ``out`` after the forward one).
    ``layer_norm``: their message layer norms (scale and offset from ``params["ln_*"]``).
    """
    hk, config, models = load_authors(directory)
    config.GLOBAL_CONFIG.update(model={"sub_rnn": {"slow_size": hidden, "msg_size": msg,
                                                       "init_rand_proportion": 0.5, "layer_norm": layer_norm}, "vsml_rnn": {}})
    specs = models.complete_specs([models.DenseSpec(out_size=n) for n in sizes[1:-1]] + [models.DenseSpec()],
                                  (sizes[0],), sizes[-1])
    T = xs.shape[0]
    record = []

    def xent(logits, labels):
        ce = -jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1)
        return ce.mean() if error_mean else ce.sum()

    def forward(inputs, labels):
        model = models.VSMLRNN(layer_specs=specs, num_micro_ticks=micro_ticks, loss_func=xent, tanh_bound=100.0,
                               output_idx=1, backward_pass=backward_pass, separate_backward_rnn=False,
                               feed_label=feed_label, layerwise_rnns=False)
        made = iter(range(len(specs)))
        create = model._create_layer_state

        def create_with_c0(spec):  # their random initial cell, replaced by ours
            ls = create(spec)
            ls.lstm_state = type(ls.lstm_state)(hidden=ls.lstm_state.hidden, cell=jnp.asarray(c0[next(made)][0]))
            return ls

        model._create_layer_state = create_with_c0
        if not merge:
            model._merge_layer_states = lambda states: states
        tick = model._batched_tick

        def recorded_tick(layer_states, error, inp):
            new, out = tick(layer_states, error, inp)
            record.append({"error_in": np.asarray(error), "out": np.asarray(out),
                           "h": [np.asarray(ls.lstm_state.hidden) for ls in new],
                           "c": [np.asarray(ls.lstm_state.cell) for ls in new],
                           "fwd": [np.asarray(ls.incoming_fwd_msg) for ls in new[1:]],
                           "bwd": [np.asarray(ls.incoming_bwd_msg) for ls in new[:-1]]})
            return new, out

        model._batched_tick = recorded_tick
        if backward_pass:
            reverse = model._reverse_batched_tick

            def recorded_reverse(layer_states, error, inp):
                new, out = reverse(layer_states, error, inp)
                record[-1].update({"error_rev": np.asarray(error),
                                   "h": [np.asarray(ls.lstm_state.hidden) for ls in new],
                                   "c": [np.asarray(ls.lstm_state.cell) for ls in new],
                                   "bwd": [np.asarray(ls.incoming_bwd_msg) for ls in new[:-1]]})
                return new, out

            model._reverse_batched_tick = recorded_reverse
        return model(inputs, labels)

    f = hk.transform(forward)
    # one tick more: its error input is the error message of tick T
    x1 = np.concatenate([xs, xs[-1:]]), np.concatenate([ys, ys[-1:]])
    theirs = f.init(jax.random.PRNGKey(0), *x1)
    names = sorted(theirs)
    lstm = next(n for n in names if n.endswith("custom_lstm/linear"))
    fwd_n, bwd_n = (n for n in names if n.endswith(("sub_rnn/~/linear", "sub_rnn/~/linear_1")))
    theirs = {lstm: {"w": params["w"], "b": params["b"]}, fwd_n: {"w": params["w_fwd"], "b": params["b_fwd"]},
              bwd_n: {"w": params["w_bwd"], "b": params["b_bwd"]}}
    if layer_norm:
        for side, suffix in (("fwd", "sub_rnn/~/layer_norm"), ("bwd", "sub_rnn/~/layer_norm_1")):
            name = next(n for n in names if n.endswith(suffix))
            theirs[name] = {"scale": params[f"ln_{side}_scale"], "offset": params[f"ln_{side}_offset"]}
    record.clear()
    f.apply(theirs, jax.random.PRNGKey(0), *x1)
    ticks = []
    for t in range(T):
        r = dict(record[t])
        r["error"] = record[t]["error_rev"] if backward_pass else record[t + 1]["error_in"]
        ticks.append(r)
    return ticks


def run_ours(sizes, settings, params, c0, xs, ys):
    """Ours (interpreter, float64), the same per-tick record as :func:`run_authors`. The batch
    conventions (``batch_merge``, ``error_scale``: the protocol's stepping around
    ``program.step``) are applied to the interpreter's state and params the same way."""
    p = vsml(**settings)
    s = VsmlSettings(**settings)
    g = p.network(mlp_network(list(sizes))).graph
    T, B = xs.shape[:2]
    st = interpreter.init_state(g, B)
    L = len(sizes) - 1
    for layer in range(L):
        for i in range(sizes[layer]):
            for j in range(sizes[layer + 1]):
                st[("w", layer, i, j)]["c0"] = np.asarray(c0[layer][0, i, j])
    prm = {GROUP: {k: np.asarray(v, np.float64) for k, v in params.items()}}
    ticks = []
    if s.error_scale == "batch_mean":
        prm[GROUP]["error_scale"] = np.asarray(1.0 / B)
    for t in range(T):
        if s.batch_merge == "half_mean":
            for a in g.agents("vsml_synapse"):
                st[a] = {**st[a], "h": np.asarray(merge_halves(st[a]["h"], 0)), "c": np.asarray(merge_halves(st[a]["c"], 0))}
        r = interpreter.step(g, st, prm, {"x": xs[t], "y": ys[t]}, trace=True)
        st = r.state

        def syn(field, layer, st=st):
            return np.stack([np.stack([st[("w", layer, i, j)][field] for j in range(sizes[layer + 1])], 1)
                             for i in range(sizes[layer])], 1)

        def sent(agent, port="out", r=r):
            return next(v[port] for (a, _), v in r.outputs.items() if a == agent)

        ticks.append({
            "h": [syn("h", layer) for layer in range(L)], "c": [syn("c", layer) for layer in range(L)],
            "fwd": [np.stack([sent(("b", layer, j)) for j in range(sizes[layer + 1])], 1) for layer in range(L - 1)],
            "bwd": [np.stack([sent(("back", ("b", layer, j))) for j in range(sizes[layer + 1])], 1)
                    for layer in range(L - 1)],
            "out": np.stack([st[("b", L - 1, j)]["z"] for j in range(sizes[-1])], 1),
            "error": np.stack([st[("error", j)]["out"][:, :2] for j in range(sizes[-1])], 1),
        })
    return ticks


def deviation(ours, theirs):
    """``[{tensor: max |ours − theirs|}]`` per tick."""
    out = []
    for a, b in zip(ours, theirs):
        d = {}
        for k in TENSORS:
            xa, xb = a[k], b[k]
            if isinstance(xa, list):
                d[k] = max((float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(xa, xb)), default=0.0)
            else:
                d[k] = float(np.max(np.abs(np.asarray(xa) - np.asarray(xb))))
        out.append(d)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="a local copy of louiskirsch/vsml-neurips2021")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 3, 2])
    ap.add_argument("--ticks", type=int, default=6)
    ap.add_argument("--msg", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--micro-ticks", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vsml_vs_authors.json"))
    a = ap.parse_args(argv)
    sizes, M, H, k, T = a.sizes, a.msg, a.hidden, a.micro_ticks, a.ticks
    rng = np.random.default_rng(a.seed)
    # parameters (our layout, theirs the same): large enough that every term matters
    params = {"w": rng.normal(size=(2 * M + H, 4 * H)) * 1.5 / np.sqrt(2 * M + H), "b": rng.normal(size=4 * H) * 0.5,
              "w_fwd": rng.normal(size=(H, M)) * 2 / np.sqrt(H), "b_fwd": rng.normal(size=M) * 0.3,
              "w_bwd": rng.normal(size=(H, M)) * 2 / np.sqrt(H), "b_bwd": rng.normal(size=M) * 0.3}
    ln = {f"ln_{side}_scale": 1 + 0.3 * rng.normal(size=M) for side in ("fwd", "bwd")}
    ln.update({f"ln_{side}_offset": 0.2 * rng.normal(size=M) for side in ("fwd", "bwd")})

    def trunc(shape):  # the authors' initial cell: N(0, 1) truncated at ±2, rescaled (haiku)
        z = rng.normal(size=shape)
        while np.any(bad := np.abs(z) > 2):
            z[bad] = rng.normal(size=int(bad.sum()))
        return z / _TRUNC

    def data(B):
        xs = rng.normal(size=(T, B, sizes[0]))
        ys = np.eye(sizes[-1])[rng.integers(0, sizes[-1], size=(T, B))]
        return xs, ys

    # z: the unit draws of the random half of every synapse's cell; theirs scale it by 1/√fan-in
    z = [trunc((sizes[i], sizes[i + 1], H // 2)) for i in range(len(sizes) - 1)]

    def cells(B, scale):
        return [np.broadcast_to(np.concatenate([zl * s, np.zeros(zl.shape[:-1] + (H - H // 2,))], -1)[None],
                                (B, *zl.shape[:-1], H)).copy() for zl, s in zip(z, scale)]

    fan_scale = [1 / np.sqrt(sizes[i]) for i in range(len(sizes) - 1)]
    base = {"msg": M, "hidden": H, "micro_ticks": k}
    d1, d2 = data(1), data(2)
    authors_c0 = cells(1, fan_scale)
    cases = []

    def case(name, what, ours_settings, ours_c0, theirs_c0, xy, **theirs_kw):
        t0 = time.perf_counter()
        prm = {**params, **ln} if ours_settings.get("layer_norm") else params
        th = run_authors(a.dir, sizes, M, H, k, {**params, **ln}, theirs_c0, *xy, **theirs_kw)
        ou = run_ours(sizes, {**base, **ours_settings}, prm, ours_c0, *xy)
        dev = deviation(ou, th)
        mx = {key: max(d[key] for d in dev) for key in TENSORS}
        cases.append({"case": name, "what": what, "batch": int(xy[0].shape[1]), "ours": ours_settings,
                      "theirs": theirs_kw, "max": mx, "per_tick": dev, "seconds": time.perf_counter() - t0})
        print(f"{name:<28} B={xy[0].shape[1]}  " + "  ".join(f"{key} {mx[key]:.1e}" for key in TENSORS))

    print(f"sizes {sizes}, msg {M}, hidden {H}, micro ticks {k}, {T} ticks, float64; max |ours - theirs| over ticks")
    case("matched", "every convention matched by hand (ours: feed_label true; theirs: feed_label True)",
         {}, authors_c0, authors_c0, d1, feed_label=True)
    case("feed_label", "only the label slot unmatched (ours feed the label, theirs feed 0: their default)",
         {}, authors_c0, authors_c0, d1, feed_label=False)
    case("c0_init", "only the initial cell scale unmatched (ours N(0, init_std=0.5) from the same unit draws, "
         "theirs 1/sqrt(fan_in))", {}, cells(1, [0.5] * len(z)), authors_c0, d1, feed_label=True)
    case("matched_batch2", "B = 2 with their batch merge off and the error of the summed loss (our B "
         "independent learners)", {}, authors_c0, cells(2, fan_scale), d2, feed_label=True, merge=False,
         error_mean=False)
    case("batch_merge", "B = 2, only their batch merge unmatched (first half of every LSTM state averaged over "
         "the batch before each tick)", {}, authors_c0, cells(2, fan_scale), d2, feed_label=True, merge=True,
         error_mean=False)
    case("error_batch_mean", "B = 2, only the error scale unmatched (theirs: gradient of the batch-mean loss, "
         "(p - y)/B)", {}, authors_c0, cells(2, fan_scale), d2, feed_label=True, merge=False, error_mean=True)
    case("defaults", "their default config against agentgraph's defaults (c0 from each one's own scale)",
         {}, cells(1, [0.5] * len(z)), authors_c0, d1, feed_label=False)
    # conventions: authors — c0 drawn N(0, 1) per synapse and scaled by 1/sqrt(fan_in) inside
    case("conventions_authors", "their default config against conventions: authors (same unit draws)",
         {"conventions": "authors"}, cells(1, [1.0] * len(z)), authors_c0, d1, feed_label=False)
    case("defaults_b2", "B = 2: their default config against agentgraph's defaults",
         {}, cells(1, [0.5] * len(z)), cells(2, fan_scale), d2, feed_label=False)
    case("conventions_authors_b2", "B = 2: their default config against conventions: authors",
         {"conventions": "authors"}, cells(1, [1.0] * len(z)), cells(2, fan_scale), d2, feed_label=False)
    case("two_phase", "their backward_pass: True against our two_phase (both feed the label; our synapses fed "
         "[fwd, 0] / [0, bwd])", {"two_phase": True}, authors_c0, authors_c0, d1, feed_label=True,
         backward_pass=True)
    case("two_phase_carried", "their backward_pass: True against two_phase with two_phase_inputs: carried",
         {"two_phase": True, "two_phase_inputs": "carried"}, authors_c0, authors_c0, d1, feed_label=True,
         backward_pass=True)
    case("two_phase_authors", "their backward_pass: True, feed_label: False against two_phase with "
         "conventions: authors", {"two_phase": True, "conventions": "authors"}, cells(1, [1.0] * len(z)), authors_c0,
         d1, feed_label=False, backward_pass=True)
    case("layer_norm", "their layer_norm: True (deep.yaml; learned scale and offset) against ours without",
         {}, authors_c0, authors_c0, d1, feed_label=True, layer_norm=True)
    case("layer_norm_matched", "their layer_norm: True against layer_norm: true",
         {"layer_norm": True}, authors_c0, authors_c0, d1, feed_label=True, layer_norm=True)
    rest = [v for v in (argv if argv is not None else sys.argv[1:]) if v != a.dir]
    res = {"command": " ".join(["python benchmarks/vsml_vs_authors.py DIR", *rest]),
           "authors_code": "louiskirsch/vsml-neurips2021 @ 5b696c9 (models.VSMLRNN, run unchanged)",
           "sizes": sizes, "msg": M, "hidden": H, "micro_ticks": k, "ticks": T, "dtype": "float64",
           "tensors": {"h": "synapse LSTM hidden states", "c": "synapse LSTM cell states",
                       "fwd": "hidden units' forward messages", "bwd": "hidden units' backward messages",
                       "out": "predictions", "error": "output error messages (error, label slot)"},
           "cases": cases}
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
