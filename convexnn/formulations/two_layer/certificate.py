"""Certificates of the two-layer programs (methods of :class:`TwoLayerProgram`) and
the gated dual candidates (extrapolation)."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.optimize import nnls as _scipy_nnls
from torch import Tensor

from ...certificates import SCOPE_GLOBAL, SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ...solvers.fista import accelerated_projected_gradient

if TYPE_CHECKING:
    from .program import TwoLayerProgram, _AugmentedReLU


class _Certificates:
    """Certificate methods of :class:`TwoLayerProgram` (a mixin)."""

    # ----------------------------------------------------------- certificates
    def certificate(self, x: Tensor, state: Tensor | None = None,
                    aug: _AugmentedReLU | None = None, refine: int = 0,
                    repair: bool = True, mu: Tensor | None = None) -> Certificate:
        """Certificate at x. For ReLU, ``aug`` supplies multipliers (else μ = 0, a looser bound),
        ``refine`` NNLS iterations tighten them, and the primal is taken at the feasible repair of
        x (``repair=False`` gives a cheap *estimate* that is not a certificate)."""
        viol = 0.0
        if self.activation == "relu":
            # Certify a feasible point: repair the iterate into its cones (x → x + t·g_p), so
            # the primal value is attained by the program and by the read-back network alike.
            XV0 = state if state is not None else self.relu_state(x)
            if aug is not None:
                mu = aug.updated_multipliers(XV0)
            viol = self.violation(XV0)
            if repair:
                x = self.repair(x, XV0)
                XV = self.relu_state(x)
            else:  # estimate only: the convex objective of a possibly infeasible point
                XV = XV0
            # the network's prediction: equal to the program's at a feasible point, and
            # attained by the read-back network even where round-off is left
            Z = self.network_predict(XV) if repair else self.relu_predict(XV)
            lam = self.loss.grad(Z, self.Y)
            if refine and mu is not None:
                mu = self.refine_multipliers(lam, mu, refine)
            h = self._cone_dual_norms(lam, self.masks[:, None, :, None], mu)
            primal = float(self.loss.value(Z, self.Y) + self.penalty(x))
        else:
            Z = state if state is not None else self.linear(x)
            lam = self.loss.grad(Z, self.Y)
            h = self.dual_norms(self.rmatvec(lam)[None])
            primal = float(self.loss.value(Z, self.Y) + self.penalty(x))
        h_max = float(h.max()) if h.numel() else 0.0
        dual, s = scaled_dual(self.loss, lam, self.Y, h_max, self.reg)
        gap = max(primal - dual, 0.0)
        scope = SCOPE_GLOBAL if self.patterns.exhaustive and self.activation == "relu" \
            and self.c == 1 else SCOPE_SAMPLED
        return Certificate(primal=primal, dual=dual, gap=gap, relative_gap=relative(gap, primal),
                           scope=scope, problem=self.description(), n_patterns=self.P,
                           dual_scale=s, constraint_violation=viol)

    def network_certificate(self, x: Tensor, lams: list[Tensor] = (),
                            mu: Tensor | None = None) -> Certificate:
        """Certificate whose primal is the objective of the network read back from x.

        The read-back network (one neuron per non-zero group, true ReLU (X z)_+) has objective
        L(Σ ± (X z)_+) + β Σ ||z||, attained by an actual network whether or not x satisfies
        the cone constraints exactly, so no repair is needed; it equals the convex objective
        when x is feasible. The dual is the best of −L*(s λ) over λ = ∇L(network prediction)
        and the extra candidates ``lams`` (e.g. a solver's multipliers), each scaled to
        feasibility with the cone multipliers ``mu`` ≥ 0 (any μ ≥ 0 gives a valid bound).
        Hence dual ≤ p_S (the program's optimum over these patterns), p* ≤ primal (every
        network is feasible for the non-convex problem), and ``gap`` bounds how far the
        network is from optimal over the patterns.
        """
        if self.activation != "relu":
            return self.certificate(x)
        XV = self.relu_state(x)
        Z = self.network_predict(XV)
        primal = float(self.loss.value(Z, self.Y) + self.penalty(x))
        D = self.masks[:, None, :, None]
        best, best_s = -math.inf, 1.0
        for lam in [self.loss.grad(Z, self.Y), *lams]:
            h = self._cone_dual_norms(lam, D, mu)
            h_max = float(h.max()) if h.numel() else 0.0
            dual, sc = scaled_dual(self.loss, lam, self.Y, h_max, self.reg)
            if dual > best:
                best, best_s = dual, sc
        gap = max(primal - best, 0.0)
        scope = SCOPE_GLOBAL if self.patterns.exhaustive and self.c == 1 else SCOPE_SAMPLED
        viol = self.violation(XV)
        return Certificate(primal=primal, dual=best, gap=gap, relative_gap=relative(gap, primal),
                           scope=scope, problem=self.description(), n_patterns=self.P,
                           dual_scale=best_s, constraint_violation=viol)

    def tighten(self, cert: Certificate, lams: list[Tensor], mu: Tensor | None = None,
                max_seconds: float = 2.0) -> Certificate:
        """``cert`` with its dual replaced by the best exact-cone-norm dual over ``lams``.

        The bounds ||y_g + B_gᵀ μ_g|| of :meth:`_cone_dual_norms` are loose unless μ is exact;
        only the largest matters, so the largest bound is replaced by the exact
        h_g = ||Π_{K_g}(y_g)|| = min_{μ ≥ 0} ||y_g + B_gᵀ μ|| (NNLS, float64) until the largest
        is exact (or ``max_seconds`` pass: every value kept is still an upper bound, so the
        dual stays valid). The primal is unchanged. ReLU only; other programs pass through.
        """
        if self.activation != "relu" or cert.gap <= 0:
            return cert
        t0 = time.perf_counter()
        D = self.masks[:, None, :, None]
        Xn = self.X.detach().cpu().double().numpy()
        Mn = self.masks.detach().cpu().double().numpy()
        best, best_s = cert.dual, cert.dual_scale
        for lam in lams:
            h = self._cone_dual_norms(lam, D, mu).detach().cpu().double().reshape(-1).numpy()
            exact = np.zeros(h.shape, dtype=bool)
            Ln = lam.detach().cpu().double().numpy()
            while time.perf_counter() - t0 < max_seconds:
                g = int(np.argmax(h))
                if exact[g]:
                    break
                s_, p_, k_ = np.unravel_index(g, (self.S, self.P, self.c))
                y = (-1.0 if s_ == 0 else 1.0) * (Xn.T @ (Mn[:, p_] * Ln[:, k_]))
                B = (2 * Mn[:, p_:p_ + 1] - 1) * Xn
                mu_g, _ = _nnls(B.T, -y)
                v = float(np.linalg.norm(y + B.T @ mu_g))
                h[g] = min(h[g], v * (1 + 1e-12) + 1e-300)
                exact[g] = True
            dual, sc = scaled_dual(self.loss, lam, self.Y, float(h.max()) if h.size else 0.0,
                                   self.reg)
            if dual > best:
                best, best_s = dual, sc
        if best <= cert.dual:
            return cert
        gap = max(cert.primal - best, 0.0)
        return dataclasses.replace(cert, dual=best, gap=gap,
                                   relative_gap=relative(gap, cert.primal), dual_scale=best_s)

    def gradients(self, x: Tensor, network: bool = True) -> Tensor:
        """∇L at the prediction of the read-back network (``network``) or of the feasible
        repair of x (the program's prediction): the natural dual candidates at x."""
        if self.activation == "gated":
            return self.loss.grad(self.linear(x), self.Y)
        if network:
            return self.loss.grad(self.network_predict(self.relu_state(x)), self.Y)
        return self.loss.grad(self.relu_predict(self.relu_state(self.repair(x))), self.Y)

    def repair(self, x: Tensor, XV: Tensor | None = None) -> Tensor:
        """A feasible point near x: each violating group is projected onto its cone.

        Π_K(v) = v + Bᵀμ*, μ* = argmin_{μ ≥ 0} ||v + Bᵀμ||² (NNLS, B = (2D_p − I) X), solved
        exactly for the few non-zero groups; round-off left after the projection is removed by
        x_g + t_g g_p (the gate g_p lies in its own cone with margins |X g_p|), or, failing
        that, by zeroing the group. Returns x itself when it is already feasible.
        """
        if self.activation != "relu":
            return x
        XV = self.relu_state(x) if XV is None else XV
        viol = (-self.constraint(XV)).clamp_min(0)  # (n, S, P, c)
        bad = viol.amax(0) > 0  # (S, P, c)
        if not bool(bad.any()):
            return x
        x = x.clone()
        Xn = self.X.detach().cpu().double().numpy()
        Mn = self.masks.detach().cpu().double().numpy()
        for s_, p_, k_ in torch.nonzero(bad).tolist():
            B = (2 * Mn[:, p_:p_ + 1] - 1) * Xn
            v = x[s_, p_, :, k_].detach().cpu().double().numpy()
            mu, _ = _nnls(B.T, -v)
            x[s_, p_, :, k_] = torch.as_tensor(v + B.T @ mu, dtype=x.dtype, device=x.device)
        XV = self.relu_state(x)
        viol = (-self.constraint(XV)).clamp_min(0)
        if bool((viol > 0).any()):
            margin = (self.X @ self.G).abs()[:, None, :, None]
            ratio = torch.where(viol > 0, viol / margin.clamp_min(1e-300), torch.zeros_like(viol))
            t = ratio.amax(0)  # (S, P, c)
            gnorm = torch.linalg.vector_norm(self.G, dim=0)[None, :, None]
            hopeless = ~torch.isfinite(t) | (
                t * gnorm > 1e-6 * (1 + torch.linalg.vector_norm(x, dim=2)))
            t = torch.where(hopeless, torch.zeros_like(t), t)
            x = x + t[:, :, None, :] * self.G.T[None, :, :, None]
            # a violation at round-off level is left alone (the certified primal is the
            # read-back network's objective, attained exactly); a real one zeroes the group
            xn = torch.linalg.vector_norm(x, dim=2)  # (S, P, c)
            rown = torch.linalg.vector_norm(self.X, dim=1).max()
            tiny = viol.amax(0) <= 1e-10 * rown * xn
            x = x * (~hopeless | tiny)[:, :, None, :]
        return x

    def refine_multipliers(self, lam: Tensor, mu: Tensor, iters: int) -> Tensor:
        """Tighten the cone bounds: projected FISTA on min_{μ ≥ 0} Σ_g ||y_g + B_gᵀ μ_g||².

        y_g = ∓Xᵀ D_p λ_k, B_g = (2D_p − I) X. Any μ ≥ 0 gives a valid bound, so stopping
        early is safe; the minimiser gives h_g = ||Π_{K_g}(y_g)|| exactly.
        """
        D = self.masks[:, None, :, None]
        sgn = 2 * D - 1
        sign = torch.tensor([1.0, -1.0], dtype=lam.dtype, device=lam.device)[None, :, None, None]
        base = -sign * D * lam[:, None, None, :]  # n x S x P x c
        step = 1.0 / float(torch.linalg.matrix_norm(self.X, ord=2)) ** 2

        def grad(z: Tensor) -> Tensor:
            W = self.X.T @ (base + sgn * z).reshape(self.n, -1)  # d x (S P c)
            return sgn * (self.X @ W).reshape(mu.shape)

        return accelerated_projected_gradient(grad, mu, step, iters)

    def _cone_dual_norms(self, lam: Tensor, D: Tensor, mu: Tensor | None) -> Tensor:
        """Upper bounds of max_{u ∈ K_g, ||u|| ≤ 1} <∓Xᵀ D_g λ_k, u> for every group g = (s, p, k).

        D broadcasts to (n, S, P, c) (0/1 masks per group); K_g = {u : (2D_g − I) X u ≥ 0};
        the bound is ||∓Xᵀ D_g λ_k + Xᵀ (2D_g − I) μ_g|| for the multipliers μ ≥ 0 (0 if None).
        """
        D = D.expand(self.n, self.S, self.P, self.c)
        sign = torch.tensor([1.0, -1.0], dtype=lam.dtype, device=lam.device)[None, :, None, None]
        W = -sign * D * lam[:, None, None, :]
        if mu is not None:
            W = W + (2 * D - 1) * mu
        g = (self.X.T @ W.reshape(self.n, -1)).reshape(self.d, self.S, self.P, self.c)
        return torch.linalg.vector_norm(g, dim=0)


def _nnls(A, b):
    """scipy NNLS with a generous iteration cap."""
    return _scipy_nnls(A, b, maxiter=50 * A.shape[1])



#: number of dual points kept for the extrapolation of the dual (Massias et al., 2018)
_EXTRAPOLATE = 5


def _extrapolate(lams: list[Tensor]) -> Tensor | None:
    """Anderson-type extrapolation of the dual points λ_k (Celer's dual extrapolation): the
    affine combination Σ c_k λ_k (Σ c_k = 1) that minimises ||Σ c_k (λ_{k+1} − λ_k)||. The
    sequence of gradients converges linearly near the optimum, so this point is often far
    closer to the dual optimum than the last λ; it is only a candidate (scaled to feasibility
    and kept when its dual value is better)."""
    if len(lams) < _EXTRAPOLATE:
        return None
    U = torch.stack([(b - a).reshape(-1) for a, b in zip(lams[:-1], lams[1:])])
    K = U @ U.T
    K = K + 1e-12 * float(K.diagonal().max()) * torch.eye(K.shape[0], dtype=K.dtype,
                                                           device=K.device)
    try:
        z = torch.linalg.solve(K, torch.ones(K.shape[0], dtype=K.dtype, device=K.device))
    except RuntimeError:
        return None
    if not bool(torch.isfinite(z).all()) or float(z.sum()) == 0:
        return None
    c = z / z.sum()
    return sum(ci * lam for ci, lam in zip(c.tolist(), lams[1:]))


def _gated_certificate(prog: TwoLayerProgram, x: Tensor, lam: Tensor,
                       c1: Certificate | None = None) -> Certificate:
    """Gated certificate at x: the better dual of λ = ∇L(A x) and a solver's estimate ``lam``
    (``c1``: the certificate at x when already computed)."""
    c1 = prog.certificate(x) if c1 is None else c1
    if hasattr(prog.loss, "project_dual"):  # offset: the dual needs 1ᵀΛ = 0
        lam = prog.loss.project_dual(lam, prog.Y)
    h = prog.dual_norms(prog.rmatvec(lam)[None])
    dual, sc = scaled_dual(prog.loss, lam, prog.Y, float(h.max()) if h.numel() else 0.0,
                           prog.reg)
    if dual <= c1.dual:
        return c1
    gap = max(c1.primal - dual, 0.0)
    return Certificate(primal=c1.primal, dual=dual, gap=gap,
                       relative_gap=relative(gap, c1.primal), scope=c1.scope,
                       problem=c1.problem, n_patterns=c1.n_patterns, dual_scale=sc)
