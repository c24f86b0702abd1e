"""Solver results: iterate, per-iteration history and the reason the solver stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["History", "SolverResult", "StopReason"]


class StopReason:
    GAP = "gap_tolerance"          # certified relative duality gap <= tol
    MAX_ITER = "max_iter"
    MAX_TIME = "max_time"
    STALLED = "stalled"            # no progress possible at working precision
    CONVERGED = "converged"        # an external solver reported optimality


@dataclass
class History:
    """Per-checkpoint trace: iteration, objective, certified gap, wall-clock seconds."""

    iteration: list[int] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)
    relative_gap: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def append(self, iteration: int, objective: float, gap: float, relative_gap: float,
               seconds: float) -> None:
        self.iteration.append(int(iteration))
        self.objective.append(float(objective))
        self.gap.append(float(gap))
        self.relative_gap.append(float(relative_gap))
        self.seconds.append(float(seconds))

    def extend(self, other: History, iteration_offset: int = 0,
               seconds_offset: float = 0.0) -> None:
        """Append ``other``'s checkpoints, shifted by the iterations and seconds before it."""
        for i in range(len(other)):
            self.append(iteration_offset + other.iteration[i], other.objective[i], other.gap[i],
                        other.relative_gap[i], seconds_offset + other.seconds[i])

    def as_dict(self) -> dict[str, list]:
        return {"iteration": self.iteration, "objective": self.objective, "gap": self.gap,
                "relative_gap": self.relative_gap, "seconds": self.seconds}

    def __len__(self) -> int:
        return len(self.iteration)


@dataclass
class SolverResult:
    x: Any
    history: History
    stop_reason: str
    n_iter: int
    seconds: float
    extras: dict = field(default_factory=dict)
