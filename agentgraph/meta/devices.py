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
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from agentgraph.errors import AgentGraphError

__all__ = ["AXIS", "check_divisible", "device_mesh", "init_distributed", "mean_over_devices", "replicate", "split_over_devices", "to_host"]

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


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``tree`` (the same values in every process) as arrays replicated over the mesh — what the
    meta-step's outputs are, so its first call compiles the same program as every later one.

    Example:
        >>> import jax.numpy as jnp
        >>> replicate({"w": jnp.ones(2)}, device_mesh())["w"].sharding.is_fully_replicated
        True
    """
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda v: jax.make_array_from_process_local_data(sharding, np.asarray(v)), tree)


def to_host(tree: Any) -> Any:
    """NumPy copies of ``tree``'s (replicated) arrays, in every process — also where the arrays
    span devices of other processes (multi-host), which ``jax.device_get`` cannot fetch.

    Example:
        >>> import jax.numpy as jnp
        >>> to_host({"w": jnp.ones(2)})["w"].tolist()
        [1.0, 1.0]
    """
    def one(v):
        if isinstance(v, jax.Array) and not v.is_fully_addressable:
            return np.asarray(v.addressable_data(0))
        return np.asarray(v)

    return jax.tree.map(one, tree)


def init_distributed(coordinator: str, num_processes: int | None = None, process_id: int | None = None, *,
                     timeout_s: float = 300.0, heartbeat_s: float = 60.0) -> None:
    """Join a multi-process run (``jax.distributed``) before any JAX computation: afterwards
    :func:`device_mesh` spans every process's devices, and meta-training splits its batch over
    all of them (process 0 alone writes the run directory; docs/scaling.md).

    Args:
        coordinator: ``"HOST:PORT"`` of process 0 (which hosts the coordination service), or
            ``"auto"``: JAX's own detection (SLURM, Open MPI, TPU pod slices, Kubernetes, or the
            ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` variables).
        num_processes, process_id: this run's size and this process's index (not with ``auto``).
        timeout_s: how long to wait for the coordinator and the other processes. A process that
            is not connected by then stops with a message naming the coordinator — never a hang.
        heartbeat_s: the peer timeout of :func:`~agentgraph.meta.multihost.start_heartbeat`; JAX's
            own heartbeat (which aborts from C++) is set well past it.

    Raises:
        AgentGraphError: a malformed address or index, or (processes other than 0) a coordinator
            that does not answer within ``timeout_s``.

    Example:
        >>> try:
        ...     init_distributed("localhost", 2, 1)
        ... except AgentGraphError as e:
        ...     print(str(e).split(";")[0])
        --coordinator 'localhost' is not HOST:PORT
    """
    import os
    import socket
    import sys
    import threading
    import time

    if coordinator != "auto":
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise AgentGraphError(f"--coordinator {coordinator!r} is not HOST:PORT; e.g. 10.0.0.1:12345 (process 0's "
                                  "address and a free port), or 'auto' to let JAX read the cluster's environment.")
        if num_processes is None or process_id is None or num_processes < 1 or not 0 <= process_id < num_processes:
            raise AgentGraphError(f"--num-processes {num_processes} and --process-id {process_id}: give both, with "
                                  "0 <= process id < number of processes.")
        if process_id != 0:  # the coordinator must answer before JAX tries (JAX aborts the process on a timeout)
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    socket.create_connection((host, int(port)), timeout=min(5.0, timeout_s)).close()
                    break
                except OSError as e:
                    if time.monotonic() > deadline:
                        raise AgentGraphError(
                            f"The coordinator {coordinator} did not answer within {timeout_s:g} s ({e}); process "
                            f"{process_id} of {num_processes} gives up. Start process 0 (--process-id 0) with the same "
                            "--coordinator, check the address and port are reachable from here, or raise "
                            "--distributed-timeout.") from None
                    time.sleep(0.5)
    done = threading.Event()

    def watchdog():  # JAX's own timeout aborts with a C++ trace; say what happened first, then stop
        if not done.wait(timeout_s):
            sys.stderr.write(f"agentgraph: not all {num_processes or 'expected'} processes joined the coordinator "
                             f"{coordinator} within {timeout_s:g} s; stopping. Start every process with the same "
                             "--coordinator and --num-processes, or raise --distributed-timeout.\n")
            sys.stderr.flush()
            os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices talk across processes
    kw = {} if coordinator == "auto" else {"coordinator_address": coordinator, "num_processes": num_processes,
                                          "process_id": process_id}
    try:
        jax.distributed.initialize(**kw, initialization_timeout=int(timeout_s) + 30,
                                   heartbeat_timeout_seconds=int(2 * heartbeat_s) + 30)
    except (ValueError, RuntimeError) as e:
        done.set()
        if coordinator != "auto":
            raise
        raise AgentGraphError(
            "--coordinator auto found no cluster to read the coordinator, process count and process id from (no "
            "SLURM, Open MPI, TPU pod, Kubernetes, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID "
            f"variables) [{type(e).__name__}: {str(e)[:160]}]. Outside a cluster give --coordinator HOST:PORT with "
            "--num-processes and --process-id, or run without --coordinator.") from None
    done.set()
