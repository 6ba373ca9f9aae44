"""Multi-process runs that agree, and that end together: the checks every process of an
``agentgraph train --coordinator ...`` run makes after joining (:func:`~agentgraph.meta.devices.init_distributed`).

* **Flags** (:func:`check_flags`): ``--num-processes``/``--process-id`` without
  ``--coordinator`` (a single-process run that believes it is one of many), or with ``auto``
  (the cluster gives them), are refused before anything starts.
* **Same global settings** (:func:`agree`): every process publishes its validated config (less
  ``run.out_dir``: only process 0 writes) and its ``--num-processes`` through the coordinator's
  key-value store, and compares them with process 0's. A process started with another config,
  another process count or a process id already taken stops — each with a message naming the
  process, the flag or the differing fields — instead of two runs that each believe they are
  right.
* **A peer that dies** (:func:`start_heartbeat`): each process beats every second in the
  key-value store and watches the others'. When a peer's beat stops for ``timeout_s`` (or the
  coordinator, process 0, stops answering) the survivor prints which process went silent and how
  to resume, and exits with status 4 — before JAX's own heartbeat (set longer) would abort it from
  C++ with a stack trace.

Example:
    >>> check_flags(None, None, None)  # a single-process run
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from typing import Any

from agentgraph.errors import AgentGraphError

__all__ = ["PEER_EXIT", "agree", "check_flags", "finished", "settings_digest", "start_heartbeat"]

#: The exit status of a process that stops because a peer died.
PEER_EXIT = 4


def check_flags(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Refuse multi-process flags that cannot describe a run (module docstring).

    Raises:
        AgentGraphError: naming the flags and the fix.

    Example:
        >>> try:
        ...     check_flags(None, 2, 0)
        ... except AgentGraphError as e:
        ...     print(str(e).split(":")[0])
        --num-processes 2 and --process-id 0 were given without --coordinator
    """
    given = [f"--num-processes {num_processes}" if num_processes is not None else "",
             f"--process-id {process_id}" if process_id is not None else ""]
    given = " and ".join(g for g in given if g)
    if coordinator is None and given:
        raise AgentGraphError(
            f"{given} {'were' if ' and ' in given else 'was'} given without --coordinator: this would run as a single "
            "process that believes it is one of many. Add --coordinator HOST:PORT (process 0's address and a free "
            "port) to every process, or remove the flag(s) for a single-process run.")
    if coordinator == "auto" and given:
        raise AgentGraphError(
            f"--coordinator auto reads the process count and this process's id from the cluster; {given} would be "
            "ignored. Remove them, or give --coordinator HOST:PORT with --num-processes and --process-id.")


def settings_digest(settings: dict[str, Any]) -> str:
    """A short hash of ``settings`` (JSON with sorted keys).

    Example:
        >>> settings_digest({"a": 1}) == settings_digest({"a": 1}) != settings_digest({"a": 2})
        True
    """
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _client() -> Any:
    from jax._src import distributed

    return distributed.global_state.client


def agree(config: dict[str, Any], num_processes: int, timeout_s: float = 300.0) -> None:
    """Check that every process of the run has the same global settings (module docstring):
    ``config`` (the validated config as JSON, ``run.out_dir`` left out) and ``num_processes``.
    A no-op in a single-process run.

    Raises:
        AgentGraphError: a duplicate process id, a different process count, or a different
            config (every differing field with both values), naming the processes; or a peer
            that does not publish its settings within ``timeout_s``.
    """
    import jax

    client = _client()
    if client is None or jax.process_count() == 1:
        return
    me = jax.process_index()
    config = {k: v for k, v in config.items()}
    config["run"] = {k: v for k, v in config.get("run", {}).items() if k != "out_dir"}
    mine = {"num_processes": num_processes, "digest": settings_digest(config), "config": config, "pid": os.getpid()}
    try:
        client.key_value_set(f"agentgraph/settings/{me}", json.dumps(mine, default=str))
    except Exception as e:  # noqa: BLE001 - the store refuses a second writer of the same key
        raise AgentGraphError(
            f"Another process already joined as process {me} (--process-id {me} given twice?): give every process a "
            f"different --process-id, 0 .. {num_processes - 1}. [{type(e).__name__}: {str(e)[:120]}]") from None
    ms = max(1000, int(timeout_s * 1000))
    for other in range(jax.process_count()):
        if other == me:
            continue
        try:
            theirs = json.loads(client.blocking_key_value_get(f"agentgraph/settings/{other}", ms))
        except Exception as e:  # noqa: BLE001 - a timeout of the store
            raise AgentGraphError(
                f"Process {other} did not publish its settings within {timeout_s:g} s; process {me} gives up. Start "
                "every process with the same config and --coordinator, or raise --distributed-timeout. "
                f"[{type(e).__name__}: {str(e)[:120]}]") from None
        if theirs["num_processes"] != num_processes:
            raise AgentGraphError(
                f"Process {other} was started with --num-processes {theirs['num_processes']}, process {me} with "
                f"{num_processes}: give every process the same --num-processes.")
        if theirs["digest"] != mine["digest"]:
            from agentgraph.rundir import config_changes

            diff = config_changes(theirs["config"], config)
            lines = "\n".join(f"  {k}: process {other} {a!r}, process {me} {b!r}" for k, a, b in diff[:20])
            raise AgentGraphError(
                f"Process {other} and process {me} were started with different settings:\n{lines}\nEvery process of "
                "a run must use the same config and --set flags (only --out-dir may differ).")


def start_heartbeat(timeout_s: float = 60.0, every_s: float = 1.0) -> threading.Event:
    """Beat in the coordinator's key-value store and watch the other processes' beats from a
    daemon thread; when one is silent for ``timeout_s`` (or the store stops answering that
    long), print which process and how to resume, and end this process with status
    :data:`PEER_EXIT`. Returns an event that stops the thread (set it before a normal exit:
    the peers finishing first is not a death). A no-op thread in a single-process run.

    Example:
        >>> start_heartbeat(30.0).set()  # single process: nothing to watch
    """
    import jax

    stop = threading.Event()
    client = _client()
    if client is None or jax.process_count() == 1:
        return stop
    me, n = jax.process_index(), jax.process_count()

    def die(why: str) -> None:
        if stop.is_set():
            return
        sys.stderr.write(f"agentgraph train: error: {why} Process {me} stops too. Checkpoints process 0 wrote are "
                         "intact: restart every process with --resume.\n")
        sys.stderr.flush()
        os._exit(PEER_EXIT)

    def loop() -> None:
        seen = {p: (None, time.monotonic()) for p in range(n) if p != me}
        failing_since = None
        beat = 0
        while not stop.wait(every_s):
            now = time.monotonic()
            try:
                beat += 1
                client.key_value_set(f"agentgraph/beat/{me}", str(beat), allow_overwrite=True)
                for p in seen:
                    try:
                        v = client.key_value_try_get(f"agentgraph/beat/{p}")
                    except Exception:  # noqa: BLE001 - not written yet
                        v = None
                    if v != seen[p][0]:
                        seen[p] = (v, now)
                    elif now - seen[p][1] > timeout_s and not stop.is_set():
                        try:
                            if client.key_value_try_get(f"agentgraph/done/{p}"):
                                continue  # it finished normally
                        except Exception:  # noqa: BLE001 - no such key: it did not finish
                            pass
                        die(f"process {p} of {n} stopped answering (no heartbeat for {timeout_s:g} s: killed, crashed "
                            "or its host is gone).")
                failing_since = None
            except Exception as e:  # noqa: BLE001 - the coordinator's store is gone
                failing_since = failing_since or now
                if now - failing_since > min(timeout_s, 10.0) and not stop.is_set():
                    die(f"the coordinator (process 0) stopped answering ({type(e).__name__}: {str(e)[:100]}).")

    threading.Thread(target=loop, name="agentgraph-heartbeat", daemon=True).start()
    return stop


def finished() -> None:
    """Tell the other processes that this one ends normally (its heartbeat stops on purpose); a
    no-op in a single-process run.

    Example:
        >>> finished()
    """
    import jax

    client = _client()
    if client is not None and jax.process_count() > 1:
        try:
            client.key_value_set(f"agentgraph/done/{jax.process_index()}", "1", allow_overwrite=True)
        except Exception:  # noqa: BLE001 - the coordinator has already gone: nothing to tell
            pass
