"""Generic optimisation, independent of neural networks."""

from .al import augmented_lagrangian
from .base import History, SolverResult, StopReason
from .fista import fista

__all__ = ["fista", "augmented_lagrangian", "History", "SolverResult", "StopReason"]
