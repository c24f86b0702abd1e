"""The shared shape of every CNN program (:class:`ConeGroupProgram`): penalty, prox, FISTA /
augmented-Lagrangian protocols and the duality-gap certificate (see the package docstring)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ...certificates import SCOPE_GLOBAL, SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ...losses import Loss, get_loss
from ...ops.linalg import power_iteration
from ...ops.prox import group_soft_threshold, singular_value_threshold
from ...patterns import PatternSet
from ...solvers.fista import accelerated_projected_gradient

__all__ = ["ConeGroupProgram", "AugmentedCNN", "gate_repair"]


class ConeGroupProgram:
    """min L(A x) + β Σ_g w_g ||x_g|| (or nuclear) s.t. B x ≥ 0; last axis of x = group axis.

    Subclasses set ``shape``, ``gw`` (group weights broadcastable to ``shape[:-1]``),
    ``constrained``, ``nuclear`` and implement ``predict``, ``predict_adjoint``, and when
    constrained ``constraint`` / ``constraint_adjoint`` (C is any tensor; B x ≥ 0 ⇔ C ≥ 0).
    """

    shape: tuple
    constrained: bool = True
    nuclear: bool = False
    exact: bool = False  # exact program for the network (given all patterns)
    working_set: bool = False  # cutting planes over the cone rows (see ConvTwoLayerProgram)
    n_working_rows: int = 0

    def _setup(self, Y: Tensor, reg: float, loss: str | Loss) -> None:
        if reg <= 0:
            raise ValueError(f"reg must be > 0, got {reg}")
        self.Y = Y
        self.reg = float(reg)
        self.loss = get_loss(loss)
        self.c = Y.shape[1]

    def _setup_conv(self, images: Tensor, patterns: PatternSet, kernel_size: int,
                    stride: int, padding: int, intercept: bool) -> None:
        """The image data and convolution geometry shared by every CNN program."""
        self.data = images
        self.images = images
        self.patterns = patterns
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self.intercept = bool(intercept)
        self.in_channels = images.shape[1]

    # ------------------------------------------------------------------ shape
    def zeros(self) -> Tensor:
        return torch.zeros(self.shape, dtype=self.Y.dtype, device=self.Y.device)

    def _mats(self, x: Tensor) -> Tensor:
        """Nuclear groups as matrices (P, rows, h)."""
        return x.reshape(x.shape[1], -1, x.shape[-1])

    # ---------------------------------------------------------------- penalty
    def group_norms(self, x: Tensor) -> Tensor:
        if self.nuclear:
            return torch.linalg.svdvals(self._mats(x)).sum(-1)
        return torch.linalg.vector_norm(x, dim=-1)

    def penalty(self, x: Tensor) -> Tensor:
        if self.nuclear:
            return self.reg * self.group_norms(x).sum()
        return self.reg * (self.gw * self.group_norms(x)).sum()

    def prox(self, x: Tensor, step: float) -> Tensor:
        t = step * self.reg
        if self.nuclear:
            return singular_value_threshold(self._mats(x), t).reshape(x.shape)
        thr = t * torch.as_tensor(self.gw, dtype=x.dtype, device=x.device)
        if torch.is_tensor(thr) and thr.ndim:
            thr = thr[..., None]
        return group_soft_threshold(x, thr, dim=-1)

    def dual_ratio(self, y: Tensor) -> float:
        """max_g ||y_g||_dual / w_g."""
        if self.nuclear:
            return float(torch.linalg.matrix_norm(self._mats(y), ord=2).max())
        r = torch.linalg.vector_norm(y, dim=-1) / self.gw
        return float(r.max()) if r.numel() else 0.0

    # -------------------------------------------------------- FISTA protocol
    def linear(self, x: Tensor) -> Tensor:
        return self.predict(x)

    def smooth_value(self, Z: Tensor) -> Tensor:
        return self.loss.value(Z, self.Y)

    def smooth_grad(self, Z: Tensor) -> Tensor:
        return self.predict_adjoint(self.loss.grad(Z, self.Y))

    # ----------------------------------------------------------- AL protocol
    def augmented(self, mu: Tensor, rho: float) -> AugmentedCNN:
        return AugmentedCNN(self, mu, rho)

    def violation(self, state) -> float:
        C = state[1]
        return float((-C).clamp_min(0).max()) if C.numel() else 0.0

    # --------------------------------------------------------------- values
    def objective(self, x: Tensor) -> float:
        """Convex objective at x (ignores constraint violation)."""
        return float(self.loss.value(self.predict(x), self.Y) + self.penalty(x))

    def max_violation(self, x: Tensor) -> float:
        if not self.constrained:
            return 0.0
        C = self.constraint(x)
        return float((-C).clamp_min(0).max()) if C.numel() else 0.0

    def repair(self, x: Tensor) -> Tensor | None:
        """A feasible point near x, or None when the program has no repair direction."""
        return x

    def project_to_cones(self, x: Tensor) -> Tensor:
        raise ValueError(f"primal='feasible' is not implemented for {type(self).__name__}")

    def description(self) -> str:
        return type(self).__name__

    def scope(self) -> str:
        return SCOPE_GLOBAL if (self.exact and self.patterns.exhaustive) else SCOPE_SAMPLED

    def certificate(self, x: Tensor, mu: Tensor | None = None, refine: int = 0) -> Certificate:
        """Duality-gap certificate at x (``mu``: AL multipliers ≥ 0, shaped like C; ``refine``:
        projected-gradient steps improving μ for the fixed Λ, see :meth:`refine_multipliers`)."""
        return self.certify(x, mu, refine)[0]

    def network_objective(self, x: Tensor) -> tuple[Tensor, float]:
        """Predictions and non-convex objective of the network read back from x (the default
        builds the network; subclasses compute it without materialising all filters)."""
        net = self.to_network(x)
        Z = net.forward(self.data).to(self.Y)
        return Z, net.objective(self.data, self.Y, self.reg, self.loss)

    def certify(self, x: Tensor, mu: Tensor | None = None, refine: int = 0,
                lam: Tensor | None = None, check_violation: bool = True,
                primal: str = "network") -> tuple[Certificate, Tensor]:
        """Certificate and the point whose read-back network attains its primal value.

        Primal: the convex objective when x is feasible; otherwise the smaller of the objective
        at the repaired feasible point (when the program has a repair) and the true non-convex
        objective of the network read back from x (both are objectives of actual networks,
        hence valid upper bounds). Programs with ``primal_is_network = True`` always report the
        read-back network's objective (equal to the convex objective when x is feasible), which
        needs no feasibility check. Dual: −L*(sΛ) with Λ = ∇L at that point's predictions and s
        scaling (Λ, μ) to dual feasibility — a lower bound of the program's optimum for any
        μ ≥ 0 (μ lives on the rows of :meth:`constraint`, a subset of the cone rows when working
        sets are used; the missing rows get μ = 0). ``lam``: a second candidate Λ (e.g. a
        splitting solver's loss-gradient estimate, which must lie in the domain of L*); the
        larger of the two lower bounds is reported. ``check_violation``: measure the largest
        violation of the full cone constraints (``Certificate.constraint_violation``; NaN
        when skipped). ``primal="feasible"`` (programs with :meth:`project_to_cones`) certifies
        the exact projection of x onto the cones instead: a feasible point of the program, so
        its objective is never below the program's optimum and the gap measures how well the
        *program* is solved (for comparisons with other solvers of the same program).
        """
        if primal not in ("network", "feasible"):
            raise ValueError(f"primal must be 'network' or 'feasible', got {primal!r}")
        point = x
        if self.constrained and primal == "feasible":
            point = self.project_to_cones(x)
            viol = self.max_violation(point) if check_violation else math.nan
            Z, primal = self.network_objective(point)
        elif self.constrained and getattr(self, "primal_is_network", False):
            viol = self.max_violation(x) if check_violation else math.nan
            Z, primal = self.network_objective(x)
        else:
            viol = self.max_violation(x)
            Z = self.predict(x)
            primal = float(self.loss.value(Z, self.Y) + self.penalty(x))
            if self.constrained and viol > 0:
                Z, primal = self.network_objective(x)
                xr = self.repair(x)
                if xr is not None:
                    Zr = self.predict(xr)
                    pr = float(self.loss.value(Zr, self.Y) + self.penalty(xr))
                    if pr <= primal:
                        point, Z, primal = xr, Zr, pr
        best = None  # (dual, s, Λ, Aᵀ Λ, h)
        for cand in (self.loss.grad(Z, self.Y), lam):
            if cand is None:
                continue
            y = self.predict_adjoint(cand)
            h = self.dual_ratio(y)  # μ = 0: the cone-free bound
            if self.constrained and mu is not None:
                h = min(h, self.dual_ratio(y - self.constraint_adjoint(mu)))
            d_c, s_c = scaled_dual(self.loss, cand, self.Y, h, self.reg)
            if math.isfinite(d_c) and (best is None or d_c > best[0]):
                best = (d_c, s_c, cand, y, h)
        dual, s, lam_b, y, h = best
        if self.constrained and refine > 0:  # improve μ for the better candidate only
            mu_r = self.refine_multipliers(y, mu, refine)
            h_r = self.dual_ratio(y - self.constraint_adjoint(mu_r))
            if h_r < h:
                dual, s = scaled_dual(self.loss, lam_b, self.Y, h_r, self.reg)
        gap = max(primal - dual, 0.0)
        cert = Certificate(primal=primal, dual=dual, gap=gap, relative_gap=relative(gap, primal),
                           scope=self.scope(), problem=self.description(),
                           n_patterns=int(self.patterns.n_patterns), dual_scale=s,
                           constraint_violation=viol)
        return cert, point

    def _constraint_norm2(self) -> float:
        """Power-iteration estimate of ||B||² (cached)."""
        if getattr(self, "_bn2", None) is None:
            lam = power_iteration(self.constraint, self.constraint_adjoint, self.shape,
                                  dtype=self.Y.dtype, device=self.Y.device, iters=20, seed=1)
            self._bn2 = max(lam * 1.05, 1e-12)
        return self._bn2

    def refine_multipliers(self, y: Tensor, mu: Tensor | None, iters: int) -> Tensor:
        """Accelerated projected gradient on min_{μ ≥ 0} ½ Σ_g ||y_g − (Bᵀμ)_g||², warm-started at
        ``mu``. For cones whose rows belong to one group (two-layer, circular) this minimises
        every group's bound ||y_g − (Bᵀμ)_g|| ≥ max_{u∈K_g,||u||≤1} <y_g, u> simultaneously; any
        μ ≥ 0 gives a valid bound."""
        if mu is None:
            mu = torch.zeros_like(self.constraint(self.zeros()))
        return accelerated_projected_gradient(
            lambda z: -self.constraint(y - self.constraint_adjoint(z)), mu,
            1.0 / self._constraint_norm2(), iters)

    def lipschitz(self, iters: int = 15) -> float:
        """Power-iteration estimate of ||A||² times the loss smoothness."""
        lam = power_iteration(self.predict, self.predict_adjoint, self.shape, dtype=self.Y.dtype,
                              device=self.Y.device, iters=iters, seed=0)
        if lam == 0 or not math.isfinite(lam):
            return 1.0
        return max(lam * self.loss.smoothness, 1e-12)


class AugmentedCNN:
    """Smooth part L(A x) + ||(μ − ρ C(x))_+||² / (2ρ) of the augmented Lagrangian (FISTA)."""

    def __init__(self, prog: ConeGroupProgram, mu: Tensor, rho: float):
        self.prog, self.mu, self.rho = prog, mu, float(rho)
        self.penalty = prog.penalty
        self.prox = prog.prox

    def linear(self, x: Tensor):
        return (self.prog.predict(x), self.prog.constraint(x))

    def _shifted(self, C: Tensor) -> Tensor:
        return (self.mu - self.rho * C).clamp_min(0)

    def smooth_value(self, state) -> Tensor:
        Z, C = state
        return self.prog.loss.value(Z, self.prog.Y) + (self._shifted(C) ** 2).sum() / (2 * self.rho)

    def smooth_grad(self, state) -> Tensor:
        Z, C = state
        p = self.prog
        return p.predict_adjoint(p.loss.grad(Z, p.Y)) - p.constraint_adjoint(self._shifted(C))

    def updated_multipliers(self, state) -> Tensor:
        return self._shifted(state[1])


def gate_repair(prog: ConeGroupProgram, x: Tensor, C: Tensor, margins: Tensor,
                 directions: Tensor, group_max) -> Tensor:
    """x_g + t_g d_g with t_g = max_rows viol / margin (d_g: a direction inside the group's cone,
    margins = C(d) ≥ 0). Groups whose violated rows have zero margin are zeroed."""
    viol = (-C).clamp_min(0)
    if not bool((viol > 0).any()):
        return x
    ratio = torch.where(viol > 0, viol / margins.clamp_min(1e-300), torch.zeros_like(viol))
    t = group_max(ratio)
    bad = ~torch.isfinite(t) | (t > 1e150)
    t = torch.where(bad, torch.zeros_like(t), t)
    extra = (1,) * (x.ndim - t.ndim)
    x = x + t.reshape(t.shape + extra) * directions
    return torch.where(bad.reshape(bad.shape + extra), torch.zeros_like(x), x)

