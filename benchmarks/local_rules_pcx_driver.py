"""The PCX side of ``benchmarks/local_rules_pcx.py``: a discriminative predictive-coding MLP written
with the PCX library (``pcx==0.6.3``), run under its own virtualenv (PCX pins jax < 0.5; the
project's environment has a newer jax), driven by the benchmark over files and pipes.

Run (by ``local_rules_pcx.py``; by hand only to debug):
    /work/venvs/pcx/bin/python benchmarks/local_rules_pcx_driver.py step CONFIG.json IN.npz OUT.npz
    /work/venvs/pcx/bin/python benchmarks/local_rules_pcx_driver.py serve CONFIG.json DATA.npz

``CONFIG`` (JSON) fixes the model and the optimisers:

* ``sizes`` (``[784, 128, 128, 128, 10]``), ``act`` (a ``jax.nn`` name: ``relu``, ``gelu``, ``tanh``);
* ``convention``: ``"pre"`` — the value nodes hold pre-activations, ``μ_l = W_l f(v_{l-1}) + b_l``
  (the project's ``predictive_coding`` protocol; the first layer reads the raw input) — or
  ``"post"`` — the value nodes hold activations, ``μ_l = f(W_l h_{l-1} + b_l)`` (PCX's benchmark MLP);
  the output node holds the logits, clamped to the one-hot target under the cross-entropy energy;
* ``T``: inference steps. The energy is summed over the batch: each example's values move along
  its own ``∂F_i/∂v_i``, the weights along the batch mean of ``∂F_i/∂θ`` (the gradient scaled by
  ``1/B``) — the project's convention, and what PCX's benchmark scripts compute with the older PCX
  API (a batch-mean energy whose value gradients are multiplied back by the batch size);
* ``h``: ``{"lr", "momentum"}`` — SGD on the values, its state reset every batch;
* ``w``: ``{"opt": "sgd", "lr"}`` or ``{"opt": "adamw", "lr", "wd", "epochs", "steps_per_epoch"}``
  (AdamW on PCX's warm-up-then-cosine schedule: from ``lr`` up to ``1.1 lr`` over the first tenth of
  ``epochs × steps_per_epoch`` steps, then down to ``0.1 lr``);
* ``x64`` (bool): float64; ``batch`` (``serve``): the batch size ``B``.

``IN.npz`` / ``DATA.npz`` hold the initial weights ``W0..`` (``[n_in, n_out]``) and biases
``b0..``; ``IN.npz`` also one batch ``x [B, n0]``, ``y [B, n_L]`` (``step`` writes the weights
after one training step to ``OUT.npz``); ``DATA.npz`` the arrays ``xtr [N, 784]``, ``ytr [N]``,
``xte``, ``yte`` and ``orders [E, N]`` (one permutation per epoch). ``serve`` reads lines ``epoch
k`` from stdin and answers each with one JSON line ``{"epoch", "seconds", "test_accuracy"}`` on
stdout (an epoch: ``N // B`` batches of ``orders[k]``, the last partial batch dropped; ``epoch -1``
compiles the step and the evaluation, then restores the initial weights and optimiser state);
``quit`` ends it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import pcx as px
import pcx.functional as pxf
import pcx.nn as pxnn
import pcx.predictive_coding as pxc
import pcx.utils as pxu


class MLP(pxc.EnergyModule):
    """A PCX MLP with one value node per layer (module docstring: ``convention``)."""

    def __init__(self, sizes: list[int], act: Callable, convention: str) -> None:
        super().__init__()
        self.act = px.static(act)
        self.post = px.static(convention == "post")
        self.layers = [pxnn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.vodes = [pxc.Vode() for _ in sizes[1:-1]] + [pxc.Vode(pxc.ce_energy)]
        self.vodes[-1].h.frozen = True

    def __call__(self, x: jax.Array, y: jax.Array | None) -> jax.Array:
        for v, l in zip(self.vodes[:-1], self.layers[:-1]):
            x = v(self.act(l(x))) if self.post.get() else self.act(v(l(x)))
        self.vodes[-1](self.layers[-1](x))
        if y is not None:
            self.vodes[-1].set("h", y)
        return self.vodes[-1].get("u")


_VMAP = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))


@pxf.vmap(_VMAP, in_axes=(0, 0), out_axes=0)
def _forward(x, y, *, model):
    return model(x, y)


@pxf.vmap(_VMAP, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
def _energy_sum(x, *, model):
    y_ = model(x, None)
    return jax.lax.psum(model.energy(), "batch"), y_


def _train_step(T: int, x, y, *, model, optim_w, optim_h):
    energy = _energy_sum
    model.train()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        _forward(x, y, model=model)
    optim_h.init(pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
    for _ in range(T):
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = pxf.value_and_grad(pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True]),
                                      has_aux=True)(energy)(x, model=model)
        optim_h.step(model, g["model"])
    optim_h.clear()
    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        _, g = pxf.value_and_grad(pxu.M(pxnn.LayerParam).to([False, True]), has_aux=True)(energy)(x, model=model)
    optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0])


@pxf.jit()
def _predict(x, *, model):
    model.eval()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        return _forward(x, None, model=model).argmax(axis=-1)


def set_weights(model: MLP, arrays: Any, dtype: Any) -> None:
    """Load ``W0.. [n_in, n_out]``, ``b0..`` into the model's layers, in place."""
    for l, layer in enumerate(model.layers):
        layer.nn.weight.set(jnp.asarray(np.asarray(arrays[f"W{l}"]).T, dtype))
        layer.nn.bias.set(jnp.asarray(arrays[f"b{l}"], dtype))


def build(cfg: dict, arrays: Any, batch: int) -> tuple[MLP, pxu.Optim, pxu.Optim, Callable]:
    """The model with the weights of ``arrays`` (``W0.. [n_in, n_out]``, ``b0..``), its optimisers
    and a jitted ``train(x [B, n0], y [B, n_L])`` (one step, in place)."""
    dt = jnp.float64 if cfg.get("x64") else jnp.float32
    model = MLP(cfg["sizes"], getattr(jax.nn, cfg["act"]), cfg["convention"])
    set_weights(model, arrays, dt)
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        _forward(jnp.zeros((batch, cfg["sizes"][0]), dt), None, model=model)
    h, w = cfg["h"], cfg["w"]
    optim_h = pxu.Optim(lambda: optax.sgd(h["lr"], momentum=h.get("momentum") or None))
    if w["opt"] == "sgd":
        opt_w = lambda: optax.sgd(w["lr"])
    else:
        total = w["epochs"] * w["steps_per_epoch"]
        sched = optax.warmup_cosine_decay_schedule(init_value=w["lr"], peak_value=1.1 * w["lr"],
                                                   warmup_steps=0.1 * total, decay_steps=total,
                                                   end_value=0.1 * w["lr"], exponent=1.0)
        opt_w = lambda: optax.adamw(sched, weight_decay=w["wd"])
    optim_w = pxu.Optim(opt_w, pxu.M(pxnn.LayerParam)(model))
    step = pxf.jit(static_argnums=0)(_train_step)

    def train(x, y):
        step(cfg["T"], jnp.asarray(x, dt), jnp.asarray(y, dt),
             model=model, optim_w=optim_w, optim_h=optim_h)

    return model, optim_w, optim_h, train


def weights(model: MLP) -> dict[str, np.ndarray]:
    """``{"W0": [n_in, n_out], "b0": [n_out], ...}`` of the model, as numpy arrays."""
    out = {}
    for l, layer in enumerate(model.layers):
        out[f"W{l}"] = np.asarray(layer.nn.weight.get()).T
        out[f"b{l}"] = np.asarray(layer.nn.bias.get())
    return out


def _hits(model: MLP, x: np.ndarray, y: np.ndarray, B: int) -> int:
    """Correct predictions on ``x [N, n0]``, in batches of the training batch ``B`` (the value
    nodes keep that batch size; the last batch zero-padded, its padding ignored)."""
    hits = 0
    for i in range(0, len(x), B):
        xb = x[i:i + B]
        pad = np.zeros((B - len(xb), x.shape[1]), x.dtype)
        pred = np.asarray(_predict(jnp.asarray(np.concatenate([xb, pad])), model=model))[:len(xb)]
        hits += int((pred == y[i:i + B]).sum())
    return hits


def _step(cfg: dict, src: str, dst: str) -> None:
    a = np.load(src)
    model, _, _, train = build(cfg, a, len(a["x"]))
    train(a["x"], a["y"])
    np.savez(dst, **weights(model))


def _serve(cfg: dict, data: str) -> None:
    a = np.load(data)
    xtr, ytr, xte, yte, orders = (a[k] for k in ("xtr", "ytr", "xte", "yte", "orders"))
    B = cfg["batch"]
    model, optim_w, _, train = build(cfg, a, B)
    eye = np.eye(cfg["sizes"][-1], dtype=np.float32)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        k = int(cmd[1])
        if k < 0:  # compile the step and the evaluation, then start again from the initial weights
            train(xtr[:B], eye[ytr[:B]])
            _hits(model, xte[:B], yte[:B], B)
            set_weights(model, a, jnp.float32)
            optim_w.init(pxu.M(pxnn.LayerParam)(model))
            print(json.dumps({"epoch": k, "seconds": 0.0, "test_accuracy": 0.0}), flush=True)
            continue
        order = orders[k]
        t0 = time.perf_counter()
        for i in range(len(order) // B):
            idx = order[i * B:(i + 1) * B]
            train(xtr[idx], eye[ytr[idx]])
        jax.block_until_ready(model.layers[0].nn.weight.get())
        sec = time.perf_counter() - t0
        hits = _hits(model, xte, yte, B)
        print(json.dumps({"epoch": k, "seconds": sec, "test_accuracy": hits / len(xte)}), flush=True)


def main() -> None:
    """``step CONFIG IN OUT`` or ``serve CONFIG DATA`` (module docstring)."""
    mode, cfg_path = sys.argv[1], sys.argv[2]
    with open(cfg_path) as f:
        cfg = json.load(f)
    if cfg.get("x64"):
        jax.config.update("jax_enable_x64", True)
    if mode == "step":
        _step(cfg, sys.argv[3], sys.argv[4])
    elif mode == "serve":
        _serve(cfg, sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}: step or serve")


if __name__ == "__main__":
    main()
