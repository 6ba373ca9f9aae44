"""Learned protocols that ship with agentgraph (small ``.npz`` files written by
:func:`agentgraph.meta.protocol_io.export_protocol`; how each was trained is in docs/results.md).

* ``digits``: MPLP meta-trained on the embedded scikit-learn digits, (64,10) sigmoid net, 10
  steps × batch 8 — what ``agentgraph demo`` runs.
* ``mnist``: MPLP meta-trained in the paper's MNIST setting (12×12, (144,50,10) sigmoid, 20
  steps × batch 8).
* ``sinusoid``: MPLP meta-trained in the paper's sinusoid setting ((1,20,20,1) ReLU, 5 steps ×
  batch 10).
"""

from __future__ import annotations

from importlib import resources

from agentgraph.errors import AgentGraphError

__all__ = ["NAMES", "available", "path"]

NAMES = ("digits", "mnist", "sinusoid")


def available() -> list[str]:
    """The shipped protocols present in this installation.

    Example:
        >>> set(available()) <= set(NAMES)
        True
    """
    return [n for n in NAMES if resources.files(__name__).joinpath(f"{n}.npz").is_file()]


def path(name: str) -> str:
    """The file of the shipped protocol ``name`` (one of :data:`NAMES`).

    Example:
        >>> path("digits").endswith("digits.npz") if "digits" in available() else True
        True
    """
    if name not in NAMES:
        raise AgentGraphError(f"Unknown pretrained protocol {name!r}; choose one of {NAMES} or pass a checkpoint path.")
    f = resources.files(__name__).joinpath(f"{name}.npz")
    if not f.is_file():
        raise AgentGraphError(f"The pretrained protocol {name!r} is not in this installation ({f}); shipped: {available()}.")
    return str(f)
