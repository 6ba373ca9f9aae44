"""The ``agentgraph`` command line.

``agentgraph demo`` lets a pretrained MPLP protocol train fresh networks on the embedded digits
against SGD and Adam; ``agentgraph gradcheck`` runs the gradient protocol (backprop written as
message passing) with the reference interpreter and checks every step against ``jax.grad`` +
SGD; ``train``, ``eval``, ``export`` and ``bench`` meta-train, evaluate, slim and time protocols.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from agentgraph.cli_args import overrides as _overrides
from agentgraph.cli_args import positive as _positive
from agentgraph.cli_args import rate as _rate
from agentgraph.cli_train import add_train as _add_train

__all__ = ["entry", "main"]


def _demo(args: argparse.Namespace) -> int:
    import os

    from agentgraph import pretrained
    from agentgraph.meta.config import parse_config
    from agentgraph.meta.context import make_context
    from agentgraph.meta.evaluate import evaluate
    from agentgraph.meta.protocol_io import load_protocol, read_checkpoint

    path = args.protocol if os.path.exists(args.protocol) else pretrained.path(args.protocol)
    _, header = read_checkpoint(path)
    data = header["config"]
    if data["data"]["task"] != "digits":  # a protocol trained elsewhere, run on the embedded digits
        sizes = data["net"].get("sizes") or [0]
        size = int(round(sizes[0] ** 0.5))
        if size * size != sizes[0] or size < 2 or sizes[-1] != 10:
            from agentgraph.errors import AgentGraphError

            raise AgentGraphError(
                f"--protocol {args.protocol!r} was trained on data.task {data['data']['task']!r} with net.sizes "
                f"{sizes}; the demo trains networks on the embedded 10-class digit images, which such a network "
                f"cannot take. Evaluate it on its own task with `agentgraph eval {args.protocol}` instead.")
        data = {**data, "data": {**data["data"], "task": "digits", "image_size": size, "path": None}}
    cfg = parse_config(data, f"(from {path!r})")
    ctx = make_context(cfg)
    learned, stats = load_protocol(path, ctx)
    demo = header.get("demo", {})
    sgd_lr = args.sgd_lr or demo.get("sgd_lr", 0.1)
    adam_lr = args.adam_lr or demo.get("adam_lr", 0.01)
    n = cfg.net
    name = ctx.protocol.name.upper() if ctx.protocol.name == "mplp" else ctx.protocol.name
    print(f"agentgraph demo: the pretrained {name} protocol {os.path.basename(path)!r} (meta-trained "
          f"{header.get('step', 0) + 1} meta-steps) trains fresh {tuple(n.sizes)} {n.activation} networks on the embedded "
          f"scikit-learn digits ({cfg.data.image_size}x{cfg.data.image_size}), {cfg.meta.inner_steps} steps of batch "
          f"{cfg.meta.batch}, " + ("with no gradient" if ctx.protocol.gradient_free else
                                   "WITH the gradient as an input (not a gradient-free protocol)")
          + f"; SGD (lr {sgd_lr:g}) and Adam (lr {adam_lr:g}) train the same networks "
          f"on the same batches. Test accuracy, mean ± std over {args.runs} runs:")
    t0 = time.perf_counter()
    res = evaluate(cfg, learned, stats, runs=args.runs, sgd_lr=sgd_lr, adam_lr=adam_lr, ctx=ctx)
    _print_table(res, args.runs)
    print(f"({time.perf_counter() - t0:.1f} s)")
    if args.plot:
        from agentgraph.plots import plot_curves

        plot_curves(res, args.plot, title=f"pretrained {name} vs SGD vs Adam, digits, {args.runs} fresh networks")
        print(f"plot written to {args.plot}")
    return 0


def _print_table(res: dict, runs: int) -> None:
    metric = res["metric"]
    pct = 100.0 if metric == "accuracy" else 1.0
    unit = " %" if metric == "accuracy" else ""
    name = res.get("rule", "protocol")
    print(f"{'step':>4}  {name.upper() if name == 'mplp' else name:>16}  {'SGD':>16}  {'Adam':>16}")
    for i in res["steps"]:
        cells = [f"{pct * res[n]['mean'][i]:.4g} ± {pct * res[n]['std'][i]:.3g}{unit}" for n in ("protocol", "sgd", "adam")]
        print(f"{i:>4}  " + "  ".join(f"{c:>16}" for c in cells))


def _gradcheck(args: argparse.Namespace) -> int:
    from agentgraph.builders import mlp, random_dag
    from agentgraph.interpreter import init_state, step
    from agentgraph.protocols import gradient
    from agentgraph.testing import oracle

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-2, 2, size=(args.batch, 2))
    y = np.stack([np.sin(x[:, 0]) * np.cos(x[:, 1]), 0.5 * x[:, 0] * x[:, 1]], axis=1)
    batch = {"x": x, "y": y}
    graphs = {
        "mlp (2,8,2) tanh": mlp([2, 8, 2], activation="tanh", loss="l2", init_std=0.5, seed=args.seed),
        "random DAG (2 in, 8 hidden, 2 out)": random_dag(
            2, 8, 2, edge_prob=0.5, activation="tanh", loss="l2", seed=args.seed
        ),
    }
    print("Gradient protocol (backprop as message passing), reference interpreter, float64.")
    print(f"Task: embedded 2-d regression, batch {args.batch}, lr {args.lr}, {args.steps} steps.\n")
    for title, g in graphs.items():
        print(f"{title}: {g}")
        state = init_state(g, args.batch)
        params = gradient.params(g, args.lr)
        t0 = time.perf_counter()
        worst = 0.0
        print(f"  {'step':>4}  {'loss':>10}  {'|MP - jax.grad SGD|':>20}")
        for i in range(args.steps):
            ref = oracle.sgd_reference(g, state, args.lr, batch) if i < args.check_steps else None
            r = step(g, state, params, batch)
            if ref is not None:
                dev = max(float(np.max(np.abs(r.state[a][f] - v))) for a, d in ref.items() for f, v in d.items())
                worst = max(worst, dev)
            state = r.state
            if i % max(1, args.steps // 10) == 0 or i == args.steps - 1:
                dev_s = f"{dev:.1e}" if ref is not None else "-"
                print(f"  {i:>4}  {r.loss:>10.5f}  {dev_s:>20}")
        print(f"  {time.perf_counter() - t0:.1f} s; largest deviation from jax.grad+SGD: {worst:.1e}\n")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from agentgraph.meta.checkpoints import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, config=args.config, overrides=_overrides(args.set), runs=args.runs,
                              sgd_lr=args.sgd_lr, adam_lr=args.adam_lr, remeasure=args.remeasure)
    if not res["gradient_free"]:
        print(f"note: protocol {res['rule']!r} receives gradients; it is not a gradient-free protocol.")
    print(f"{res['metric']} after each inner step, mean ± std over {args.runs} fresh networks "
          f"(SGD lr {res['sgd']['lr']}, Adam lr {res['adam']['lr']})")
    _print_table(res, args.runs)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
        print(f"wrote {args.out}")
    if args.plot:
        from agentgraph.plots import plot_curves

        plot_curves(res, args.plot, title=f"{args.checkpoint}: {args.runs} fresh networks")
        print(f"wrote {args.plot}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from agentgraph.meta.protocol_io import export_protocol

    demo = {k: v for k, v in (("sgd_lr", args.sgd_lr), ("adam_lr", args.adam_lr)) if v}
    export_protocol(args.checkpoint, args.out, metadata={"demo": demo} if demo else None)
    print(f"wrote {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from agentgraph.meta.config import load_config
    from agentgraph.meta.timing import time_meta_steps

    from agentgraph.errors_user import blame_user_code

    cfg = load_config(args.config, _overrides(args.set))
    with blame_user_code(cfg, "timing meta-steps"):
        res = {"config": args.config, **time_meta_steps(cfg, args.steps)}
    print(f"{args.config}: first meta-step (compile + run) {res['first_step_s']:.1f} s; median meta-step "
          f"{res['median_step_s']:.3f} s over {args.steps} on {res['device']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    return 0


def _add_demo(sub: Any) -> None:
    """The ``demo`` command's arguments."""
    demo = sub.add_parser(
        "demo",
        help="train fresh networks on embedded digits with a pretrained MPLP protocol vs SGD and Adam",
        description="Load a pretrained MPLP protocol shipped with agentgraph, let it train fresh random "
        "networks on the embedded scikit-learn digits with no gradient, train the same networks with SGD "
        "and Adam, print test accuracy after each inner step and write a plot.",
    )
    demo.add_argument("--protocol", default="digits", help="pretrained protocol name (digits, mnist) or a "
                      "checkpoint path (default digits)")
    demo.add_argument("--runs", type=_positive, default=100, help="fresh networks per method (default 100)")
    demo.add_argument("--plot", default="agentgraph-demo.png", help="PNG to write ('' for none; default "
                      "agentgraph-demo.png)")
    demo.add_argument("--sgd-lr", type=_rate, default=None, help="SGD learning rate (default: the tuned one stored "
                      "with the protocol)")
    demo.add_argument("--adam-lr", type=_rate, default=None, help="Adam learning rate (default: the tuned one stored "
                      "with the protocol)")
    demo.set_defaults(fn=_demo)


def _add_gradcheck(sub: Any) -> None:
    """The ``gradcheck`` command's arguments."""
    gc = sub.add_parser(
        "gradcheck",
        help="run the gradient protocol on built-in graphs and check it against jax.grad",
        description="Run backprop written as message passing (reference interpreter) on a "
        "built-in MLP and a random non-layered DAG, on an embedded regression task, and compare "
        "every step with jax.grad + SGD.",
    )
    gc.add_argument("--steps", type=_positive, default=40, help="inner steps (default 40)")
    gc.add_argument("--batch", type=_positive, default=16, help="inner batch size (default 16)")
    gc.add_argument("--lr", type=_rate, default=0.1, help="learning rate (default 0.1)")
    gc.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    gc.add_argument("--check-steps", type=_positive, default=5, help="steps checked against jax.grad (default 5)")
    gc.set_defaults(fn=_gradcheck)


def _add_export(sub: Any) -> None:
    """The ``export`` command's arguments."""
    ex = sub.add_parser("export", help="write only the learned protocol of a training checkpoint (small file)",
                        description="Copy the learned protocol and its measured stats (with the config) out of a training "
                        "checkpoint; the result loads with `agentgraph eval` and `agentgraph demo --protocol`.")
    ex.add_argument("checkpoint", help="a checkpoint written by `agentgraph train`")
    ex.add_argument("out", help="the .npz to write")
    ex.add_argument("--sgd-lr", type=_rate, default=None, help="store this SGD learning rate for the demo")
    ex.add_argument("--adam-lr", type=_rate, default=None, help="store this Adam learning rate for the demo")
    ex.set_defaults(fn=_export)


def _add_eval(sub: Any) -> None:
    """The ``eval`` command's arguments."""
    ev = sub.add_parser("eval", help="evaluate a checkpoint: its protocol vs SGD vs Adam on fresh networks",
                        description="Train fresh random networks with the checkpoint's protocol, SGD and Adam "
                        "(tuned learning rates unless given) and print mean ± std per inner step.")
    ev.add_argument("checkpoint", help="a checkpoint written by `agentgraph train`")
    ev.add_argument("--config", default=None, help="evaluate on this config's network/task (transfer); "
                    "default: the checkpoint's own")
    ev.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override config fields, e.g. "
                    "net.activation=step")
    ev.add_argument("--runs", type=_positive, default=100, help="evaluation runs (default 100)")
    ev.add_argument("--sgd-lr", type=_rate, default=None, help="fixed SGD learning rate (default: tuned)")
    ev.add_argument("--adam-lr", type=_rate, default=None, help="fixed Adam learning rate (default: tuned)")
    ev.add_argument("--remeasure", action="store_true",
                    help="re-measure the learners' input statistics on this network, as meta-training measured "
                    "them on its own, before evaluating (for transfer to networks of other sizes; nothing is learned)")
    ev.add_argument("--out", default=None, help="also write the results as JSON here")
    ev.add_argument("--plot", default=None, help="also draw the curves into this PNG")
    ev.set_defaults(fn=_eval)


def _add_bench(sub: Any) -> None:
    """The ``bench`` command's arguments."""
    be = sub.add_parser("bench", help="time meta-steps of a config (compile and median step)",
                        description="Compile the meta-step of CONFIG and time it.")
    be.add_argument("config", help="YAML or TOML config file")
    be.add_argument("--steps", type=_positive, default=5, help="timed meta-steps after the first (default 5)")
    be.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override config fields")
    be.add_argument("--out", default=None, help="write the figures as JSON here")
    be.set_defaults(fn=_bench)


def _add_show(sub: Any) -> None:
    """The ``show`` command: what a checkpoint holds."""
    ins = sub.add_parser("show", help="print what a checkpoint or exported protocol holds",
                         description="Print a checkpoint's step, protocol and settings, network and task, and its "
                         "arrays (learned protocol, stats, optimiser state, prior) with shapes and statistics.")
    ins.add_argument("checkpoint", help="a checkpoint written by `agentgraph train` or `agentgraph export`")

    def run(args: argparse.Namespace) -> int:
        from agentgraph.meta.protocol_io import describe_checkpoint

        print(describe_checkpoint(args.checkpoint))
        return 0

    ins.set_defaults(fn=run)


def _add_plot(sub: Any) -> None:
    """The ``plot`` command: a meta-training run's curves."""
    pl = sub.add_parser("plot", help="plot meta-training runs (meta-loss and evaluations) from their metrics.jsonl",
                        description="Draw the meta-loss (and held-out / hint losses) against meta-steps, and the "
                        "periodic evaluations against meta-steps and CPU minutes, of the runs in RUN_DIR... "
                        "(overlaid) into a PNG or SVG.")
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="runs' out_dirs (each holds metrics.jsonl)")
    pl.add_argument("--out", default=None, help="PNG or SVG to write (default RUN_DIR/run.png of the first)")

    def run(args: argparse.Namespace) -> int:
        from agentgraph.plots import plot_run

        print(f"wrote {plot_run(args.run_dirs, args.out or os.path.join(args.run_dirs[0], 'run.png'))}")
        return 0

    pl.set_defaults(fn=run)


def _add_draw(sub: Any) -> None:
    """The ``draw`` command: a config's network as an agent graph."""
    dr = sub.add_parser("draw", help="draw the agent graph of a config's network",
                        description="Build the network of CONFIG (with the protocol's agents on it) and draw its agents "
                        "by kind and forward wave and its arrows by type into a PNG or SVG (large graphs collapsed "
                        "by (kind, group)).")
    dr.add_argument("config", help="a YAML/TOML config")
    dr.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override config fields, e.g. net.sizes=[4,3,2]")
    dr.add_argument("--out", default="graph.png", help="PNG or SVG to write (default graph.png)")
    dr.add_argument("--max-agents", type=int, default=200,
                    help="draw larger graphs collapsed, one box per (kind, group) (default 200)")

    def run(args: argparse.Namespace) -> int:
        from agentgraph.meta.config import load_config
        from agentgraph.plots import draw_graph

        cfg = load_config(args.config, _overrides(args.set))
        graph = cfg.make_protocol().network(cfg.net.build(cfg.run.seed)).graph
        print(f"wrote {draw_graph(graph, args.out, max_agents=args.max_agents)}")
        return 0

    dr.set_defaults(fn=run)


def _parser() -> argparse.ArgumentParser:
    """The ``agentgraph`` command line: one sub-command per ``_add_*`` function."""
    parser = argparse.ArgumentParser(
        prog="agentgraph", description="Graph-of-agents simulation engine for learned learning rules."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_demo, _add_gradcheck, _add_export, _add_train, _add_eval, _add_bench, _add_show, _add_plot,
                _add_draw):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentgraph`` command.

    Example:
        >>> main(["gradcheck", "--steps", "2", "--check-steps", "1"])  # doctest: +ELLIPSIS
        Gradient protocol ...
        0
    """
    args = _parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # a supervised train re-runs them
    from agentgraph.errors import AgentGraphError

    try:
        return args.fn(args)
    except AgentGraphError as e:
        print(f"agentgraph {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file named on the command line (--out, --plot, export's OUT) could not be written
        from agentgraph.errors import io_error

        where = e.filename if e.filename is not None else "(a file)"
        print(f"agentgraph {args.command}: error: {io_error(str(where), e, 'use')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"agentgraph {args.command}: interrupted; checkpoints written so far are intact (resume with --resume).",
              file=sys.stderr)
        return 130


def entry() -> int:
    """The ``agentgraph`` console script: restarts the process with transparent huge pages for
    XLA:CPU's buffers (:mod:`agentgraph.runtime`; ``AGENTGRAPH_HUGEPAGES=0`` turns it off), then
    runs :func:`main`."""
    from agentgraph.runtime import reexec_with_hugepages

    reexec_with_hugepages()
    return main()


if __name__ == "__main__":
    sys.exit(entry())
