"""What meta-training carries from one meta-step to the next, and what a checkpoint says it holds.

Example:
    >>> import jax.numpy as jnp
    >>> ts = TrainState({"protocol": {"w": jnp.zeros(2)}}, {}, None, {})
    >>> ts.trainable["protocol"]["w"].shape, FORMAT
    ((2,), 'agentgraph-train-2')
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["FORMAT", "LOSS_BOUND", "NON_FINITE", "PARAM_BOUND", "TAKEN", "TrainState"]

#: The format name training checkpoints and exported protocols carry in their metadata.
FORMAT = "agentgraph-train-2"

#: A meta-step's status: its update was taken, or why not.
TAKEN, NON_FINITE, LOSS_BOUND, PARAM_BOUND = 0, 1, 2, 3


class TrainState(NamedTuple):
    """Everything meta-training carries from one meta-step to the next (a pytree).

    Attributes:
        trainable: what the meta-optimiser changes: ``{"protocol": learned}`` and, with
            ``meta.maml``, ``"prior"``: learned initial weights ``{kind: {field: [N, ...]}}``.
        stats: the protocol's measured, frozen quantities (``Protocol.calibrate``).
        opt_state: the meta-optimiser's state (Adam's moments, or the ES strategy's state).
        pool: start weights of the inner runs, ``{kind: {field: [P, N, ...]}}``.
    """

    trainable: dict
    stats: Any
    opt_state: Any
    pool: dict
