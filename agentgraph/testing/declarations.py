"""Check a kind's :class:`~agentgraph.nodes.Linear` / :class:`~agentgraph.nodes.Outer` promises
(and that its ``scratch`` fields feed nothing but an ``Outer`` update).

The compiler believes what a kind declares about its maths and lowers dense blocks of it to
matrix products (:mod:`agentgraph.compiler.linear`); the interpreter only runs the kind's
functions. :func:`check_declarations` runs both on random states, messages and params and raises
if they differ — call it in the tests of any kind you give declarations to.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from agentgraph.errors import AgentGraphError
from agentgraph.nodes.base import Kind

__all__ = ["check_declarations"]


def _random_state(kind: Kind, rng) -> dict:
    return {f: jnp.asarray(rng.normal(size=spec.shape)) for f, spec in kind.fields.items()}


def _inputs(kind: Kind, sweep: str, params, rng) -> dict:
    out = {}
    for p, spec in kind.ports(sweep).items():
        v = jnp.asarray(rng.normal(size=(spec.size,)))
        d = kind.premaps(sweep).get(p)
        out[p] = kind.premap(params, sweep, p, v) if d is not None else v
    return out


def check_declarations(kind: Kind, params: Any, *, trials: int = 3, seed: int = 0, atol: float = 1e-5) -> int:
    """Evaluate every declaration of ``kind`` against its own functions; returns how many
    declarations were checked.

    Args:
        kind: the kind.
        params: its group's params (what the protocol passes; ``None`` if nothing).
        trials: random draws per declaration.
        seed: the draws' seed.
        atol: absolute tolerance (in the default dtype).

    Raises:
        AgentGraphError: naming the kind, the output or field and the largest difference.

    Example:
        >>> from agentgraph.nodes import Synapse
        >>> check_declarations(Synapse(), {"lr": 0.1})  # two linear outputs, one outer update, one scratch field
        4
    """
    rng = np.random.default_rng(seed)
    checked = 0
    for sweep in ("forward", "backward"):
        for o, lin in kind.linear(sweep).items():
            for _ in range(trials):
                st, inp = _random_state(kind, rng), _inputs(kind, sweep, params, rng)
                fn = kind.forward if sweep == "forward" else kind.backward
                raw = fn(params, st, inp)[1]
                got = jnp.asarray(raw[o] if isinstance(raw, dict) else raw)  # a bare array is {"out": ...}
                u = inp[lin.port] if lin.pre is None else lin.pre(params, inp[lin.port])
                want = st[lin.coef] * u
                _compare(kind, f"{sweep} output {o!r}", got, want, atol)
            checked += 1
    for field, dec in kind.outer_updates().items():
        for _ in range(trials):
            st = _random_state(kind, rng)
            if dec.pair is not None:  # both vectors are messages of the phase dec.phase
                msg = _inputs(kind, dec.phase, params, rng)
                got = jnp.asarray(kind.apply(dec.phase, params, st, msg)[2][field])
                m = msg[dec.port] if dec.message_map is None else dec.message_map(params, msg[dec.port])
                xs = msg[dec.pair] if dec.stored_map is None else dec.stored_map(params, msg[dec.pair])
                want = jnp.asarray(dec.scale(params)) * jnp.reshape(m, (-1,)) * jnp.reshape(xs, (-1,))
                if dec.decay is not None:
                    want = want + jnp.asarray(dec.decay(params)) * jnp.reshape(st[field], (-1,))
                _compare(kind, f"{dec.phase} update of {field!r}", jnp.reshape(got, (-1,)), want, atol)
                continue
            fwd = _inputs(kind, "forward", params, rng)
            st = {**st, **{f: v for f, v in kind.forward(params, st, fwd)[0].items() if kind.fields[f].per_example}}
            msg = _inputs(kind, "backward", params, rng)
            got = jnp.asarray(kind.backward(params, st, msg)[2][field])
            x = fwd[dec.stored_from]
            _compare(kind, f"stored field {dec.stored!r}", jnp.reshape(st[dec.stored], (-1,)), jnp.reshape(x, (-1,)), atol)
            m = msg[dec.port] if dec.message_map is None else dec.message_map(params, msg[dec.port])
            xs = st[dec.stored] if dec.stored_map is None else dec.stored_map(params, st[dec.stored])
            want = jnp.asarray(dec.scale(params)) * jnp.reshape(m, (-1,)) * jnp.reshape(xs, (-1,))
            if dec.decay is not None:
                want = want + jnp.asarray(dec.decay(params)) * jnp.reshape(st[field], (-1,))
            _compare(kind, f"update of {field!r}", jnp.reshape(got, (-1,)), want, atol)
        checked += 1
    for f, spec in kind.fields.items():
        if spec.scratch:
            _check_scratch(kind, f, params, rng, trials, atol)
            checked += 1
    return checked


def _check_scratch(kind: Kind, field: str, params, rng, trials: int, atol: float) -> None:
    """A scratch field is the stored field of an :class:`Outer` update, and nothing else the
    kind returns (outputs, other fields, other updates) depends on its value."""
    if not any(dec.pair is None and dec.stored == field for dec in kind.outer_updates().values()):
        raise AgentGraphError(
            f"Kind {kind.name!r}: field {field!r} is declared scratch but is no Outer update's stored field; "
            "only such a field may be scratch (drop scratch=True or declare the update in outer_updates()).")
    own = {f for f, dec in kind.outer_updates().items() if dec.pair is None and dec.stored == field}
    for sweep in ("forward", "backward"):
        fn = kind.forward if sweep == "forward" else kind.backward
        for _ in range(trials):
            st, inp = _random_state(kind, rng), _inputs(kind, sweep, params, rng)
            other = {**st, field: jnp.asarray(rng.normal(size=kind.fields[field].shape))}
            a, b = fn(params, st, inp), fn(params, other, inp)
            for i, part in enumerate(("state", "outputs", "updates")[:len(a)]):
                da, db = a[i], b[i]
                if not isinstance(da, dict):
                    da, db = {"out": da}, {"out": db}
                for name in da:
                    if (part == "state" and name == field and sweep == "backward") or (part == "updates" and name in own):
                        continue
                    try:
                        _compare(kind, f"{sweep} {part[:-1]} {name!r}", da[name], db[name], atol)
                    except AgentGraphError as e:
                        raise AgentGraphError(
                            f"Kind {kind.name!r}: its {sweep} {part[:-1]} {name!r} depends on the scratch field "
                            f"{field!r}, whose value between steps is unspecified (the compiler may never write it). "
                            "Drop scratch=True or make the function ignore the field.") from e


def _compare(kind: Kind, what: str, got, want, atol: float) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape or not np.allclose(got, want, atol=atol, rtol=0):
        diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("nan")
        raise AgentGraphError(
            f"Kind {kind.name!r}: its {what} is not what its declaration promises (largest "
            f"difference {diff:.3g}, shapes {got.shape} vs {want.shape}). Fix the kind's function or "
            "its linear()/outer_updates() declaration; the compiler lowers dense blocks by the "
            "declaration."
        )

