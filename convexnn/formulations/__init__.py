"""Convex programs, one module per paper-level model (each docstring states its math)."""

from .two_layer import TwoLayerProgram

__all__ = ["TwoLayerProgram"]
