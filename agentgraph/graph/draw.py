"""Drawing an agent graph (matplotlib, off-screen, PNG or SVG by the file's extension).

:func:`draw_graph` (also :meth:`AgentGraph.draw <agentgraph.graph.AgentGraph.draw>`) lays agents
out by their **forward wave** — the topological generation over the non-delayed forward arrows,
i.e. the order the engine runs them in — left to right, fills them by kind and rings them by
group (the parameter-sharing key). Arrows are
coloured by type (forward blue, backward orange, other types grey), delayed arrows dashed,
parallel arrows drawn once with their count; agents with self-loop arrows (reflexive, or a
self-loop phase's type) get a red ring.

A graph with more than ``max_agents`` agents is drawn **collapsed by group**: one box per
(kind, group) — e.g. ``synapse:0`` with its 7,200 agents — placed at the group's first forward
wave, joined by one arrow per (type, delayed) with the number of arrows it stands for, so a
per-scalar (144, 50, 10) network reads as the layered network it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agentgraph.graph.waves import generations

if TYPE_CHECKING:
    from agentgraph.graph.agent_graph import AgentGraph

__all__ = ["draw_graph"]

_ARROW_COLOR = {"forward": "tab:blue", "backward": "tab:orange"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_graph(graph: AgentGraph, path: str, *, title: str = "", max_agents: int = 200) -> str:
    """Draw ``graph`` into ``path`` (``.png`` or ``.svg``): agents by forward wave and kind, arrows
    by type, delayed arrows dashed, self-loops ringed; collapsed to one box per (kind, group)
    when the graph has more than ``max_agents`` agents (module docstring). Returns ``path``.

    Example:
        >>> import tempfile, os
        >>> from agentgraph.builders import mlp
        >>> d = tempfile.mkdtemp()
        >>> os.path.getsize(draw_graph(mlp([2, 3, 2]), os.path.join(d, "g.png"))) > 1000
        True
        >>> os.path.getsize(draw_graph(mlp([144, 50, 10]), os.path.join(d, "big.svg"))) > 1000  # collapsed
        True
    """
    import os

    graph.validate()
    a = graph.arrays()
    N = len(a.names)
    fwd = a.type_mask("forward", delayed=False)
    wave = generations(N, a.src[fwd], a.dst[fwd])
    collapsed = N > max_agents
    if collapsed:  # one node per (kind, group)
        key = a.kind.astype(np.int64) * (len(a.group_names) + 1) + a.group
        uniq, node = np.unique(key, return_inverse=True)
        x = np.array([wave[node == i].min() for i in range(len(uniq))], float)
        counts = np.bincount(node)
        kinds = np.array([a.kind[np.argmax(node == i)] for i in range(len(uniq))])
        labels = [f"{a.group_names[a.group[np.argmax(node == i)]]}\n{counts[i]:,} × {a.kind_names[kinds[i]]}"
                  for i in range(len(uniq))]
    else:
        node, x, kinds = np.arange(N), wave.astype(float), a.kind
        labels = None
    n_nodes = len(x)
    y = np.zeros(n_nodes)
    for w in np.unique(x):
        members = np.flatnonzero(x == w)
        y[members] = -(np.arange(len(members)) - (len(members) - 1) / 2)
    edges: dict = {}
    for e in range(len(a.src)):
        k = (int(node[a.src[e]]), int(node[a.dst[e]]), a.type_names[a.type[e]], bool(a.delay[e]))
        edges[k] = edges.get(k, 0) + 1
    plt = _pyplot()
    height = max(3.0, (1.1 if collapsed else 0.3) * max(np.unique(x, return_counts=True)[1]) + 1.5)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * (x.max() + 1) + 2.5 if n_nodes else 5.0), min(height, 30.0)))
    loops = set()
    for (s, d, t, dl), count in edges.items():
        if s == d and not dl:
            loops.add(s)
            continue
        color = _ARROW_COLOR.get(t, "0.5")
        rad = {"forward": 0.12, "backward": -0.12}.get(t, 0.3) if s != d else 1.5
        ax.annotate("", xy=(x[d], y[d]), xytext=(x[s], y[s]),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=0.8 if collapsed else 0.6, alpha=0.7,
                                    ls="--" if dl else "-", shrinkA=10 if collapsed else 4, shrinkB=10 if collapsed else 4,
                                    connectionstyle=f"arc3,rad={rad}"))
        if count > 1:
            ax.text((x[s] + x[d]) / 2, (y[s] + y[d]) / 2 + (0.12 if t == "forward" else -0.12), f"×{count:,}",
                    fontsize=6, color=color, ha="center")
    cmap, gmap = plt.get_cmap("tab20"), plt.get_cmap("Dark2")
    groups = (np.array([a.group[np.argmax(node == i)] for i in range(n_nodes)]) if collapsed else a.group)
    for k, kname in enumerate(a.kind_names):
        m = kinds == k
        if m.any():  # fill: the kind; ring: the group (parameter-sharing key)
            ax.scatter(x[m], y[m], s=300 if collapsed else 36, color=cmap(k % 20), label=kname, zorder=3,
                       edgecolors=[gmap(int(gr) % 8) for gr in groups[m]], linewidths=1.2)
    if labels is not None:
        for i, lab in enumerate(labels):
            ax.text(x[i], y[i] - 0.28, lab, fontsize=6, ha="center", va="top")
    if loops:
        idx = np.array(sorted(loops))
        ax.scatter(x[idx], y[idx], s=(600 if collapsed else 110), facecolors="none", edgecolors="tab:red",
                   linewidths=0.8, zorder=2, label="self-loops")
    for t, color in (*_ARROW_COLOR.items(), ("other types", "0.5")):
        ax.plot([], [], color=color, lw=1, label=f"{t} arrows")
    ax.plot([], [], color="0.3", lw=1, ls="--", label="delayed arrows")
    ax.set_xlabel("forward wave" + (" (first of the group)" if collapsed else ""))
    ax.set_yticks([])
    ax.margins(0.12)
    what = f"{N:,} agents in {n_nodes} (kind, group) boxes" if collapsed else f"{N} agents"
    ax.set_title(title or f"{what}, {len(a.src):,} arrows; {graph.schedule}", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
