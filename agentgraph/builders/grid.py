"""A grid of cells joined to their Moore neighbours by delayed arrows: a neural cellular
automaton's wiring."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from agentgraph.arrows.schedule import Phase, Schedule
from agentgraph.errors import AgentGraphError
from agentgraph.graph import AgentGraph
from agentgraph.nodes.base import Kind

__all__ = ["NEIGHBOURS", "grid"]


#: The Moore neighbourhood: port name -> the neighbour's ``(row, column)`` offset from the cell.
NEIGHBOURS: dict[str, tuple[int, int]] = {
    "nw": (-1, -1), "n": (-1, 0), "ne": (-1, 1), "w": (0, -1), "e": (0, 1), "sw": (1, -1), "s": (1, 0), "se": (1, 1),
}


def grid(height: int, width: int, kind: Kind, *, arrow_type: str = "tick", repeat: int = 1,
         group: str | None = None, states: Mapping[str, np.ndarray] | None = None) -> AgentGraph:
    """A ``height × width`` grid of cells of ``kind``, each joined to its (up to 8) Moore neighbours
    by **delayed** arrows of ``arrow_type`` into the port named by the neighbour's direction
    (:data:`NEIGHBOURS`; cells on the border receive nothing on the missing sides, i.e. zeros), run
    by the schedule ``Phase(arrow_type, repeat=repeat)`` — a neural cellular automaton's wiring:
    every tick, each cell reads what its neighbours sent at the previous tick.

    Args:
        height, width: grid size.
        kind: the cell kind; it acts on ``arrow_type`` with the eight direction ports and an
            output ``"out"`` of the same size (see :class:`agentgraph.models.nca.NCACell`).
        arrow_type: the phase's (user-named) arrow type.
        repeat: ticks per step.
        group: the cells' parameter-sharing group (default: the kind's name).
        states: initial values ``{field: [height * width, *shape]}`` in row-major cell order.

    Example:
        >>> from agentgraph.models.nca import NCACell
        >>> g = grid(3, 4, NCACell(channels=4, hidden=8))
        >>> g.number_of_agents(), g.number_of_arrows("tick")  # 3*4 cells; 2*(3*3+2*4+2*2*3) arrows
        (12, 58)
    """
    for v, what in ((height, "height"), (width, "width")):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise AgentGraphError(f"grid: {what} must be a positive int, got {v!r}.")
    g = AgentGraph(kinds=[kind], schedule=Schedule((Phase(arrow_type, repeat=repeat, loss=True),)))
    names = [("cell", i, j) for i in range(height) for j in range(width)]
    g.add_agents(names, kind.name, groups=group, states=states)
    ii, jj = np.divmod(np.arange(height * width), width)
    for port, (di, dj) in NEIGHBOURS.items():
        si, sj = ii + di, jj + dj
        ok = (si >= 0) & (si < height) & (sj >= 0) & (sj < width)
        g.add_arrows((si * width + sj)[ok], np.flatnonzero(ok), arrow_type, port=port, by_index=True, delay=True)
    return g.validate()
