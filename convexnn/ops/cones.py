"""Second-order-cone algebra for interior-point methods (rows are cone vectors)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["nt_scaling", "jordan_product", "jordan_divide", "soc_step_length", "linear_step_length"]


def nt_scaling(s: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Nesterov–Todd scaling of second-order cones (rows of s, z in the interior):
    W = β(2vvᵀ − J), W⁻¹ = (1/β)(2JvvᵀJ − J), with W z = W⁻¹ s. Returns (W, W⁻¹, λ̃ = W z)."""
    D = s.shape[1]
    sJs = s[:, 0] ** 2 - (s[:, 1:] ** 2).sum(1)
    zJz = z[:, 0] ** 2 - (z[:, 1:] ** 2).sum(1)
    sb = s / sJs.sqrt()[:, None]
    zb = z / zJz.sqrt()[:, None]
    gam = ((1 + (sb * zb).sum(1)) / 2).sqrt()
    Jzb = torch.cat([zb[:, :1], -zb[:, 1:]], 1)
    wb = (sb + Jzb) / (2 * gam)[:, None]
    e = torch.zeros_like(wb)
    e[:, 0] = 1.0
    v = (wb + e) / torch.sqrt(2 * (wb[:, 0] + 1))[:, None]
    beta = (sJs / zJz) ** 0.25
    Jd = torch.ones(D, dtype=s.dtype, device=s.device)
    Jd[1:] = -1.0
    J = torch.diag(Jd)
    vv = v[:, :, None] * v[:, None, :]
    W = beta[:, None, None] * (2 * vv - J)
    Jv = v * Jd
    Winv = (2 * Jv[:, :, None] * Jv[:, None, :] - J) / beta[:, None, None]
    lt = (W @ z[..., None])[..., 0]
    return W, Winv, lt


def jordan_product(u: Tensor, v: Tensor) -> Tensor:
    """Jordan product of second-order-cone vectors (rows)."""
    return torch.cat([(u * v).sum(1, keepdim=True), u[:, :1] * v[:, 1:] + v[:, :1] * u[:, 1:]], 1)


def jordan_divide(u: Tensor, v: Tensor) -> Tensor:
    """x with u ∘ x = v (u in the interior of the cone)."""
    uJu = u[:, 0] ** 2 - (u[:, 1:] ** 2).sum(1)
    uv = (u[:, 1:] * v[:, 1:]).sum(1)
    x0 = (u[:, 0] * v[:, 0] - uv) / uJu
    x1 = v[:, 1:] / u[:, :1] + ((uv / u[:, 0] - v[:, 0]) / uJu)[:, None] * u[:, 1:]
    return torch.cat([x0[:, None], x1], 1)


def soc_step_length(u: Tensor, du: Tensor) -> float:
    """Largest α ≥ 0 with u + α du in the second-order cone (rows; u in the interior)."""
    a = du[:, 0] ** 2 - (du[:, 1:] ** 2).sum(1)
    b = 2 * (u[:, 0] * du[:, 0] - (u[:, 1:] * du[:, 1:]).sum(1))
    c = u[:, 0] ** 2 - (u[:, 1:] ** 2).sum(1)
    inf = torch.full_like(a, math.inf)
    disc = b * b - 4 * a * c
    sq = disc.clamp_min(0).sqrt()
    # numerically stable roots of a α² + b α + c
    qq = -0.5 * (b + torch.where(b >= 0, sq, -sq))
    r1 = torch.where(a != 0, qq / torch.where(a != 0, a, torch.ones_like(a)), inf)
    r2 = torch.where(qq != 0, c / torch.where(qq != 0, qq, torch.ones_like(qq)), inf)
    r1 = torch.where(r1 > 0, r1, inf)
    r2 = torch.where(r2 > 0, r2, inf)
    root = torch.where(disc >= 0, torch.minimum(r1, r2), inf)
    lin = torch.where(du[:, 0] < 0, -u[:, 0] / torch.where(du[:, 0] < 0, du[:, 0],
                                                          -torch.ones_like(a)), inf)
    return float(torch.minimum(root, lin).min()) if u.shape[0] else math.inf


def linear_step_length(v: Tensor, dv: Tensor, mask: Tensor) -> float:
    neg = (dv < 0) & (mask > 0)
    return float((-v[neg] / dv[neg]).min()) if bool(neg.any()) else math.inf
