r"""Convex programs of two-layer ReLU and gated-ReLU networks.

Sources: Pilanci & Ergen (ICML 2020); Mishkin, Sahiner & Pilanci (ICML 2022).

Data X (n x d, with a ones column when the first layer has a bias), targets Y (n x c), weight
decay β = ``reg``, patterns D_p = diag(1[X g_p ≥ 0]), p = 1..P (see :mod:`convexnn.patterns`),
cones K_p = {u : (2D_p − I) X u ≥ 0}. The variable is x ∈ R^{S x P x d x c}.

**ReLU** (``activation="relu"``, S = 2: x[0] = v, x[1] = w)::

    min  L( Σ_p D_p X (v_p − w_p), Y ) + β Σ_{p,k} (||v_{p,:,k}|| + ||w_{p,:,k}||)
    s.t. (2D_p − I) X v_{p,:,k} ≥ 0,  (2D_p − I) X w_{p,:,k} ≥ 0.

For c = 1 this is exactly the scalar-output program of Pilanci & Ergen. For c > 1 it is the
*output-separable* restriction of the copositive program (math.md §3): every neuron feeds one
output, so its optimum upper-bounds the vector-output network optimum; the exact vector-output
program is in :mod:`convexnn.formulations.copositive`. Read-back: each non-zero column block
z = v_{p,:,k} (or w) is a neuron u = z / sqrt||z||, output weight ±sqrt||z|| on output k.

**Gated ReLU** (``activation="gated"``, S = 1): the unconstrained group program ::

    min  L( Σ_p D_p X V_p, Y ) + β Σ_p ||V_p||_{*}          (||·||_* = ||·||_2 when c = 1)

exactly equivalent to the gated network f(x) = Σ_j 1[gᵀ_j x ≥ 0] (u_jᵀ x) v_jᵀ with gates g_p,
weight decay β/2 Σ(||u||² + ||v||²), one neuron per singular pair of V_p (neurons serve all
outputs through the nuclear norm). Prox: singular-value soft-thresholding.

Certificates follow :mod:`convexnn.certificates`; for the cone-constrained groups the dual-norm
bound uses non-negative multipliers μ (from the augmented Lagrangian) via
max_{u ∈ K, ||u|| ≤ 1} <y, u> ≤ ||y + Bᵀμ|| for K = {u : B u ≥ 0}, μ ≥ 0.

Memory: the n x P masks are cached as bools (n·P bytes) when n·P ≤ ``mask_cache_limit`` and
recomputed per row chunk otherwise; the gated path (FISTA) never forms an n x P float array.
The ReLU path stores X x (n x S x P x c) and the multipliers μ (same size): O(nP) is
inherent to the cone constraints.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
from scipy.optimize import nnls as _scipy_nnls
from torch import Tensor

from ..certificates import SCOPE_GLOBAL, SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ..losses import Loss, get_loss
from ..networks import TwoLayerNetwork
from ..patterns import (
    DEFAULT_CHUNK,
    PatternSet,
    _mask_hashes,
    bool_masks,
    deduplicate_gates,
    sample_gates,
    search_gates,
)

__all__ = ["TwoLayerProgram"]


class TwoLayerProgram:
    """The convex program of a two-layer network over a pattern set (see module docstring)."""

    def __init__(self, X: Tensor, Y: Tensor, patterns: PatternSet, reg: float,
                 loss: str | Loss = "squared", activation: str = "relu", *,
                 intercept: bool = False, chunk_size: int = DEFAULT_CHUNK,
                 mask_cache_limit: int = 50_000_000):
        if activation not in ("relu", "gated"):
            raise ValueError(f"activation must be 'relu' or 'gated', got {activation!r}")
        if reg <= 0:
            raise ValueError(f"reg must be > 0, got {reg}")
        self.X, self.Y = X, Y
        self.patterns = patterns
        self.G = patterns.gates.to(dtype=X.dtype, device=X.device)
        self.reg = float(reg)
        self.loss = get_loss(loss)
        self.activation = activation
        self.intercept = intercept
        self.n, self.d = X.shape
        self.c = Y.shape[1]
        self.P = self.G.shape[1]
        self.S = 2 if activation == "relu" else 1
        self.chunk = int(chunk_size)
        self.nuclear = activation == "gated" and self.c > 1
        self._M = None  # bool masks (1 byte per entry), when n·P ≤ mask_cache_limit
        self._Mf = None  # float masks, made on first use by the ReLU kernels only
        if self.n * self.P <= mask_cache_limit:
            self._M = bool_masks(X, self.G, self.chunk)

    # ------------------------------------------------------------ description
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.S, self.P, self.d, self.c)

    def zeros(self) -> Tensor:
        return torch.zeros(self.shape, dtype=self.X.dtype, device=self.X.device)

    def description(self) -> str:
        if self.activation == "gated":
            return ("gated ReLU: group-l2 lasso" if self.c == 1
                    else "gated ReLU: group nuclear-norm program") + " over the patterns"
        if self.c == 1:
            return "ReLU: cone-constrained group lasso (Pilanci & Ergen) over the patterns"
        return ("ReLU vector output: output-separable cone-constrained group lasso "
                "(a restriction of the copositive program) over the patterns")

    # ---------------------------------------------------------------- kernels
    def _chunks(self):
        for s in range(0, self.n, self.chunk):
            e = min(s + self.chunk, self.n)
            Xc = self.X[s:e]
            M = self._M[s:e] if self._M is not None else Xc @ self.G >= 0
            yield s, e, Xc, M.to(Xc.dtype)

    @property
    def masks(self) -> Tensor:
        """All masks (n x P) as floats; O(nP) memory (the ReLU program's kernels: its cone
        constraints are O(nP) anyway). The gated kernels never form it: they use the bool
        cache or recompute the masks per row chunk."""
        if self._Mf is None:
            M = self._M if self._M is not None else self.X @ self.G >= 0
            if self._M is None:
                return M.to(self.X.dtype)
            self._Mf = M.to(self.X.dtype)
        return self._Mf

    def matvec(self, V: Tensor) -> Tensor:
        """A V = Σ_p D_p X V_p for V of shape (P, d, c); returns (n, c)."""
        Vf = V.permute(1, 0, 2).reshape(self.d, self.P * self.c)
        out = []
        for _, _, Xc, M in self._chunks():
            XV = (Xc @ Vf).reshape(-1, self.P, self.c)
            out.append(torch.einsum("npc,np->nc", XV, M))
        return torch.cat(out, 0)

    def rmatvec(self, R: Tensor) -> Tensor:
        """Aᵀ R = (Xᵀ D_p R)_p for R of shape (n, c); returns (P, d, c)."""
        acc = torch.zeros(self.d, self.P * self.c, dtype=R.dtype, device=R.device)
        for s, e, Xc, M in self._chunks():
            W = (M[:, :, None] * R[s:e, None, :]).reshape(e - s, self.P * self.c)
            acc += Xc.T @ W
        return acc.reshape(self.d, self.P, self.c).permute(1, 0, 2)

    # ---------------------------------------------------------------- penalty
    def group_norms(self, x: Tensor) -> Tensor:
        """Per-group norms: (S, P, c) column norms, or (S, P) nuclear norms."""
        if self.nuclear:
            return torch.linalg.svdvals(x).sum(-1)
        return torch.linalg.vector_norm(x, dim=2)

    def penalty(self, x: Tensor) -> Tensor:
        return self.reg * self.group_norms(x).sum()

    def prox(self, x: Tensor, step: float) -> Tensor:
        t = step * self.reg
        if self.nuclear:
            U, s, Vh = torch.linalg.svd(x, full_matrices=False)
            return (U * (s - t).clamp_min(0)[..., None, :]) @ Vh
        nrm = torch.linalg.vector_norm(x, dim=2, keepdim=True)
        return x * (1 - t / nrm.clamp_min(1e-300)).clamp_min(0)

    def prox_penalty(self, x: Tensor, step: float) -> tuple[Tensor, Tensor]:
        """(prox(x, step), penalty at it) sharing one SVD / one set of norms."""
        t = step * self.reg
        if self.nuclear:
            U, s, Vh = torch.linalg.svd(x, full_matrices=False)
            s = (s - t).clamp_min(0)
            return (U * s[..., None, :]) @ Vh, self.reg * s.sum()
        nrm = torch.linalg.vector_norm(x, dim=2, keepdim=True)
        return x * (1 - t / nrm.clamp_min(1e-300)).clamp_min(0), \
            self.reg * (nrm - t).clamp_min(0).sum()

    def dual_norms(self, Gr: Tensor) -> Tensor:
        """Dual norm of each group of a gradient-shaped array (spectral or l2)."""
        if self.nuclear:
            return torch.linalg.matrix_norm(Gr, ord=2)
        return torch.linalg.vector_norm(Gr, dim=2)

    # -------------------------------------------------- gated: smooth protocol
    def linear(self, x: Tensor) -> Tensor:
        V = x[0] - x[1] if self.S == 2 else x[0]
        return self.matvec(V)

    def smooth_value(self, Z: Tensor) -> Tensor:
        return self.loss.value(Z, self.Y)

    def smooth_grad(self, Z: Tensor) -> Tensor:
        g = self.rmatvec(self.loss.grad(Z, self.Y))
        return torch.stack([g, -g]) if self.S == 2 else g[None]

    def smooth_value_grad(self, Z: Tensor) -> tuple[Tensor, Tensor]:
        """Value and gradient at the state Z sharing one loss evaluation (for an offset loss,
        one inner solve for b*: ∇L_b(Z) = ∇L(Z + 1 b*ᵀ))."""
        base, W = self.loss, Z
        if hasattr(self.loss, "offset") and hasattr(self.loss, "base"):
            base, W = self.loss.base, Z + self.loss.offset(Z, self.Y)
        g = self.rmatvec(base.grad(W, self.Y))
        return base.value(W, self.Y), (torch.stack([g, -g]) if self.S == 2 else g[None])

    # ---------------------------------------------------- ReLU: AL protocol
    def relu_state(self, x: Tensor) -> Tensor:
        """X x for every group: (n, S, P, c)."""
        xf = x.permute(2, 0, 1, 3).reshape(self.d, -1)
        return (self.X @ xf).reshape(self.n, self.S, self.P, self.c)

    def relu_predict(self, XV: Tensor) -> Tensor:
        """Convex-model predictions Σ_p D_p X (v_p − w_p) from the state."""
        return torch.einsum("npc,np->nc", XV[:, 0] - XV[:, 1], self.masks)

    def constraint(self, XV: Tensor) -> Tensor:
        """(2D_p − I) X x_{s,p,:,k}: must be ≥ 0. Shape (n, S, P, c)."""
        sgn = 2 * self.masks - 1
        return sgn[:, None, :, None] * XV

    def augmented(self, mu: Tensor, rho: float) -> _AugmentedReLU:
        return _AugmentedReLU(self, mu, rho)

    def violation(self, XV: Tensor) -> float:
        return float((-self.constraint(XV)).clamp_min(0).max()) if XV.numel() else 0.0

    def network_predict(self, XV: Tensor) -> Tensor:
        """Predictions of the read-back ReLU network: Σ_p (X v_p)_+ − (X w_p)_+."""
        return (XV[:, 0].clamp_min(0) - XV[:, 1].clamp_min(0)).sum(1)

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
        z, mu_prev, t = mu, mu, 1.0
        for _ in range(iters):
            W = self.X.T @ (base + sgn * z).reshape(self.n, -1)  # d x (S P c)
            grad = sgn * (self.X @ W).reshape(mu.shape)
            mu_new = (z - step * grad).clamp_min(0)
            t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
            z = mu_new + ((t - 1) / t_new) * (mu_new - mu_prev)
            mu_prev, t = mu_new, t_new
        return mu_prev

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

    def objective(self, x: Tensor) -> float:
        """Convex objective at x (uses the pattern masks, not the network's true ReLU)."""
        if self.activation == "relu":
            Z = self.relu_predict(self.relu_state(x))
        else:
            Z = self.linear(x)
        return float(self.loss.value(Z, self.Y) + self.penalty(x))

    # -------------------------------------------------------------- read-back
    def _split(self, W: Tensor) -> tuple[Tensor, Tensor]:
        """Split augmented first-layer rows into (weights, bias)."""
        if self.intercept:
            return W[:, :-1], W[:, -1]
        return W, torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)

    def to_network(self, x: Tensor, tol: float = 0.0) -> TwoLayerNetwork:
        """Read the non-convex network back from the convex variables (balanced weights)."""
        dt, dev = x.dtype, x.device
        if self.activation == "relu":
            nrm = torch.linalg.vector_norm(x, dim=2)  # (S, P, c)
            s_idx, p_idx, k_idx = torch.nonzero(nrm > tol, as_tuple=True)
            z = x[s_idx, p_idx, :, k_idx]  # (m, d)
            r = nrm[s_idx, p_idx, k_idx].sqrt()
            U = z / r[:, None]
            W2 = torch.zeros(self.c, len(r), dtype=dt, device=dev)
            W2[k_idx, torch.arange(len(r), device=dev)] = torch.where(s_idx == 0, r, -r)
            W, b = self._split(U)
            return TwoLayerNetwork(W, b, W2, "relu")
        # gated: one neuron per singular pair of each V_p
        U_, s_, Vh_ = torch.linalg.svd(x[0], full_matrices=False)  # (P,d,q),(P,q),(P,q,c)
        p_idx, q_idx = torch.nonzero(s_ > tol, as_tuple=True)
        sq = s_[p_idx, q_idx].sqrt()
        U = U_[p_idx, :, q_idx] * sq[:, None]
        W2 = (Vh_[p_idx, q_idx, :] * sq[:, None]).T.contiguous()
        gates = self.G.T[p_idx]
        W, b = self._split(U)
        gw, gb = self._split(gates)
        return TwoLayerNetwork(W, b, W2, "gated", gw, gb)

    @classmethod
    def from_network(cls, net: TwoLayerNetwork, X: Tensor, Y: Tensor, reg: float,
                     loss: str | Loss = "squared", *, intercept: bool = True,
                     extra_patterns: PatternSet | None = None) -> tuple[TwoLayerProgram, Tensor]:
        """Reverse map: a program over the network's own patterns (plus ``extra_patterns``) and
        the convex variables reproducing the network's predictions.

        ReLU neuron (u, b, v): its pattern is 1[X ũ ≥ 0] with ũ = (u, b), and it contributes
        ũ·v_k to v (v_k > 0) or ũ·|v_k| to w of every output k. The convex penalty is at most the
        network's weight decay (equal for balanced scalar-output networks).
        """
        net = net.to(device=X.device, dtype=X.dtype)
        Wa = net.first_layer_weights
        if intercept:
            Wa = torch.cat([Wa, net.first_layer_bias[:, None]], 1)
        elif bool((net.first_layer_bias != 0).any()):
            raise ValueError("the network has a first-layer bias but intercept=False")
        gates_src = Wa if net.activation == "relu" else (
            torch.cat([net.gate_weights, net.gate_bias[:, None]], 1) if intercept
            else net.gate_weights)
        G = gates_src.T.contiguous()
        if extra_patterns is not None:
            G = torch.cat([G, extra_patterns.gates.to(G)], 1)
        Gd, col = deduplicate_gates(X, G, drop_zero=False, return_inverse=True)
        exhaustive = bool(extra_patterns is not None and extra_patterns.exhaustive)
        prog = cls(X, Y, PatternSet(Gd, exhaustive=exhaustive), reg, loss, net.activation,
                   intercept=intercept)
        idx = torch.as_tensor(col[:Wa.shape[0]], device=X.device)  # each neuron's pattern
        x = prog.zeros()
        W2 = net.second_layer_weights  # (c, m)
        if net.activation == "relu":
            # neuron j adds ũ_j |v_kj| to v (v_kj > 0) or w (v_kj < 0) of its pattern, output k
            for s_, sel in ((0, W2 > 0), (1, W2 < 0)):
                contrib = (W2.abs() * sel).T[:, None, :] * Wa[:, :, None]  # (m, d, c)
                x[s_].index_add_(0, idx, contrib)
        else:
            x[0].index_add_(0, idx, Wa[:, :, None] * W2.T[:, None, :])
        return prog, x


def _nnls(A, b):
    """scipy NNLS with a generous iteration cap."""
    return _scipy_nnls(A, b, maxiter=50 * A.shape[1])


class _AugmentedReLU:
    """Smooth part of the augmented Lagrangian of the ReLU program, in the FISTA protocol.

    f_ρ(x) = L(Σ_p D_p X (v_p − w_p)) + (ρ/2) ||(μ/ρ − C(x))_+||²,  C(x) = (2D_p − I) X x.
    """

    def __init__(self, prog: TwoLayerProgram, mu: Tensor, rho: float):
        self.prog, self.mu, self.rho = prog, mu, float(rho)
        self.penalty = prog.penalty
        self.prox = prog.prox

    def linear(self, x: Tensor) -> Tensor:
        return self.prog.relu_state(x)

    def _shifted(self, XV: Tensor) -> Tensor:
        return (self.mu - self.rho * self.prog.constraint(XV)).clamp_min(0)

    def smooth_value(self, XV: Tensor) -> Tensor:
        p = self.prog
        Z = p.relu_predict(XV)
        return p.loss.value(Z, p.Y) + (self._shifted(XV) ** 2).sum() / (2 * self.rho)

    def multiplier_term(self, XV: Tensor) -> Tensor:
        """Bᵀ μ̃ with μ̃ = (μ − ρ C)_+ ≥ 0, shaped like x."""
        p = self.prog
        sgn = 2 * p.masks - 1
        W = sgn[:, None, :, None] * self._shifted(XV)
        return (p.X.T @ W.reshape(p.n, -1)).reshape(p.d, p.S, p.P, p.c).permute(1, 2, 0, 3)

    def smooth_grad(self, XV: Tensor) -> Tensor:
        p = self.prog
        Z = p.relu_predict(XV)
        R = p.loss.grad(Z, p.Y)
        M = p.masks
        sgn = 2 * M - 1
        Wm = (M[:, :, None] * R[:, None, :])
        sh = self._shifted(XV)
        Wfull = torch.stack([Wm, -Wm], 1) - sgn[:, None, :, None] * sh
        return (p.X.T @ Wfull.reshape(p.n, -1)).reshape(p.d, p.S, p.P, p.c).permute(1, 2, 0, 3)

    def updated_multipliers(self, XV: Tensor) -> Tensor:
        return self._shifted(XV)


class _ADMMSplitting:
    """The program in the protocol of :func:`convexnn.solvers.admm.admm`.

    A x = Σ_p D_p X (v_p − w_p) (per output column), B x = ((2D_p − I) X x_{s,p,:,k}) for the
    ReLU cones (absent for gated ReLU), y-block weight γ = ``gamma_scale`` · sqrt(||X||_F² / d)
    (relative to the root-mean eigenvalue of XᵀX, so the splitting is invariant to rescaling
    X; 0.1 was fastest on every problem we measured: 20–30 iterations to a 1e-6 gap on the
    gated programs of benchmarks/bench_two_layer.py, against 200+ at 1 and 800+ at 3; a light
    y-block makes the x-step close to a Newton step on the loss). The normal matrix
    K = AᵀA + γ² I + BᵀB has the structure that makes ADMM cheap here: BᵀB is block diagonal
    with the *same* d x d block XᵀX for every group ((2D_p − I)² = I), so
    K₀ = γ² I + BᵀB = blockdiag(C⁻¹), C = (γ² I + XᵀX)⁻¹ (C = I / γ² for gated ReLU), and K is
    inverted once, by the cheaper of

    * sample space (Woodbury): K⁻¹ = K₀⁻¹ − K₀⁻¹ Aᵀ N⁻¹ A K₀⁻¹ with the n x n matrix
      N = I + A K₀⁻¹ Aᵀ = I + S · (X C Xᵀ) ∘ (M Mᵀ)  (M: the n x P masks, S: 2 for ReLU);
    * feature space: K restricted to v − w is C⁻¹ + S·G with the (Pd) x (Pd) Gram matrix
      G = (D X)ᵀ (D X) (accumulated over row chunks), while v + w only sees C⁻¹.
    """

    def __init__(self, prog: TwoLayerProgram, memory_limit: int = 60_000_000,
                 gamma_scale: float = 0.1, cone_weight: float = 1.0, space: str = "auto"):
        self.prog = prog
        X = prog.X
        self.has_cone = prog.activation == "relu"
        d, n, P, S = prog.d, prog.n, prog.P, prog.S
        XtX = X.T @ X
        self.gamma = gamma_scale * math.sqrt(max(float(XtX.diagonal().sum()) / d, 1e-300))
        g2 = self.gamma ** 2
        eye = torch.eye(d, dtype=X.dtype, device=X.device)
        self.delta = float(cone_weight)  # B is scaled by δ: the cone block weighs δ²
        self.C = torch.linalg.inv(g2 * eye + self.delta ** 2 * XtX) if self.has_cone \
            else eye / g2
        self.C = 0.5 * (self.C + self.C.T)
        M = prog.masks
        self.sgn = 2 * M - 1
        cost_n, cost_f = self._costs(prog, memory_limit)
        if not math.isfinite(min(cost_n, cost_f)):
            raise MemoryError(f"ADMM normal equations too large (n = {n}, P·d = {P * d}); use "
                              "solver='fista' (gated) or 'al' (ReLU)")
        if space not in ("auto", "samples", "features"):
            raise ValueError(f"space must be 'auto', 'samples' or 'features', got {space!r}")
        self.space = space if space != "auto" else (
            "samples" if cost_n <= cost_f else "features")
        Pd = P * d
        if self.space == "samples":
            N = S * (X @ self.C @ X.T) * (M @ M.T)
            N.diagonal().add_(1.0)  # N ⪰ I: well conditioned, so keep its explicit inverse
            self.inv = torch.cholesky_inverse(torch.linalg.cholesky(N))
        else:
            G = torch.zeros(Pd, Pd, dtype=X.dtype, device=X.device)
            for _, _, Xc, Mc in prog._chunks():
                DX = (Mc[:, :, None] * Xc[:, None, :]).reshape(Xc.shape[0], Pd)
                G += DX.T @ DX
            Cinv = torch.linalg.inv(self.C)
            G = S * G
            for p in range(P):
                G[p * d:(p + 1) * d, p * d:(p + 1) * d] += Cinv
            self.inv = torch.cholesky_inverse(torch.linalg.cholesky(G))  # K ⪰ C⁻¹ ⪰ γ² I

    @staticmethod
    def _costs(prog: TwoLayerProgram, memory_limit: int) -> tuple[float, float]:
        """Flop estimates of the two factorisations (inf when over the memory limit)."""
        n, Pd = prog.n, prog.P * prog.d
        cost_n = n * n * (prog.P + prog.d) + n ** 3 / 3 if n * n <= memory_limit else math.inf
        cost_f = Pd * Pd * n + Pd ** 3 / 3 if Pd * Pd <= memory_limit else math.inf
        return cost_n, cost_f

    @classmethod
    def fits(cls, prog: TwoLayerProgram, memory_limit: int = 60_000_000) -> bool:
        """Whether one of the factorisations fits in ``memory_limit`` entries."""
        return math.isfinite(min(cls._costs(prog, memory_limit)))

    # --------------------------------------------------------------- operators
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        p = self.prog
        if not self.has_cone:
            return p.matvec(x[0]), None
        XV = p.relu_state(x)
        return p.relu_predict(XV), self.delta * self.sgn[:, None, :, None] * XV

    def adjoint(self, r: Tensor, q: Tensor | None) -> Tensor:
        p = self.prog
        if not self.has_cone:
            return p.rmatvec(r)[None]
        Wm = p.masks[:, :, None] * r[:, None, :]  # (n, P, c)
        W = torch.stack([Wm, -Wm], 1)
        if q is not None:
            W = W + self.delta * self.sgn[:, None, :, None] * q
        return (p.X.T @ W.reshape(p.n, -1)).reshape(p.d, p.S, p.P, p.c).permute(1, 2, 0, 3)

    def _apply_C(self, r: Tensor) -> Tensor:
        return self.C @ r  # (d x d) @ (..., d, c)

    def _A(self, x: Tensor) -> Tensor:
        V = x[0] - x[1] if self.has_cone else x[0]
        return self.prog.matvec(V)

    def _At(self, r: Tensor) -> Tensor:
        g = self.prog.rmatvec(r)
        return torch.stack([g, -g]) if self.has_cone else g[None]

    def solve_normal(self, rhs: Tensor) -> Tensor:
        if self.space == "samples":
            x0 = self._apply_C(rhs)
            t = self.inv @ self._A(x0)
            return x0 - self._apply_C(self._At(t))
        p = self.prog
        Pd = p.P * p.d
        if self.has_cone:
            a = self._apply_C(rhs[0] + rhs[1])
            r = (rhs[0] - rhs[1]).reshape(Pd, p.c)
            b = (self.inv @ r).reshape(p.P, p.d, p.c)
            return torch.stack([0.5 * (a + b), 0.5 * (a - b)])
        return (self.inv @ rhs[0].reshape(Pd, p.c)).reshape(rhs.shape)

    def warm_state(self, x0: Tensor, rho: float) -> dict:
        """ADMM state at x0 that the first iteration leaves in place when x0 is optimal.

        z = A x0, s = (B x0)_+, u = ∇L(A x0)/ρ, w = 0, and v = q/(ργ) with q a subgradient of
        the penalty at x0 (β x0_g/||x0_g|| on non-zero groups, β U Vᵀ for nuclear-norm groups,
        the loss gradient's group part clipped to the β-ball on zero groups): then the z- and
        y-updates return A x0 and x0 exactly.
        """
        p = self.prog
        z, Bx = self.forward(x0)
        lam = p.loss.grad(z, p.Y)
        grad = self.adjoint(lam, None)  # Aᵀλ, shaped like x
        if p.nuclear:
            U, sv, Vh = torch.linalg.svd(x0, full_matrices=False)
            q = p.reg * (U * (sv > 0)[..., None, :]) @ Vh
            nz = (sv > 0).any(-1)[..., None, None]
            g_norm = torch.linalg.matrix_norm(grad, ord=2)[..., None, None]
        else:
            nrm = torch.linalg.vector_norm(x0, dim=2, keepdim=True)
            q = p.reg * x0 / nrm.clamp_min(1e-300)
            nz = nrm > 0
            g_norm = torch.linalg.vector_norm(grad, dim=2, keepdim=True)
        q = torch.where(nz, q, -grad * (p.reg / g_norm.clamp_min(p.reg)))
        return {"y": x0, "z": z, "u": lam / rho, "v": q / (rho * self.gamma),
                "s": Bx.clamp_min(0) if Bx is not None else None,
                "w": torch.zeros_like(Bx) if Bx is not None else None, "rho": rho}

    def prox_f(self, v: Tensor, t: float, warm: Tensor | None = None) -> Tensor:
        return self.prog.loss.prox(v, self.prog.Y, t, Z0=warm)

    def prox_g(self, v: Tensor, t: float) -> Tensor:
        return self.prog.prox(v, t)


def lipschitz_estimate(prog: TwoLayerProgram, iters: int = 20, seed: int = 0) -> float:
    """Power-iteration estimate of ||A||² times the loss smoothness (a starting step size)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn((prog.P, prog.d, prog.c), generator=g, dtype=prog.X.dtype).to(prog.X.device)
    v /= torch.linalg.vector_norm(v)
    lam = 1.0
    for _ in range(iters):
        w = prog.rmatvec(prog.matvec(v))
        lam = float(torch.linalg.vector_norm(w))
        if lam == 0 or not math.isfinite(lam):
            return 1.0
        v = w / lam
    return max(lam * prog.loss.smoothness * prog.S, 1e-12)


# ---------------------------------------------------------------------------- CVXPY form
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
    name = prog.loss.name
    if getattr(prog.loss, "base", None) is not None:  # OffsetLoss: a free output offset
        Z = Z + np.ones((n, 1)) @ cp.reshape(cp.Variable(c), (1, c), order="C")
    if name == "squared":
        data = 0.5 * cp.sum_squares(Z - Y)
    elif name == "logistic":
        data = cp.sum(cp.logistic(-cp.multiply(Y, Z)))
    elif name == "cross_entropy":
        data = cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(Y, Z))
    else:  # pragma: no cover - new losses must add their CVXPY form here
        raise NotImplementedError(f"no CVXPY form for loss {name!r}")
    problem = cp.Problem(cp.Minimize(data + prog.reg * pen), cons)
    problem._convexnn_cone_constraints = cons  # for the multipliers (certificate)
    return problem, V


def cvxpy_solution(prog: TwoLayerProgram, V) -> Tensor:
    """Assemble the CVXPY variable values into x of shape (S, P, d, c)."""

    arr = np.stack([np.stack([v.value for v in row]) for row in V])
    return torch.as_tensor(arr, dtype=prog.X.dtype, device=prog.X.device)


# ------------------------------------------------------------------------------ driver
def _has_cvxpy() -> bool:
    try:
        import cvxpy  # noqa: F401
    except ImportError:
        return False
    return True


def solve(prog: TwoLayerProgram, *, solver: str = "auto", tol: float = 1e-6,
          max_iter: int = 10000, max_time: float | None = None, check_every: int = 10,
          x0: Tensor | None = None, verbose: int = 0, cvxpy_solver: str | None = None,
          cvxpy_options: dict | None = None, certify: str = "network",
          admm_options: dict | None = None):
    """Solve the program. Returns ``(x, certificate, result)``.

    ``solver``:

    * ``"admm"`` — ADMM with the normal equations factorised once
      (:class:`_ADMMSplitting`); gated and ReLU, every loss.
    * ``"fista"`` — accelerated proximal gradient, gated only; matrix-free (any size), O(nd +
      Pdc) memory; stopped by the certificate at the better of ∇L and an extrapolated dual.
    * ``"al"`` — augmented Lagrangian with FISTA inner solves, ReLU; matrix-free but slow to
      high accuracy.
    * ``"active_set"`` — ReLU; reduced programs by interior point (CVXPY).
    * ``"cvxpy"`` — the whole program to any installed CVXPY solver (``cvxpy_solver``; default
      CVXPY's choice): the reference for tests.
    * ``"auto"`` — gated: FISTA, always. Measured (CPU s to a certified 1e-4, one thread,
      float64, reg = 0.1·reg_max as the estimators use; ``python benchmarks/bench_speed.py
      --parts a --repeat 1 --limit 60``, benchmarks/results/speed.md):

      ==============================  =========================  =====
      case                            ADMM                       FISTA
      ==============================  =========================  =====
      2000 x 50, P = 100              > 11 (gap 2e-2 at 60 s)    1.9
      2000 x 50, P = 500              > 11 (gap 0.8 at 60 s)     4.4
      digits (1797 x 64), P = 100     > 16 (gap 1e-2 at 60 s)    3.3
      ==============================  =========================  =====

      (At a tiny reg, 1 on 2000 x 50, P = 100, ADMM won: 0.6 s against FISTA > 4 s.)

      ReLU: ADMM when its normal equations fit in memory, else the augmented Lagrangian.
      When ADMM stops short of ``tol`` on a ReLU program and CVXPY is installed, the
      active-set solver finishes from ADMM's iterate (working set = its non-zero groups and
      near-active rows), which converges in a few interior-point solves.

    ``certify`` (ADMM, ReLU): ``"network"`` certifies the read-back network (may stop early
    with a network better than the program's optimum), ``"program"`` the program's own
    optimum; see :func:`_solve_admm`.
    """

    from ..solvers import augmented_lagrangian
    from ..solvers.cvxpy_backend import solve_cvxpy

    polish = solver == "auto" and prog.activation == "relu" and _has_cvxpy()
    if solver == "auto":
        solver = "fista" if prog.activation == "gated" else (
            "admm" if _ADMMSplitting.fits(prog) else "al")
    if solver == "admm":
        t0 = time.perf_counter()
        opts = dict(admm_options or {})
        if polish and prog.S * prog.P * prog.c * prog.d <= 20_000:
            # the polish below is affordable whatever ADMM's support: hand over to it once
            # ADMM's progress stalls
            opts.setdefault("stall_checks", 30)
        out = _solve_admm(prog, tol=tol, max_iter=max_iter, max_time=max_time,
                          check_every=check_every, x0=x0, verbose=verbose, certify=certify,
                          **opts)
        if not polish or out[1].relative_gap <= tol:
            return out
        # ReLU, gap not reached: finish exactly on ADMM's working set (interior point on a
        # reduced program), if that working set is small enough to afford
        from .active_set import solve_active_set

        x_a, cert_a, res_a = out
        groups = int((torch.linalg.vector_norm(x_a, dim=2) > 0).sum())
        if groups * prog.d > 20_000 or (max_time is not None
                                        and time.perf_counter() - t0 >= max_time):
            return out
        left = None if max_time is None else max_time - (time.perf_counter() - t0)
        x_p, cert_p, res_p = solve_active_set(prog, tol=tol, max_time=left, verbose=verbose,
                                              x0=x_a, mu0=res_a.extras["mu"],
                                              cvxpy_solver=cvxpy_solver or "CLARABEL",
                                              cvxpy_options=cvxpy_options)
        if cert_p.primal > cert_a.primal and cert_p.relative_gap >= cert_a.relative_gap:
            return out  # keep the better network
        hist = res_a.history
        for i in range(len(res_p.history)):
            hist.append(res_a.n_iter + res_p.history.iteration[i], res_p.history.objective[i],
                        res_p.history.gap[i], res_p.history.relative_gap[i],
                        res_a.seconds + res_p.history.seconds[i])
        res_p.history = hist
        res_p.extras["admm_iterations"] = res_a.n_iter
        return x_p, cert_p, res_p
    if solver == "active_set":
        from .active_set import solve_active_set

        return solve_active_set(prog, tol=tol, max_time=max_time, verbose=verbose,
                                cvxpy_solver=cvxpy_solver or "CLARABEL",
                                cvxpy_options=cvxpy_options)
    x = prog.zeros() if x0 is None else x0
    if solver == "cvxpy":
        problem, V = to_cvxpy(prog)
        res = solve_cvxpy(problem, solver=cvxpy_solver, verbose=bool(verbose),
                          **(cvxpy_options or {}))
        x = cvxpy_solution(prog, V)
        mu = None
        if prog.activation == "relu":  # the solver's cone multipliers tighten the dual bound
            duals = [np.maximum(np.asarray(c_.dual_value), 0) for c_ in
                     problem._convexnn_cone_constraints]
            mu = torch.as_tensor(np.stack(duals).reshape(prog.P, prog.S, prog.n, prog.c),
                                 dtype=x.dtype, device=x.device).permute(2, 1, 0, 3)
        cert = prog.certificate(x, mu=mu, refine=50)
        cert = prog.tighten(cert, [prog.gradients(x, network=False)], mu)
        res.history.append(0, cert.primal, cert.gap, cert.relative_gap, res.seconds)
        return x, cert, res
    L0 = lipschitz_estimate(prog)
    if solver == "fista":
        if prog.activation != "gated":
            raise ValueError("solver='fista' solves the unconstrained (gated) program; "
                             "use solver='al' for the cone-constrained ReLU program")

        return _solve_fista(prog, x, L0, tol=tol, max_iter=max_iter, max_time=max_time,
                            check_every=check_every, verbose=verbose)
    if solver == "al":
        if prog.activation != "relu":
            raise ValueError("solver='al' is for the cone-constrained ReLU program")

        checks = [0]

        def monitor(x_, s_, sub):
            # cheap estimate (convex objective at the possibly infeasible iterate vs the dual
            # bound); the honest certificate (feasible repair) only when it looks converged
            checks[0] += 1
            est = prog.certificate(x_, s_, sub, repair=False)
            if est.relative_gap > tol and checks[0] % 10:
                return None
            c_ = prog.certificate(x_, s_, sub, refine=20 if est.relative_gap <= tol else 0)
            return c_.primal, c_.gap, c_.relative_gap

        mu0 = torch.zeros((prog.n, prog.S, prog.P, prog.c), dtype=x.dtype, device=x.device)
        res = augmented_lagrangian(prog, x, mu0, rho=prog.loss.smoothness, tol=tol,
                                   max_iter=max_iter, max_time=max_time,
                                   check_every=check_every, monitor=monitor, verbose=verbose)
        sub = prog.augmented(res.extras["mu"], res.extras["rho"])
        cert = prog.certificate(res.x, None, sub, refine=50)
        x_r = prog.repair(res.x)
        cert = prog.tighten(cert, [prog.gradients(x_r, network=False)],
                            sub.updated_multipliers(prog.relu_state(res.x)))
        return x_r, cert, res
    raise ValueError(f"unknown solver {solver!r}; expected 'auto', 'admm', 'fista', 'al', "
                     "'active_set' or 'cvxpy'")


def _solve_admm(prog: TwoLayerProgram, *, tol: float, max_iter: int, max_time: float | None,
                check_every: int, x0: Tensor | None, verbose: int, certify: str = "network",
                rho: float | None = None, stall_checks: int | None = None, **split_options):
    """ADMM (:mod:`convexnn.solvers.admm`), certified every ``check_every`` iterations.

    ``certify="network"`` (ReLU): the primal is the objective of the read-back network
    (:meth:`TwoLayerProgram.network_certificate`) — cheap, and the solver may stop as soon as
    that network is certified within ``tol`` of the program's optimum, possibly *below* it (an
    iterate slightly outside the cones reads back to a network with other activation patterns).
    ``certify="program"``: the primal is the program's objective at the feasible repair of the
    iterate (:meth:`TwoLayerProgram.certificate`), so the solver runs until it has solved the
    program itself to ``tol`` (used to check the solver against CVXPY).

    A start ``x0`` warm-starts every block consistently (:meth:`_ADMMSplitting.warm_state`);
    ``rho`` is the initial penalty (e.g. the final one of an earlier, similar solve).
    """
    from ..solvers.admm import admm

    if certify not in ("network", "program"):
        raise ValueError(f"certify must be 'network' or 'program', got {certify!r}")
    t0 = time.perf_counter()
    split = _ADMMSplitting(prog, **split_options)
    setup = time.perf_counter() - t0
    x = prog.zeros() if x0 is None else x0
    rho = 1.0 if rho is None else float(rho)
    warm = None if x0 is None else split.warm_state(x0, rho)
    state = {}

    def monitor(y, lam, mu):
        if prog.activation == "gated":
            c_ = _gated_certificate(prog, y, lam)
        elif certify == "network":
            c_ = prog.network_certificate(y, [lam], mu * split.delta)
        else:
            c_ = prog.certificate(y, mu=mu * split.delta)
        if prog.activation == "relu" and tol < c_.relative_gap <= 30 * tol:
            # close: the μ-based cone bounds may be what is left of the gap; make them exact
            # (NNLS per group: at most every 5th check, so it cannot dominate the run time)
            state["near"] = state.get("near", -1) + 1
            if state["near"] % 5 == 0:
                c_ = prog.tighten(c_, [prog.gradients(y, certify == "network"), lam],
                                  mu * split.delta, max_seconds=0.5)
        state["cert"] = c_
        return c_.primal, c_.gap, c_.relative_gap

    res = admm(split, x, rho=rho, tol=tol, max_iter=max_iter,
               max_time=None if max_time is None else max(max_time - setup, 0.0),
               check_every=check_every, monitor=monitor, verbose=verbose, warm=warm,
               stall_checks=stall_checks)
    cert = state.get("cert")
    if cert is None or res.history.iteration[-1] != res.n_iter:
        monitor(res.x, res.extras["lam"], res.extras["mu"])
        cert = state["cert"]
    if prog.activation == "relu" and certify == "program":
        res.x = prog.repair(res.x)  # the certified primal is attained at the repaired point
    res.extras["setup_seconds"] = setup
    res.extras["normal_space"] = split.space
    for i in range(len(res.history.seconds)):  # include the factorisation in the clock
        res.history.seconds[i] += setup
    res.seconds += setup
    return res.x, cert, res


def _solve_fista(prog: TwoLayerProgram, x: Tensor, L0: float, *, tol: float, max_iter: int,
                 max_time: float | None, check_every: int, verbose: int):
    """FISTA on the gated program, stopped by the certificate at the better of λ = ∇L(A x)
    and an extrapolation of the last λ's (:func:`_extrapolate`)."""
    from ..solvers import fista

    lams: list[Tensor] = []

    def monitor(x_, s_):
        c_ = prog.certificate(x_, s_)
        lams.append(prog.loss.grad(s_, prog.Y))
        del lams[:-_EXTRAPOLATE]
        lam_x = _extrapolate(lams)
        if lam_x is not None and c_.relative_gap > tol:
            c_ = _gated_certificate(prog, x_, lam_x, c_)
        return c_.primal, c_.gap, c_.relative_gap

    res = fista(prog, x, step=1.0 / L0, tol=tol, max_iter=max_iter, max_time=max_time,
                check_every=check_every, monitor=monitor, verbose=verbose)
    cert = prog.certificate(res.x)
    lam_x = _extrapolate(lams)
    if lam_x is not None:
        cert = _gated_certificate(prog, res.x, lam_x, cert)
    return res.x, cert, res


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


def solve_with_search(prog: TwoLayerProgram, *, rounds: int = 10, search_starts: int = 100,
                      search_iters: int = 25, add_per_round: int = 20, prune: bool = True,
                      random_state=None,
                      verbose: int = 0, **solve_options
                      ) -> tuple[TwoLayerProgram, Tensor, Certificate, dict]:
    """Column generation over activation patterns: solve, grow the pattern set, re-solve.

    Each round, after solving the program over the current patterns S (``solve``), two kinds
    of patterns are added:

    * **dual search** — at λ = ∇L(prediction of the read-back network), the patterns whose
      dual constraint max_{u ∈ K_D, ||u|| ≤ 1} ∓λᵀ D X u ≤ β is violated, found by the local
      search :func:`convexnn.patterns.search_gates` from random starts and from the current
      neurons (the ``add_per_round`` most violated, value > β, deduplicated) — a pattern whose
      constraint is violated is one the optimum over S ∪ {D} uses to go lower;
    * **primal refinement** (ReLU) — the activation patterns of the read-back network's own
      neurons, so that the next program contains that network (reverse map,
      :meth:`TwoLayerProgram.from_network`) and its optimum is at most the network's objective.

    With ``prune``, patterns whose groups are all zero at the current solution are dropped
    (the program stays near the size of the network). The next program is warm-started from
    that network. Rounds stop when nothing new is found,
    when the objective stops improving (relative 1e-6), or after ``rounds`` rounds. The final
    certificate is the final program's (scope "sampled patterns": optimal over the patterns
    sampled *and found*; the search is a heuristic, so "no violation found" is reported but is
    not a proof of global optimality). Returns ``(program, x, certificate, info)`` with
    per-round ``info["rounds"]`` (patterns, objective, dual bound, largest violation found
    relative to β), ``info["results"]`` (every solver result) and ``info["result"]`` (the
    returned solution's).
    """
    rng = np.random.default_rng(random_state)
    t0 = time.perf_counter()
    max_time = solve_options.pop("max_time", None)

    def left():
        return None if max_time is None else max(max_time - (time.perf_counter() - t0), 0.0)

    x, cert, res = solve(prog, verbose=verbose, max_time=max_time, **solve_options)
    log = [{"patterns": prog.P, "objective": cert.primal, "dual": cert.dual,
            "max_violation": None}]
    info = {"rounds": log, "results": [res], "result": res, "stop": "max rounds"}
    if rounds <= 0:
        info["stop"] = "no search"
    for r in range(rounds):
        if max_time is not None and left() <= 0:
            info["stop"] = "max_time"
            break
        net = prog.to_network(x)
        if prog.activation == "relu":
            Z = prog.network_predict(prog.relu_state(x))
        else:
            Z = prog.linear(x)
        lam = prog.loss.grad(Z, prog.Y)
        dirs = torch.cat([-lam, lam], 1)
        starts = sample_gates(prog.X, search_starts, rng, kind="data",
                              intercept_column=prog.intercept, deduplicate=False).gates
        own = net.first_layer_weights if net.activation == "relu" else net.gate_weights
        own_b = net.first_layer_bias if net.activation == "relu" else net.gate_bias
        if own.shape[0]:
            own_aug = torch.cat([own, own_b[:, None]], 1) if prog.intercept else own
            starts = torch.cat([starts, own_aug.T.to(starts)], 1)
        gates, vals = search_gates(prog.X, dirs, starts, iters=search_iters,
                                   chunk=prog.chunk, gated=prog.activation == "gated")
        vmax = float(vals.max()) if vals.numel() else 0.0
        order = torch.argsort(vals, descending=True)
        order = order[vals[order] > prog.reg]
        new = deduplicate_gates(prog.X, gates[:, order], chunk=prog.chunk) \
            if order.numel() else gates[:, :0]
        # drop patterns already in the program, keep the most violated few
        have = set(_mask_hashes(prog.X, prog.G, prog.chunk).tolist())
        if new.shape[1]:
            hn = _mask_hashes(prog.X, new, prog.chunk).tolist()
            keep = [i for i, h in enumerate(hn) if h not in have][:add_per_round]
            new = new[:, keep]
        old = prog.G
        if prune and net.n_neurons:
            # drop the patterns the solution does not use: the next program still contains
            # the current network (its own patterns are added), so it can only go lower
            old = prog.G[:, torch.linalg.vector_norm(x, dim=2).sum((0, 2)) > 0]
        extra = PatternSet(torch.cat([old, new], 1),
                           exhaustive=prog.patterns.exhaustive and not prune)
        if net.n_neurons:
            new_prog, x0 = TwoLayerProgram.from_network(
                net, prog.X, prog.Y, prog.reg, prog.loss, intercept=prog.intercept,
                extra_patterns=extra)
        else:
            new_prog = TwoLayerProgram(prog.X, prog.Y, extra, prog.reg, prog.loss,
                                       prog.activation, intercept=prog.intercept)
            x0 = None
        if all(h in have for h in _mask_hashes(prog.X, new_prog.G, prog.chunk).tolist()):
            info["stop"] = "no new pattern found"
            log[-1]["max_violation"] = vmax / prog.reg
            break
        opts = dict(solve_options)
        if "rho" in res.extras:  # ADMM: start from (a cautious multiple of) the last penalty
            opts["admm_options"] = {**(opts.get("admm_options") or {}),
                                    "rho": 8.0 * res.extras["rho"]}
        x_new, cert_new, res_new = solve(new_prog, x0=x0, verbose=verbose, max_time=left(),
                                         **opts)
        res = res_new
        info["results"].append(res_new)
        log[-1]["max_violation"] = vmax / prog.reg
        log.append({"patterns": new_prog.P, "objective": cert_new.primal, "dual": cert_new.dual,
                    "max_violation": None})
        if verbose:
            print(f"[search] round {r + 1}: P {prog.P} -> {new_prog.P} (+{new.shape[1]} by "
                  f"the dual search, max violation {vmax / prog.reg:.3g}·β), objective "
                  f"{cert.primal:.8g} -> {cert_new.primal:.8g}")
        improved = cert_new.primal < cert.primal * (1 - 1e-6)
        if cert_new.primal > cert.primal and cert_new.relative_gap > cert.relative_gap:
            info["stop"] = "objective stopped improving"  # keep the better, certified model
            break
        prog, x, cert = new_prog, x_new, cert_new
        info["result"] = res_new
        if not improved:
            info["stop"] = "objective stopped improving"
            break
    return prog, x, cert, info
