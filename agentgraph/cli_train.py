"""``agentgraph train``: its arguments and its run — in one process, or as one process of many
(``--coordinator``): the multi-process flags are checked first, every process joins, checks that
the others run the same settings (:mod:`agentgraph.meta.multihost`) and watches their heartbeat,
then meta-trains (:func:`agentgraph.meta.train.train`).

Example:
    >>> import argparse
    >>> sub = argparse.ArgumentParser(prog="agentgraph").add_subparsers()
    >>> add_train(sub)
    >>> sub.choices["train"].parse_args(["c.yaml", "--peer-timeout", "30"]).peer_timeout
    30.0
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from agentgraph.cli_args import overrides, positive, seconds

__all__ = ["add_train"]


#: set in the environment of a supervised multi-process worker (:func:`_supervise`)
SUPERVISED = "AGENTGRAPH_SUPERVISED"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the worker gets SIGKILL when its supervisor dies (a killed process takes its worker along)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _pump(pipe: Any, stream: str) -> None:
    """Copy a child's output pipe to ``sys.<stream>`` (looked up each time: tests replace it)."""
    import os
    import sys

    while True:
        chunk = os.read(pipe.fileno(), 65536)
        if not chunk:
            return
        out = getattr(sys, stream)
        out.write(chunk.decode(errors="replace"))
        out.flush()


def _supervise(args: argparse.Namespace) -> int:
    """One process of a multi-process run: its work runs in a child process watched by this one,
    so that an abort inside JAX's coordination client (the service process 0 hosts went away, or
    refused this process) ends this process with a message and exit status
    :data:`~agentgraph.meta.multihost.PEER_EXIT` instead of a C++ abort. SIGINT/SIGTERM reach the
    child; the child dies with this process."""
    import os
    import signal
    import subprocess
    import sys

    from agentgraph.meta.multihost import PEER_EXIT

    cmd = [sys.executable, "-c", "import sys; from agentgraph.cli import main; sys.exit(main(sys.argv[1:]))", *args.argv]
    child = subprocess.Popen(cmd, env=dict(os.environ, **{SUPERVISED: "1"}), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    # the child's output goes on to this process's streams as it comes (progress bars included)
    pumps = [threading.Thread(target=_pump, args=(pipe, name), daemon=True)
             for pipe, name in ((child.stdout, "stdout"), (child.stderr, "stderr"))]
    for t in pumps:
        t.start()
    old = signal.signal(signal.SIGTERM, lambda *_: child.terminate()) if threading.current_thread() is threading.main_thread() else None
    try:
        while True:
            try:
                rc = child.wait()
                break
            except KeyboardInterrupt:  # the terminal's SIGINT reached the child too; wait for its clean stop
                continue
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
        for t in pumps:
            t.join(timeout=10)
    if rc >= 0:
        return rc
    sig = signal.Signals(-rc).name
    why = ("JAX's coordination client aborted: the coordination service that process 0 hosts went away (process 0 "
           "was killed or crashed) or refused this process (a --process-id given twice, or a process of another run "
           "on the same --coordinator port)") if -rc == signal.SIGABRT else f"the worker was killed by {sig}"
    print(f"agentgraph train: error: process {args.process_id} of {args.num_processes} stopped: {why}. The other "
          "processes stop too; the checkpoints process 0 wrote are intact: restart every process with --resume.",
          file=sys.stderr)
    return PEER_EXIT


def _train(args: argparse.Namespace) -> int:
    """``agentgraph train``: join the other processes (if any, each supervised: :func:`_supervise`),
    then :func:`_train_run`."""
    import os

    from agentgraph.errors import AgentGraphError
    from agentgraph.meta import multihost

    multihost.check_flags(args.coordinator, args.num_processes, args.process_id)
    if args.coordinator and not os.environ.get(SUPERVISED) and getattr(args, "argv", None) is not None:
        return _supervise(args)
    stop = None
    if args.coordinator:
        from agentgraph.meta.devices import init_distributed

        init_distributed(args.coordinator, args.num_processes, args.process_id, timeout_s=args.distributed_timeout,
                         heartbeat_s=args.peer_timeout)
        stop = multihost.start_heartbeat(args.peer_timeout)  # a peer that dies ends this process, clearly
    try:
        return _train_run(args, stop)
    except AgentGraphError:
        raise
    except Exception:
        if stop is not None and not stop.is_set():  # a collective failed: a peer died; the heartbeat says which
            time.sleep(args.peer_timeout + 5)
        raise
    finally:
        if stop is not None:
            multihost.finished()
            stop.set()


def _train_run(args: argparse.Namespace, stop: Any) -> int:
    """``agentgraph train`` once the processes (if several) have joined: the config, checked to be
    the same in every process, then meta-training."""
    from agentgraph.meta.config import load_config
    from agentgraph.meta.train import train

    ov = overrides(args.set)
    if args.seed is not None:
        ov["run.seed"] = args.seed
    if args.out_dir is not None:
        ov["run.out_dir"] = args.out_dir
    if args.meta_steps is not None:
        ov["meta.meta_steps"] = args.meta_steps
    cfg = load_config(args.config, ov)
    if stop is not None:
        import jax

        from agentgraph.meta.multihost import agree

        agree(cfg.model_dump(mode="json"), args.num_processes or jax.process_count(), args.distributed_timeout)
    res = train(cfg, resume=args.resume, progress=not args.no_progress, max_steps=args.max_steps)
    if res["steps"] == 0:
        return 0
    print(
        f"meta-steps run: {res['steps']}; meta-loss {res['first_meta_loss']:.4f} -> {res['last_meta_loss']:.4f}; "
        f"{res['seconds_per_step']:.3f} s/meta-step (first {res['first_step_seconds']:.1f} s incl. compile); "
        f"non-finite steps skipped: {res['bad_steps']}; checkpoint: {res['checkpoint'] or 'none (process 0 writes)'}"
    )
    return 0


def add_train(sub: Any) -> None:
    """The ``train`` command's arguments."""
    tr = sub.add_parser("train", help="meta-train a learned protocol from a YAML/TOML config",
                        description="Meta-train the protocol CONFIG describes (see examples/configs/). Writes "
                        "metrics.jsonl and checkpoints into run.out_dir.")
    tr.add_argument("config", help="YAML or TOML config file")
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in run.out_dir")
    tr.add_argument("--seed", type=int, default=None, help="override run.seed")
    tr.add_argument("--out-dir", default=None, help="override run.out_dir")
    tr.add_argument("--meta-steps", type=positive, default=None, help="override meta.meta_steps")
    tr.add_argument("--max-steps", type=positive, default=None, help="stop after this many meta-steps in this call")
    tr.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override any config field (repeatable)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                    help="multi-process run (jax.distributed): process 0's address and a free port, or 'auto' "
                         "(SLURM, TPU pods, JAX_COORDINATOR_ADDRESS ...); see docs/scaling.md")
    tr.add_argument("--num-processes", type=positive, default=None, help="processes in the run (with --coordinator)")
    tr.add_argument("--process-id", type=int, default=None, help="this process's index, 0 .. N-1 (with --coordinator)")
    tr.add_argument("--distributed-timeout", type=seconds, default=300.0,
                    help="seconds to wait for the coordinator and the other processes (default 300)")
    tr.add_argument("--peer-timeout", type=seconds, default=60.0,
                    help="multi-process: a process silent this many seconds is taken as dead and the others stop "
                         "with an error naming it (default 60)")
    tr.set_defaults(fn=_train)
