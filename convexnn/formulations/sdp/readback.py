"""Network read-back from a solution of the relaxation: candidate directions, the optimal output
layer by group lasso, local polishing (see :mod:`convexnn.formulations.sdp`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...losses import get_loss
from ...networks import TwoLayerNetwork
from ..group_lasso import solve_group_lasso
from .relaxation import SDPRelaxation

__all__ = ["extract_network", "polish_network", "group_lasso_output"]


def group_lasso_output(H: Tensor, Y: Tensor, reg: float, iters: int = 500) -> Tensor:
    """argmin_V ½||H Vᵀ − Y||² + reg Σ_k ||v_k||₂  (V: c x m) by FISTA (certified relative gap
    1e-10, at most ``iters`` iterations)."""
    return solve_group_lasso(H, Y, reg, get_loss("squared"), max_iter=iters).T


def polish_network(net: TwoLayerNetwork, X: Tensor, Y: Tensor, reg: float, *, intercept: bool,
                   max_iter: int = 500) -> TwoLayerNetwork:
    """Local L-BFGS on the non-convex objective from ``net`` (never returns a worse network).

    X here includes the ones column when ``intercept``; the network's bias is its last weight.
    """
    U0 = net.first_layer_weights
    if intercept:
        U0 = torch.cat([U0, net.first_layer_bias[:, None]], 1)
    U = U0.detach().clone().requires_grad_(True)
    V = net.second_layer_weights.detach().clone().requires_grad_(True)

    def f():
        R = torch.relu(X @ U.T) @ V.T - Y
        return 0.5 * (R * R).sum() + 0.5 * reg * ((U * U).sum() + (V * V).sum())

    with torch.no_grad():
        f0 = float(f())
    if max_iter > 0 and U.shape[0] > 0:
        opt = torch.optim.LBFGS([U, V], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                                tolerance_change=1e-15, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            val = f()
            val.backward()
            return val

        opt.step(closure)
    with torch.no_grad():
        f1 = float(f())
    if not math.isfinite(f1) or f1 > f0:
        return net
    Ud, Vd = U.detach(), V.detach()
    if intercept:
        return TwoLayerNetwork(Ud[:, :-1].contiguous(), Ud[:, -1].contiguous(), Vd, "relu")
    return TwoLayerNetwork(Ud.contiguous(), torch.zeros(Ud.shape[0], dtype=Ud.dtype), Vd, "relu")


def extract_network(prob: SDPRelaxation, W: Tensor, *, polish_iter: int = 500,
                    prune: float = 1e-8) -> TwoLayerNetwork:
    """A ReLU network from a factor W (Z ≈ W Wᵀ) of the relaxation (see module docstring).

    Candidate unit directions: ±u-parts of W's principal directions (eigenvectors of W Wᵀ) and
    of W's own columns; optimal output layer by group lasso; dead/zero neurons pruned; then
    local polishing. The result is a heuristic upper bound on p* — the certificate measures it.
    """
    X, Y, reg = prob.X, prob.Y, prob.reg
    Ue, S, _ = torch.linalg.svd(W, full_matrices=False)
    Wpc = Ue * S
    cands = torch.cat([Wpc[prob.su], W[prob.su]], 1)
    cands = torch.cat([cands, -cands], 1)
    nrm = torch.linalg.vector_norm(cands, dim=0)
    cands = cands[:, nrm > 1e-12 * max(float(nrm.max()) if nrm.numel() else 0.0, 1e-300)]
    if cands.shape[1] == 0:
        return prob.network(torch.zeros(prob.d, 1, dtype=X.dtype),
                            torch.zeros(prob.c, 1, dtype=X.dtype))
    Uh = cands / torch.linalg.vector_norm(cands, dim=0, keepdim=True)
    H = torch.relu(X @ Uh)
    V = group_lasso_output(H, Y, reg)
    a = torch.linalg.vector_norm(V, dim=0)
    keep = a > prune * max(float(a.max()), 1e-300)
    if not bool(keep.any()):
        keep[0] = True
    s = a[keep].clamp_min(1e-300).sqrt()
    U = Uh[:, keep] * s
    Vk = V[:, keep] / s
    net = prob.network(U, Vk)
    return polish_network(net, X, Y, reg, intercept=prob.intercept, max_iter=polish_iter)

