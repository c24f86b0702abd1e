"""Regularisation paths: the program solved for a decreasing sequence of reg with warm starts."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from ...certificates import Certificate
from .program import TwoLayerProgram
from .solve import solve

__all__ = ["reg_max", "reg_path"]


def reg_max(prog: TwoLayerProgram) -> float:
    """Smallest reg whose optimum is x = 0 (gated program): max_p ||Aᵀ_p ∇L(0)||_*, the dual
    norm of the gradient at zero (with an offset loss, ∇L_b(0): the offset is fitted)."""
    if prog.activation != "gated":
        raise ValueError("reg_max is exact for the gated program only (activation='gated')")
    Y = prog.Y
    lam = prog.loss.grad(torch.zeros_like(Y), Y)
    h = prog.dual_norms(prog.rmatvec(lam)[None])
    return float(h.max()) if h.numel() else 0.0


def reg_path(prog: TwoLayerProgram, regs=None, *, n_regs: int = 10, ratio: float = 1e-2,
             **solve_options) -> list[tuple[float, Tensor, Certificate]]:
    """Solve ``prog`` for each reg of a decreasing sequence, each solve warm-started from the
    previous solution. ``regs`` defaults to ``n_regs`` values log-spaced from reg_max (zero
    network) down to ``ratio``·reg_max. Returns ``[(reg, x, certificate), ...]`` in that order.
    """
    if regs is None:
        top = reg_max(prog)
        if top <= 0:
            raise ValueError("reg_max is 0 (the zero network fits the targets exactly)")
        regs = top * np.logspace(0, np.log10(ratio), n_regs)
    regs = [float(r) for r in regs]
    if not regs or any(r <= 0 for r in regs):
        raise ValueError(f"regs must be a non-empty sequence of positive numbers, got {regs}")
    if any(b > a for a, b in zip(regs, regs[1:])):
        raise ValueError("regs must be decreasing (warm starts go from sparse to dense)")
    out, x = [], None
    for r in regs:
        p = copy.copy(prog)  # shares X, Y, gates and the mask cache
        p.reg = r
        x, cert, _ = solve(p, x0=x, **solve_options)
        out.append((r, x, cert))
    return out
