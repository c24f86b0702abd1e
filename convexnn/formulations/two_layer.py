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

Memory: the n x P masks are cached when n·P ≤ ``mask_cache_limit`` and recomputed per row chunk
otherwise (gated path). The ReLU path stores X x (n x S x P x c) and the multipliers μ (same
size): O(nP) is inherent to the cone constraints.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import nnls as _scipy_nnls
from torch import Tensor

from ..certificates import SCOPE_GLOBAL, SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ..losses import Loss, get_loss
from ..networks import TwoLayerNetwork
from ..patterns import DEFAULT_CHUNK, PatternSet, deduplicate_gates

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
        self._M = None
        if self.n * self.P <= mask_cache_limit:
            self._M = (X @ self.G >= 0).to(X.dtype)

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
            M = self._M[s:e] if self._M is not None else (Xc @ self.G >= 0).to(Xc.dtype)
            yield s, e, Xc, M

    @property
    def masks(self) -> Tensor:
        """All masks (n x P) as floats; O(nP) memory."""
        return self._M if self._M is not None else (self.X @ self.G >= 0).to(self.X.dtype)

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
            Z = self.relu_predict(XV)
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
            x = x * (~hopeless)[:, :, None, :]
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
        Gd = deduplicate_gates(X, G, drop_zero=False)
        exhaustive = bool(extra_patterns is not None and extra_patterns.exhaustive)
        prog = cls(X, Y, PatternSet(Gd, exhaustive=exhaustive), reg, loss, net.activation,
                   intercept=intercept)
        # locate each neuron's pattern by mask equality
        Mn = (X @ gates_src.T >= 0)
        Mp = prog.masks.bool()
        idx = torch.empty(Wa.shape[0], dtype=torch.long)
        for j in range(Wa.shape[0]):
            hit = torch.nonzero((Mp == Mn[:, j:j + 1]).all(0)).flatten()
            idx[j] = hit[0]
        x = prog.zeros()
        W2 = net.second_layer_weights  # (c, m)
        for j in range(Wa.shape[0]):
            p = int(idx[j])
            if net.activation == "relu":
                for k in range(prog.c):
                    a = float(W2[k, j])
                    x[0 if a > 0 else 1, p, :, k] += Wa[j] * abs(a)
            else:
                x[0, p] += torch.outer(Wa[j], W2[:, j])
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
def _interior_point_fits(prog: TwoLayerProgram) -> bool:
    """Whether an interior-point solve of the whole ReLU program is affordable here."""
    groups = prog.S * prog.P * prog.c
    return groups * prog.d <= 20_000 and prog.n * groups <= 1_000_000 and prog.loss.name in (
        "squared", "logistic", "cross_entropy")


def _has_cvxpy() -> bool:
    try:
        import cvxpy  # noqa: F401
    except ImportError:
        return False
    return True


def solve(prog: TwoLayerProgram, *, solver: str = "auto", tol: float = 1e-6,
          max_iter: int = 10000, max_time: float | None = None, check_every: int = 10,
          x0: Tensor | None = None, verbose: int = 0, cvxpy_solver: str | None = None,
          cvxpy_options: dict | None = None):
    """Solve the program. Returns ``(x, certificate, result)``.

    ``solver``: ``"fista"`` (gated), ``"al"`` (augmented Lagrangian, ReLU; matrix-free),
    ``"active_set"`` (ReLU; reduced programs by interior point), ``"cvxpy"`` (the whole program
    to any installed CVXPY solver via ``cvxpy_solver``, default CVXPY's choice) or ``"auto"``:
    FISTA for gated; for ReLU the interior point when the program is small enough to afford
    (see :func:`_interior_point_fits`), else the augmented Lagrangian.
    """

    from ..solvers import augmented_lagrangian, fista
    from ..solvers.cvxpy_backend import solve_cvxpy

    if solver == "auto":
        solver = "fista" if prog.activation == "gated" else (
            "cvxpy" if _has_cvxpy() and _interior_point_fits(prog) else "al")
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
        res.history.append(0, cert.primal, cert.gap, cert.relative_gap, res.seconds)
        return x, cert, res
    L0 = lipschitz_estimate(prog)
    if solver == "fista":
        if prog.activation != "gated":
            raise ValueError("solver='fista' solves the unconstrained (gated) program; "
                             "use solver='al' for the cone-constrained ReLU program")

        def monitor(x_, s_):
            c_ = prog.certificate(x_, s_)
            return c_.primal, c_.gap, c_.relative_gap

        res = fista(prog, x, step=1.0 / L0, tol=tol, max_iter=max_iter, max_time=max_time,
                    check_every=check_every, monitor=monitor, verbose=verbose)
        return res.x, prog.certificate(res.x), res
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
        return prog.repair(res.x), cert, res
    raise ValueError(f"unknown solver {solver!r}; expected 'auto', 'fista', 'al' or 'cvxpy'")
