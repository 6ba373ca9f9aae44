"""A neural cellular automaton as an agent graph: a grid of cell agents joined to their neighbours
by delayed arrows, one shared update network (the learned part) trained by gradient through the
ticks to grow a 16×16 heart from a single seed cell and keep it, with the paper's sample pool (see
:mod:`agentgraph.models.nca`).

Run ``python examples/nca.py [--size 16] [--steps 1500] [--out docs/img/nca.png]``: trains, writes the
update network (``.npz``), the loss curve (``.json``) and a PNG of the pattern growing over time,
beyond the trained ticks.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
from tqdm import tqdm

from agentgraph import compile
from agentgraph.builders import grid
from agentgraph.plots import plot_frames
from agentgraph.models import nca

__all__ = ["main"]


def main(size: int = 16, steps: int = 1500, channels: int = 16, hidden: int = 64, ticks: tuple[int, int] = (40, 56),
         batch_size: int = 4, lr: float = 2e-3, pool_size: int = 32, out: str = "docs/img/nca.png",
         progress: bool = True) -> dict:
    """Train, then grow the pattern for twice the trained ticks; save the PNG (and the network
    beside it as ``.npz``). ``pool_size``: the sample pool that teaches persistence (0: none).
    Returns ``{"loss_first", "loss_last", "loss_at_2x", "loss_at_4x", "seconds"}`` (the loss of a
    fresh growth at twice and four times the last trained tick).

    Example:
        >>> import tempfile, os
        >>> r = main(size=8, steps=5, channels=8, hidden=16, ticks=(6, 8), pool_size=8,
        ...          out=os.path.join(tempfile.mkdtemp(), "n.png"), progress=False)
        >>> r["loss_last"] <= r["loss_first"]
        True
    """
    cell = nca.NCACell(channels, hidden)
    prog = compile(grid(size, size, cell))
    target = nca.heart(size)
    bar = tqdm(total=steps, desc="NCA", disable=not progress)

    def tick(i, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")

    t0 = time.perf_counter()
    params, losses = nca.train(prog, cell, target, steps=steps, batch_size=batch_size, ticks=ticks, lr=lr,
                               pool_size=pool_size, callback=tick)
    bar.close()
    seconds = time.perf_counter() - t0
    horizon = 4 * ticks[1]
    _, frames = nca.grow(params, prog, nca.seed(prog, 1, size, size), horizon, size, size)
    frames = np.asarray(frames[:, 0])
    shown = sorted({1, ticks[0] // 4, ticks[0] // 2, ticks[0], ticks[1], 2 * ticks[1], horizon})
    loss_2x = float(np.mean((frames[2 * ticks[1] - 1] - target) ** 2))
    loss_4x = float(np.mean((frames[-1] - target) ** 2))
    plot_frames(frames[[t - 1 for t in shown]], shown, out, target=target, losses=losses,
                title=f"NCA agent graph {size}×{size}: trained on ticks {ticks[0]}–{ticks[1]}, grown to {horizon}")
    np.savez(os.path.splitext(out)[0] + ".npz", **{k: np.asarray(v) for k, v in params.items()})
    result = {"loss_first": losses[0], "loss_last": losses[-1], "loss_at_2x": loss_2x, "loss_at_4x": loss_4x,
              "seconds": seconds}
    with open(os.path.splitext(out)[0] + ".json", "w") as f:  # the whole loss curve, for the record
        json.dump({**result, "size": size, "steps": steps, "channels": channels, "hidden": hidden, "ticks": list(ticks),
                   "batch_size": batch_size, "pool_size": pool_size, "lr": lr, "losses": losses}, f)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--pool", type=int, default=32)
    ap.add_argument("--out", default="docs/img/nca.png")
    a = ap.parse_args()
    print(main(size=a.size, steps=a.steps, hidden=a.hidden, pool_size=a.pool, out=a.out))
