"""Schedules: what runs when in one inner step.

A step is an ordered list of **phases**. A phase names one arrow type and runs that type's arrows:

* a **sweep** phase (the default) runs every agent whose kind acts on the type, in topological
  generations of the type's (non-delayed) arrows. Each agent's ports receive the aggregate of
  what its in-arrows carry; its outputs travel along its out-arrows of the type.
* a **self-loop** phase (``self_loops=True``) applies each agent's function once per self-loop
  arrow of the type it carries (``reflexive`` arrows are the library's example). No messages.

A phase may **repeat** (``repeat=2``: two ticks of the same phase). The step's loss is read after
the phase marked ``loss=True`` (at most one; without one, at the end of the step); that is also
where :meth:`Program.forward <agentgraph.compiler.Program.forward>` stops.

The library's default is today's step, bit for bit::

    forward (loss read here)  ->  backward  ->  reflexive (self-loops)

**Delayed arrows** (``delay=True`` on an arrow of a sweep type) deliver, at every run of a phase of
their type, what their source sent at the *previous* run of a phase of that type (zeros before the
first). They are left out of the topological order, so a type's arrows may form cycles as long as
every cycle passes through a delayed arrow. The messages in flight are part of the state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from agentgraph.errors import AgentGraphError

__all__ = ["DELAYED", "Phase", "Schedule", "DEFAULT_SCHEDULE"]

#: The state entry that holds the messages in flight on delayed arrows (only in the states of
#: graphs that have delayed arrows). No agent may be named so.
DELAYED = "@delayed"


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of a step: run the arrows of ``type``.

    Attributes:
        type: the arrow type (any non-empty string; ``forward``, ``backward`` and ``reflexive``
            are the library's).
        repeat: how many times the phase runs in a row (ticks).
        self_loops: ``True``: the type's arrows are self-loops, each applying its agent's
            function once (no messages); ``False``: a sweep in topological order.
        loss: the step's loss is read after this phase.

    Example:
        >>> Phase("update")
        Phase(type='update', repeat=1, self_loops=False, loss=False)
    """

    type: str
    repeat: int = 1
    self_loops: bool = False
    loss: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type or self.type.startswith("@"):
            raise AgentGraphError(f"Phase type must be a non-empty str not starting with '@', got {self.type!r}.")
        if isinstance(self.repeat, bool) or not isinstance(self.repeat, int) or self.repeat < 1:
            raise AgentGraphError(f"Phase {self.type!r}: repeat must be a positive int, got {self.repeat!r}.")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """An ordered tuple of :class:`Phase` (hashable: part of a compiled program's static plan).

    A type is either swept or self-looped, in every phase that names it.

    Example:
        >>> s = Schedule((Phase("forward", loss=True), Phase("backward"), Phase("update")))
        >>> s.types(), s.sweep_types()
        (('forward', 'backward', 'update'), ('forward', 'backward', 'update'))
        >>> DEFAULT_SCHEDULE.self_types()
        ('reflexive',)
    """

    phases: tuple[Phase, ...]

    def __post_init__(self) -> None:
        phases = tuple(self.phases) if isinstance(self.phases, Iterable) else self.phases
        if not isinstance(phases, tuple) or not phases or not all(isinstance(p, Phase) for p in phases):
            raise AgentGraphError(f"A Schedule is a non-empty sequence of Phase, got {self.phases!r}.")
        object.__setattr__(self, "phases", phases)
        losses = [p.type for p in phases if p.loss]
        if len(losses) > 1:
            raise AgentGraphError(f"Schedule: the loss is read after one phase only; phases {losses} all set loss=True.")
        mode: dict[str, bool] = {}
        for p in phases:
            if mode.setdefault(p.type, p.self_loops) != p.self_loops:
                raise AgentGraphError(
                    f"Schedule: arrow type {p.type!r} is a self-loop phase in one place and a sweep in another; "
                    "give the two roles two arrow types."
                )

    def types(self) -> tuple[str, ...]:
        """Every type the schedule runs, in order of first appearance."""
        return tuple(dict.fromkeys(p.type for p in self.phases))

    def sweep_types(self) -> tuple[str, ...]:
        """The types run as sweeps, in order of first appearance."""
        return tuple(t for t in self.types() if not self.is_self(t))

    def self_types(self) -> tuple[str, ...]:
        """The types run as self-loop phases."""
        return tuple(t for t in self.types() if self.is_self(t))

    def is_self(self, arrow_type: str) -> bool:
        """Whether ``arrow_type`` is run as self-loops."""
        return any(p.self_loops for p in self.phases if p.type == arrow_type)

    def loss_index(self) -> int:
        """Index of the phase after which the loss is read (the last phase if none is marked)."""
        return next((i for i, p in enumerate(self.phases) if p.loss), len(self.phases) - 1)

    def runs(self) -> tuple[tuple[int, Phase], ...]:
        """``(phase index, phase)`` once per run (repeats unrolled), in order."""
        return tuple((i, p) for i, p in enumerate(self.phases) for _ in range(p.repeat))

    def __repr__(self) -> str:
        return "Schedule(" + " -> ".join(
            p.type + (f"×{p.repeat}" if p.repeat > 1 else "") + (" (self)" if p.self_loops else "")
            + (" [loss]" if p.loss else "") for p in self.phases) + ")"


#: Today's step: forward sweep (loss read after it), backward sweep, reflexive self-loops.
DEFAULT_SCHEDULE = Schedule((Phase("forward", loss=True), Phase("backward"), Phase("reflexive", self_loops=True)))
