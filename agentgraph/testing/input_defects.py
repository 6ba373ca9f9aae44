"""The malformed-graph catalogue, part 2: defects in what a step is given — a bad batch (NaN/inf,
missing key, wrong shape, not numeric), a bad state passed to ``step``, a bad batch size, bad
``params``.

Each builder ``(draw, base, variant) -> Malformed`` breaks one input of a valid ``base``
:class:`~agentgraph.testing.cases.Case`; :data:`INPUT_DEFECTS` lists them with their variants,
and :func:`~agentgraph.testing.malformed.malformed_graphs` draws from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from agentgraph.testing._case_edits import is_test_agent, kind_named, with_input
from agentgraph.testing.cases import Case, Malformed

__all__ = ["INPUT_DEFECTS"]


def _bad_batch(draw: Any, base: Case, variant: str) -> Malformed:
    base, inputs = with_input(draw, base)
    G = base.graph
    x = np.array(base.batch["x"], dtype=np.float64)
    B, cols = x.shape
    if variant in ("nan", "inf"):
        n = draw(st.sampled_from(inputs))
        x[draw(st.integers(0, B - 1)), G.nodes[n]["slot"]] = np.nan if variant == "nan" else np.inf
        batch: Any = {"x": x}
        culprits = (repr(n),)
    elif variant == "missing key":
        batch = {"y": x}
        culprits = (repr(inputs[0]),)  # the first agent (in declaration order) that reads it
    elif variant == "rows":
        batch = {"x": np.zeros((B + draw(st.integers(1, 2)), cols))}
        culprits = ("batch['x']",)
    elif variant == "ndim":
        batch = {"x": draw(st.sampled_from([np.zeros(cols), np.zeros((B, cols, 1, 1)), np.float64(1.0)]))}
        culprits = ("batch['x']",)
    else:
        batch = {"x": np.full((B, cols), "a", dtype=object)}
        culprits = ("batch['x']",)
    return Malformed(
        "bad_batch", variant, f"batch['x'] is bad: {variant}", dataclasses.replace(base, batch=batch), base, culprits,
    )


#: Per-example fields a step overwrites before reading them (NaN there is harmless).
_OVERWRITTEN = frozenset({"in_x", "in_a", "in_b", "bin_m", "bin_a", "bin_b", "x", "h"})


def _bad_step_state(draw: Any, base: Case, variant: str) -> Malformed:
    G = base.graph
    agents = [n for n in G.nodes if is_test_agent(G, n)]
    if variant.startswith("first agent"):
        n = agents[0]  # the agent whose per-example fields define the batch size
    else:
        # not the first agent in declaration order: the batch size is read from the first one
        n = draw(st.sampled_from(agents[1:]))
    kind = kind_named(G.nodes[n]["kind"])
    per_example = [x for x in kind.fields if kind.fields[x].per_example]  # declaration order
    if variant == "nan":  # fields the step reads before overwriting them
        f = draw(st.sampled_from(sorted(f for f in kind.fields if f not in _OVERWRITTEN)))
    else:
        f = draw(st.sampled_from(sorted(kind.fields)))

    def edit(state: dict) -> dict:
        state = {k: dict(v) for k, v in state.items()}
        if variant == "missing agent":
            del state[n]
        elif variant == "missing field":
            del state[n][f]
        elif variant == "extra field":
            state[n]["bogus"] = np.zeros(())
        elif variant == "shape":
            state[n][f] = np.zeros((*np.shape(state[n][f]), 2))
        elif variant == "batch rows":
            g = per_example[0]
            state[n][g] = np.zeros((np.shape(state[n][g])[0] + 1, *kind.fields[g].shape))
        elif variant == "nan":
            state[n][f] = np.full(np.shape(state[n][f]), np.nan)
        elif variant == "first agent: leading extra field":
            state[n] = {"bogus": np.zeros(()), **state[n]}
        else:  # "first agent: scalar per-example field"
            state[n][per_example[0]] = np.float64(0.0)
        return state

    return Malformed(
        "bad_step_state", variant, f"the state passed to step is bad at agent {n!r} ({variant}, field {f!r})",
        dataclasses.replace(base, state_edit=edit), base, (repr(n),),
    )


def _bad_batch_size(draw: Any, base: Case, variant: str) -> Malformed:
    size = {"0": 0, "-1": -1, "str": "two", "None": None}[variant]
    return Malformed(
        "bad_batch_size", variant, f"init_state with batch_size={size!r}",
        dataclasses.replace(base, batch_size=size), base, (),
    )


def _bad_params(draw: Any, base: Case, variant: str) -> Malformed:
    params = {"str": "lr", "int": 5, "list": [1.0]}[variant]
    return Malformed(
        "bad_params", variant, f"step with params={params!r}", dataclasses.replace(base, params=params), base, (),
    )


#: ``{category: (builder, variants)}``: the step-input defects, in catalogue order.
INPUT_DEFECTS: dict[str, tuple[Callable[[Any, Case, str], Malformed], tuple[str, ...]]] = {
    "bad_batch": (_bad_batch, ("nan", "inf", "missing key", "rows", "ndim", "non-numeric")),
    "bad_step_state": (_bad_step_state, (
        "missing agent", "missing field", "extra field", "shape", "batch rows", "nan",
        "first agent: leading extra field", "first agent: scalar per-example field",
    )),
    "bad_batch_size": (_bad_batch_size, ("0", "-1", "str", "None")),
    "bad_params": (_bad_params, ("str", "int", "list")),
}
