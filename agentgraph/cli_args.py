"""The command line's argument types and ``--set`` parsing, shared by its commands
(:mod:`agentgraph.cli`, :mod:`agentgraph.cli_train`).

Example:
    >>> positive("3"), overrides(["meta.batch=4", "net.sizes=[4, 2]"])
    (3, {'meta.batch': 4, 'net.sizes': [4, 2]})
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["overrides", "positive", "positive_float", "rate", "seconds"]


def positive(text: str) -> int:
    """argparse type: a positive integer (``--runs``, ``--max-steps``, ``--steps``)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not positive: give 1 or more")
    return v


def positive_float(what: str):
    """argparse type: a positive finite float (``what`` names it in the error)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (v > 0 and v != float("inf")):
            raise argparse.ArgumentTypeError(f"{v} is not a positive finite {what}")
        return v

    return parse


#: argparse types: a learning rate, a number of seconds.
rate = positive_float("learning rate")
seconds = positive_float("number of seconds")


def overrides(pairs: Sequence[str] | None) -> dict:
    """``["meta.steps=3", "run.seed=1"]`` → ``{"meta.steps": 3, "run.seed": 1}`` (values parsed
    as YAML scalars/lists)."""
    from agentgraph.errors import AgentGraphError
    from agentgraph.meta.config import read_yaml

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise AgentGraphError(f"--set {pair!r}: expected FIELD=VALUE, e.g. --set meta.meta_steps=100")
        k, v = pair.split("=", 1)
        out[k.strip()] = read_yaml(v, f"--set {pair!r}")
    return out
