"""Running inner steps one after another, and what the meta-gradient keeps of them.

Shared by meta-training's inner loop (:mod:`agentgraph.meta.loop`) and by protocols that unroll
steps themselves (MPLP's imitation warm start): an :class:`Unroll` says how — one ``lax.scan`` or
steps written out, and how each step is rematerialised in the gradient (config ``meta.remat``,
``meta.inner_loop``). Sits below ``protocols`` and ``meta``; imports neither.

Example:
    >>> import jax.numpy as jnp
    >>> body = lambda s, x: (s + x, s * x)
    >>> s, outs = run_steps(remat(body, Unroll().remat), jnp.zeros(()), jnp.arange(3.0), unrolled=False)
    >>> float(s), outs.tolist()
    (3.0, [0.0, 0.0, 2.0])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["REMAT", "Unroll", "remat", "run_steps"]

#: How each inner step is rematerialised in the meta-gradient (config ``meta.remat``):
#: ``full`` (``True``) keeps only the state between steps and recomputes each step's insides in
#: the backward pass; ``learner`` also keeps values the kinds name ``mlp_pre1`` (MPLP's learners'
#: second-layer pre-activations); ``dots`` keeps every matmul result; ``none`` (``False``) keeps
#: everything. Measured in docs/performance.md.
REMAT = {"full": "full", True: "full", "learner": "learner", "dots": "dots", "none": "none", False: "none"}


class Unroll(NamedTuple):
    """How inner steps are unrolled (config ``meta.remat`` and ``meta.inner_loop``).

    Attributes:
        remat: a key of :data:`REMAT`.
        inner_loop: ``"scan"`` (one ``lax.scan``) or ``"unrolled"`` (steps written out).

    Example:
        >>> Unroll(remat="none", inner_loop="unrolled").unrolled
        True
    """

    remat: bool | Literal["full", "learner", "dots", "none"] = True
    inner_loop: Literal["scan", "unrolled"] = "scan"

    @property
    def unrolled(self) -> bool:
        """The steps are written out one after another (not one ``lax.scan``)."""
        return self.inner_loop == "unrolled"


def remat(body: Callable, mode: Any) -> Callable:
    """``body`` wrapped in ``jax.checkpoint`` as ``meta.remat`` says (:data:`REMAT`).

    Example:
        >>> remat(lambda s, x: (s, x), "none")(1, 2)
        (1, 2)
    """
    mode = REMAT[mode]
    if mode == "full":
        return jax.checkpoint(body)
    if mode == "learner":
        return jax.checkpoint(body, policy=jax.checkpoint_policies.save_only_these_names("mlp_pre1"))
    if mode == "dots":
        return jax.checkpoint(body, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
    return body


def run_steps(body: Callable, state: Any, batches: Any, unrolled: bool) -> tuple[Any, Any]:
    """``lax.scan(body, state, batches)`` (``batches``: a pytree of ``[K, ...]`` arrays), or the
    same ``K`` steps written out one after another (``unrolled``; same numbers). Returns
    ``(final_state, outputs stacked [K, ...])``.

    Example:
        >>> import jax.numpy as jnp
        >>> run_steps(lambda s, x: (s + x, x), 0.0, jnp.ones(2), unrolled=True)[0]
        Array(2., dtype=float32)
    """
    if not unrolled:
        return jax.lax.scan(body, state, batches)
    outs = []
    for i in range(jax.tree.leaves(batches)[0].shape[0]):
        state, out = body(state, jax.tree.map(lambda v: v[i], batches))
        outs.append(out)
    return state, jax.tree.map(lambda *v: jnp.stack(v), *outs)
