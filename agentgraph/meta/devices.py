"""Devices: one code path from one CPU to many accelerators.

Meta-training splits one axis over a :class:`jax.sharding.Mesh` of every device JAX sees (all
local devices; with :func:`jax.distributed.initialize`, every process's): the **outer batch of
tasks** for the gradient meta-optimiser, the **population** for evolution strategies. The
meta-parameters, the protocol's stats and the compiled program are replicated. The per-device
code is the single-device code, written once and wrapped in :func:`jax.shard_map`; a mesh of one
device runs the same program, so the same config runs unchanged on 1 device and on N and gives
the same numbers up to floating-point reassociation (tested with forced host devices).

Example:
    >>> mesh = device_mesh()
    >>> mesh.axis_names, mesh.size >= 1
    (('batch',), True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from agentgraph.errors import AgentGraphError

__all__ = ["AXIS", "check_divisible", "device_mesh", "mean_over_devices", "split_over_devices"]

#: The mesh axis the batch (tasks or candidates) is split along.
AXIS = "batch"


def device_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh (:data:`AXIS`) over ``devices`` (default: ``jax.devices()``, every device
    of every process).

    Example:
        >>> device_mesh(jax.devices()[:1]).size
        1
    """
    return Mesh(np.array(devices if devices is not None else jax.devices()), (AXIS,))


def check_divisible(n: int, mesh: Mesh, what: str, field: str) -> None:
    """Raise unless ``n`` items split evenly over the mesh's devices.

    Raises:
        AgentGraphError: naming ``field``, ``n``, the device count and the nearest sizes that work.

    Example:
        >>> check_divisible(8, device_mesh(jax.devices()[:1]), "tasks", "meta.outer_batch")
    """
    d = mesh.size
    if n % d:
        lo, hi = max(d, n - n % d), n - n % d + d
        raise AgentGraphError(
            f"{field} = {n} {what} cannot be split evenly over {d} devices: set it to a multiple of {d} "
            f"(e.g. {lo} or {hi}), or run on fewer devices (JAX sees {d}).")


def mean_over_devices(fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """``fn(replicated, batched) -> pytree`` (a mean over ``batched``'s leading axis) run on each
    device's share of ``batched`` and averaged over devices (``lax.pmean``): with equal shares,
    the mean over the whole batch.

    Args:
        fn: ``(replicated, batched) -> pytree of arrays``; ``replicated`` is any pytree every
            device gets whole, ``batched`` a pytree whose leaves share a leading axis of size
            divisible by ``mesh.size``.
        mesh: from :func:`device_mesh`.

    Example:
        >>> import jax.numpy as jnp
        >>> f = mean_over_devices(lambda c, x: (x * c).mean(), device_mesh())
        >>> float(jax.jit(f)(2.0, jnp.arange(4.0)))
        3.0
    """

    def local(replicated, batched):
        return jax.lax.pmean(fn(replicated, batched), AXIS)

    # check_vma off: gradients taken inside ``fn`` stay per device (no implicit psum) and the
    # pmean above is the only collective
    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(), check_vma=False)


def split_over_devices(fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """``fn(batched, replicated) -> pytree`` whose outputs keep ``batched``'s leading axis, run on
    each device's share of ``batched`` and gathered back along that axis (an ES population).

    Example:
        >>> import jax.numpy as jnp
        >>> f = split_over_devices(lambda x, c: x + c, device_mesh())
        >>> jax.jit(f)(jnp.arange(4.0), 1.0).tolist()
        [1.0, 2.0, 3.0, 4.0]
    """
    return jax.shard_map(fn, mesh=mesh, in_specs=(P(AXIS), P()), out_specs=P(AXIS), check_vma=False)
