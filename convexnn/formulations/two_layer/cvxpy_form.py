"""The same programs as CVXPY problems (the tests' reference)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from .program import TwoLayerProgram


def to_cvxpy(prog: TwoLayerProgram):
    """The same program as a CVXPY problem (small problems; the test reference).

    Returns ``(problem, variables)`` where ``variables[s][p]`` is the d x c block x[s, p].
    """
    import cvxpy as cp

    X = prog.X.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    M = prog.masks.detach().cpu().double().numpy()
    n, c = Y.shape
    V = [[cp.Variable((prog.d, c)) for _ in range(prog.P)] for _ in range(prog.S)]
    Z = 0
    cons = []
    pen = 0
    for p in range(prog.P):
        DX = M[:, p:p + 1] * X
        Vp = V[0][p] - V[1][p] if prog.S == 2 else V[0][p]
        Z = Z + DX @ Vp
        for s in range(prog.S):
            if prog.nuclear:
                pen = pen + cp.normNuc(V[s][p])
            else:
                pen = pen + cp.sum(cp.norm(V[s][p], 2, axis=0))
            if prog.activation == "relu":
                sgn = (2 * M[:, p:p + 1] - 1) * X
                cons.append(sgn @ V[s][p] >= 0)
    data = prog.loss.cvxpy(Z, Y)  # an offset loss adds its free offset
    problem = cp.Problem(cp.Minimize(data + prog.reg * pen), cons)
    problem._convexnn_cone_constraints = cons  # for the multipliers (certificate)
    return problem, V


def cvxpy_solution(prog: TwoLayerProgram, V) -> Tensor:
    """Assemble the CVXPY variable values into x of shape (S, P, d, c)."""

    arr = np.stack([np.stack([v.value for v in row]) for row in V])
    return torch.as_tensor(arr, dtype=prog.X.dtype, device=prog.X.device)



def _has_cvxpy() -> bool:
    try:
        import cvxpy  # noqa: F401
    except ImportError:
        return False
    return True
