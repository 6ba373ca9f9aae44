"""``python -m agentgraph.data fetch mnist``: fill the dataset cache."""

from __future__ import annotations

import argparse
import sys

from agentgraph.data.fetch import fetch_mnist


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agentgraph.data", description="Fetch datasets into the cache.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download a dataset into the cache")
    f.add_argument("name", choices=["mnist"])
    f.add_argument("--cache-dir", default=None, help="cache directory (default $AGENTGRAPH_DATA or ~/.cache/agentgraph)")
    args = ap.parse_args(argv)
    path = fetch_mnist(args.cache_dir)
    print(f"cached MNIST at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
