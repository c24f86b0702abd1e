"""The copositive relaxation (DNN outer approximation) with a proven lower bound, a read-back
network and its tightness (see the package docstring)."""

from __future__ import annotations

import time

import numpy as np
import torch

from ...certificates import SCOPE_GLOBAL, SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ...losses import Loss, get_loss
from ...ops.linalg import as_numpy
from ...patterns import sample_gates
from ...patterns.arrangements import count_patterns, enumerate_patterns
from ...results import FitResult
from ...solvers.base import History
from .master import atoms_objective, atoms_to_network, check_inputs, dtype_device, solve_master
from .oracle import FEAS_TOL, ConeFaces
from .prune import prune_solution

__all__ = ["relaxation_cvxpy", "fit_relaxation"]


def relaxation_cvxpy(faces: ConeFaces, Y, reg: float, *, solver: str = "CLARABEL",
                     **options) -> dict:
    """The copositive relaxation (DNN outer approximation of C_p) over the patterns of ``faces``.

    min_{G_p ⪰ 0} ½ tr(T) + β² Σ_p tr(G_p)  s.t. [[M, Y], [Yᵀ, T]] ⪰ 0, F_p G_p F_pᵀ ≥ 0,
    M = I + 2 Σ_p (D_p B) G_p (D_p B)ᵀ (B = X V_r, so G_p lives in the r-dim row space; the
    trace is invariant). Returns ``{"value", "G" (P, r, r), "Z" = M⁻¹Y, "status", "seconds"}``;
    the value is the solver's (not a proof: see :func:`fit_relaxation`).
    """
    import cvxpy as cp

    Yn = as_numpy(Y)
    if Yn.ndim == 1:
        Yn = Yn[:, None]
    n, c = Yn.shape
    r, B, Mk = faces.r, faces.B, faces.masks
    Gs = [cp.Variable((r, r), PSD=True) for _ in range(faces.P)]
    Msum = np.eye(n)
    expr = 0
    cons = []
    for p, Gp in enumerate(Gs):
        DB = Mk[:, p:p + 1] * B
        expr = expr + DB @ Gp @ DB.T
        F = faces.F[p, :faces.n_facets[p]]
        if len(F):
            cons.append(F @ Gp @ F.T >= 0)
    T = cp.Variable((c, c), symmetric=True)
    Mexp = Msum + 2 * expr
    cons.append(cp.bmat([[Mexp, Yn], [Yn.T, T]]) >> 0)
    obj = 0.5 * cp.trace(T) + reg ** 2 * sum(cp.trace(Gp) for Gp in Gs)
    prob = cp.Problem(cp.Minimize(obj), cons)
    t0 = time.perf_counter()
    prob.solve(solver=solver, **options)
    if Gs[0].value is None:
        raise RuntimeError(f"relaxation: solver status {prob.status}")
    Gv = np.stack([(Gp.value + Gp.value.T) / 2 for Gp in Gs])
    Mv = np.eye(n)
    for p in range(faces.P):
        DB = Mk[:, p:p + 1] * B
        Mv += 2 * DB @ Gv[p] @ DB.T
    Z = np.linalg.solve(Mv, Yn)
    return {"value": float(prob.value), "G": Gv, "Z": Z, "status": prob.status,
            "seconds": time.perf_counter() - t0}


def _h_bound(faces: ConeFaces, lam: np.ndarray, exact: bool) -> np.ndarray:
    """Per-pattern h_p: exact oracle, or the cone-dropped upper bound ||Λᵀ D_p X||₂."""
    if exact:
        return faces.oracle(lam)[0]
    A = faces.reduced_operators(lam)
    return torch.linalg.matrix_norm(A, ord=2).numpy()


def _relaxation_patterns(Xn: np.ndarray, patterns: str, max_enumerate: int,
                         n_patterns: int | None, random_state, intercept: bool):
    """All patterns (``"enumerate"``, or ``"auto"`` when at most ``max_enumerate``) or
    ``n_patterns`` sampled gates (default ``max_enumerate``)."""
    enum = patterns == "enumerate" or (
        patterns == "auto" and count_patterns(Xn)["bound"] <= max_enumerate)
    if enum:
        return enumerate_patterns(Xn, max_patterns=None if patterns == "enumerate"
                                  else max_enumerate)
    if n_patterns is None:  # default: as many sampled gates as would be enumerated
        n_patterns = max_enumerate
    return sample_gates(torch.as_tensor(Xn), n_patterns, random_state, kind="data",
                        intercept_column=intercept)


def _eigen_directions(faces: ConeFaces, Gv: np.ndarray) -> tuple[list, list]:
    """Hidden directions read from the G_p: eigenvectors (of non-negligible eigenvalue) that
    lie in their pattern's cone, in the input space; and each non-zero G_p's λ₂/λ₁."""
    w, V = np.linalg.eigh(Gv)  # ascending
    wmax = max(float(w.max()), 1e-300)
    dirs = []
    ratios = []
    for p in range(faces.P):
        if w[p, -1] <= 1e-7 * wmax:
            continue
        ratios.append(w[p, -2] / w[p, -1] if faces.r > 1 else 0.0)
        for k in range(faces.r):
            if w[p, k] > 1e-4 * w[p, -1]:
                y = V[p, :, k]
                F = faces.F[p, :faces.n_facets[p]]
                if len(F) and (F @ y).min() < (F @ -y).min():
                    y = -y
                if not len(F) or (F @ y).min() >= -FEAS_TOL:  # keep the network in the cones
                    dirs.append(faces.Vr @ y)
    return dirs, ratios


def fit_relaxation(X, Y, reg: float, loss: str | Loss = "squared", *, intercept: bool,
                   n_patterns: int | None = None, random_state=None, patterns: str = "auto",
                   max_enumerate: int = 1000, solver: str = "CLARABEL",
                   solver_options: dict | None = None, verbose: int = 0) -> FitResult:
    """The copositive relaxation with a proven lower bound, a read-back network and tightness.

    Patterns: ``"enumerate"`` (all; the bound is then a lower bound on the global optimum p*),
    ``"sample"`` (``n_patterns`` sampled gates, default ``max_enumerate``; the bound is a lower
    bound on the program over those patterns only) or ``"auto"`` (enumerate when at most
    ``max_enumerate`` patterns, sample otherwise).
    ``info``: ``relaxation_value`` (solver objective, unverified), ``lower_bound`` (proven: dual
    value at Z = M⁻¹Y rescaled to feasibility by the exact oracle, or by the cone-dropped norm
    bound when the oracle is unavailable), ``upper_bound`` (objective of the read-back network),
    ``tightness`` = (upper − lower) / upper, ``max_rank_ratio`` (λ₂/λ₁ of the G_p: 0 = rank one).
    """
    lo = get_loss(loss)
    if lo.name != "squared":
        raise ValueError(f"fit_relaxation supports the squared loss only, got {lo.name!r}")
    Xn, Yn = check_inputs(X, Y, reg)
    t0 = time.perf_counter()
    if patterns not in ("auto", "enumerate", "sample"):
        raise ValueError(f"patterns must be 'auto', 'enumerate' or 'sample', got {patterns!r}")
    pats = _relaxation_patterns(Xn, patterns, max_enumerate, n_patterns, random_state,
                                intercept)
    exact_oracle = True
    try:
        faces = ConeFaces(Xn, pats.gates, exhaustive=pats.exhaustive)
    except ValueError:  # face enumeration too large: keep facets, bound h by norms
        faces = ConeFaces(Xn, pats.gates, max_faces=None, exhaustive=pats.exhaustive)
        exact_oracle = False
    rel = relaxation_cvxpy(faces, Yn, reg, solver=solver, **(solver_options or {}))
    Z = rel["Z"]
    lam = -Z  # ∇L at the relaxation's implied prediction Y − Z
    active = np.zeros((0, Xn.shape[1]))
    if exact_oracle:
        h, _, active = faces.oracle(lam, collect_above=0.999 * reg)
    else:
        h = _h_bound(faces, lam, False)
    lower, s = scaled_dual(lo, torch.as_tensor(lam), torch.as_tensor(Yn), float(h.max()), reg)
    # read-back: hidden directions = eigenvectors of the G_p that lie in their cones, plus the
    # maximisers of the (near-)active dual constraints at Z; output weights by the master
    # problem. Every direction lies in a cone of the pattern set, so the network is feasible for
    # the program over these patterns and its objective is ≥ that program's optimum ≥ lower.
    dirs, ratios = _eigen_directions(faces, rel["G"])
    U = np.concatenate([np.array(dirs).reshape(-1, Xn.shape[1]), active], 0)
    Phi = np.maximum(Xn @ U.T, 0.0)
    Gm = solve_master(Phi, Yn, reg, lo) if len(U) else np.zeros((0, Yn.shape[1]))
    U, Gm, _ = prune_solution(U, Gm, Phi, Yn, reg, lo)
    Phi = np.maximum(Xn @ U.T, 0.0)
    upper, _ = atoms_objective(Phi, Gm, Yn, reg, lo)
    dt, dev = dtype_device(X)
    net = atoms_to_network(U, Gm, intercept, dt, dev, tol=1e-12)
    gap = max(upper - lower, 0.0)
    scope = SCOPE_GLOBAL if (pats.exhaustive and exact_oracle) else SCOPE_SAMPLED
    cert = Certificate(primal=upper, dual=lower, gap=gap, relative_gap=relative(gap, upper),
                       scope=scope, problem=("copositive relaxation (Sahiner et al. 2021) over "
                                             + ("all" if pats.exhaustive else "sampled")
                                             + " activation patterns"),
                       n_patterns=faces.P, dual_scale=s)
    hist = History()
    hist.append(0, upper, gap, cert.relative_gap, time.perf_counter() - t0)
    info = {"method": "relaxation", "relaxation_value": rel["value"], "lower_bound": lower,
            "upper_bound": upper, "tightness": cert.relative_gap, "solver_status": rel["status"],
            "max_rank_ratio": float(max(ratios)) if ratios else 0.0,
            "n_patterns": faces.P, "exhaustive": bool(pats.exhaustive),
            "exact_oracle": exact_oracle, "seconds_solver": rel["seconds"],
            "seconds_total": time.perf_counter() - t0, "n_neurons": net.n_neurons}
    if verbose:
        print(f"[relaxation] value={rel['value']:.8g} lower={lower:.8g} upper={upper:.8g} "
              f"tightness={cert.relative_gap:.2e}")
    return FitResult(net, cert, hist, info)

