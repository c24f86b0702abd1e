"""Direct tests of the generic solvers in convexnn.solvers on toy problems with known answers.

Each solver runs on a small problem written here in its own protocol (no network, no
formulation); the reference is CVXPY + Clarabel, SciPy or a closed form, and the tolerances are
tied to the solve tolerance: a certified relative gap ≤ tol bounds the objective's excess by
tol·|F|, and strong convexity μ turns a gap g into ||x − x*||² ≤ 2g/μ.
"""

import math

import numpy as np
import pytest
import torch

from convexnn.solvers import augmented_lagrangian, fista
from convexnn.solvers.admm import admm
from convexnn.solvers.base import StopReason
from convexnn.solvers.fista import accelerated_projected_gradient
from convexnn.solvers.sdp_ipm import Rank2SDP, primal_dual_ipm

cp = pytest.importorskip("cvxpy")
CLARABEL = {"solver": "CLARABEL", "tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12,
            "tol_feas": 1e-12}
TOL = 1e-9


def _data(n=12, d=5, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    b = A @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n)
    return torch.as_tensor(A), torch.as_tensor(b)


def _sigma_min2(A):
    return float(torch.linalg.svdvals(A)[-1]) ** 2


def _lasso_gap(A, b, reg, x):
    """(primal, gap, relative gap) of x for ½||Ax − b||² + reg||x||₁ (scaled residual dual)."""
    r = A @ x - b
    primal = float(0.5 * (r * r).sum() + reg * x.abs().sum())
    s = min(1.0, reg / max(float((A.T @ r).abs().max()), 1e-300))
    dual = float(-(0.5 * (s * r) ** 2 + s * r * b).sum())
    return primal, primal - dual, (primal - dual) / primal


def _lasso_cvxpy(A, b, reg, nonneg=False):
    x = cp.Variable(A.shape[1], nonneg=nonneg)
    pr = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A.numpy() @ x - b.numpy())
                                + reg * cp.norm1(x)))
    pr.solve(**CLARABEL)
    return torch.as_tensor(x.value), pr.value


class Lasso:
    """FISTA protocol: state A x, smooth ½||s − b||², penalty reg||x||₁."""

    def __init__(self, A, b, reg):
        self.A, self.b, self.reg = A, b, reg

    def linear(self, x):
        return self.A @ x

    def smooth_value(self, s):
        return 0.5 * ((s - self.b) ** 2).sum()

    def smooth_grad(self, s):
        return self.A.T @ (s - self.b)

    def penalty(self, x):
        return self.reg * x.abs().sum()

    def prox(self, x, step):
        return torch.sign(x) * (x.abs() - step * self.reg).clamp_min(0)


def test_fista_solves_the_lasso_to_its_certified_tolerance():
    A, b = _data()
    reg = 2.0
    prob = Lasso(A, b, reg)
    res = fista(prob, torch.zeros(5, dtype=A.dtype), tol=TOL, max_iter=5000, check_every=5,
                monitor=lambda x, s: _lasso_gap(A, b, reg, x))
    assert res.stop_reason == StopReason.GAP
    x_ref, p_ref = _lasso_cvxpy(A, b, reg)
    F, gap, rel = _lasso_gap(A, b, reg, res.x)
    assert rel <= TOL and F - p_ref <= TOL * F + 1e-12
    assert float(((res.x - x_ref) ** 2).sum()) <= 2 * gap / _sigma_min2(A) + 1e-12
    assert (res.x == 0).any()  # the prox gives exact zeros
    assert res.history.relative_gap[-1] == pytest.approx(rel)


def test_accelerated_projected_gradient_meets_its_rate_on_nnls():
    """min_{x ≥ 0} ½||Ax − b||² against SciPy's NNLS: after k fixed steps 1/L the objective's
    excess is at most 2L||x0 − x*||²/(k+1)² (Beck & Teboulle 2009, Thm 4.4)."""
    from scipy.optimize import nnls

    A, b = _data(seed=1)
    x_ref, _ = nnls(A.numpy(), b.numpy())
    x_ref = torch.as_tensor(x_ref)
    L = float(torch.linalg.matrix_norm(A, ord=2)) ** 2
    F = lambda x: float(0.5 * ((A @ x - b) ** 2).sum())  # noqa: E731
    x0 = torch.zeros(5, dtype=A.dtype)
    for k in (10, 100, 400):
        x = accelerated_projected_gradient(lambda z: A.T @ (A @ z - b), x0, 1.0 / L, k)
        assert (x >= 0).all()
        bound = 2 * L * float(((x0 - x_ref) ** 2).sum()) / (k + 1) ** 2
        assert F(x) - F(x_ref) <= bound + 1e-12
    assert torch.allclose(x, x_ref, atol=1e-6)
    # tuples of tensors: two independent blocks give the same iterates as one
    xt = accelerated_projected_gradient(lambda z: (A.T @ (A @ z[0] - b), A.T @ (A @ z[1] - b)),
                                        (x0, x0), 1.0 / L, 400)
    assert torch.equal(xt[0], x) and torch.equal(xt[1], x)


class _NNLSAugmented:
    """Smooth part of the augmented Lagrangian of  min ½||Ax − b||²  s.t.  x ≥ 0 (B = I):
    f(x) + (ρ/2)||(μ/ρ − x)₊||² − ||μ||²/(2ρ); state (A x, x)."""

    def __init__(self, A, b, mu, rho):
        self.A, self.b, self.mu, self.rho = A, b, mu, rho

    def linear(self, x):
        return (self.A @ x, x)

    def _shift(self, s):
        return (self.mu - self.rho * s[1]).clamp_min(0)

    def smooth_value(self, s):
        return (0.5 * ((s[0] - self.b) ** 2).sum()
                + ((self._shift(s) ** 2).sum() - (self.mu ** 2).sum()) / (2 * self.rho))

    def smooth_grad(self, s):
        return self.A.T @ (s[0] - self.b) - self._shift(s)

    def penalty(self, x):
        return torch.zeros((), dtype=x.dtype)

    def prox(self, x, step):
        return x

    def updated_multipliers(self, s):
        return self._shift(s)


def test_augmented_lagrangian_solves_nnls_with_a_certified_gap():
    """The AL method on NNLS, certified by the Lagrangian dual g(μ) = min_x ½||Ax − b||² − μᵀx
    (closed form, AᵀA ≻ 0) at the feasible point x₊; against SciPy's NNLS."""
    from scipy.optimize import nnls

    A, b = _data(seed=2)
    H = A.T @ A

    class Problem:
        def augmented(self, mu, rho):
            return _NNLSAugmented(A, b, mu, rho)

        def violation(self, s):
            return float((-s[1]).clamp_min(0).max())

    def monitor(x, s, sub):
        mu = sub.updated_multipliers(s)
        xl = torch.linalg.solve(H, A.T @ b + mu)  # the Lagrangian's minimiser
        dual = float(0.5 * ((A @ xl - b) ** 2).sum() - mu @ xl)
        primal = float(0.5 * ((A @ x.clamp_min(0) - b) ** 2).sum())
        return primal, primal - dual, (primal - dual) / primal

    x0, mu0 = torch.zeros(5, dtype=A.dtype), torch.zeros(5, dtype=A.dtype)
    res = augmented_lagrangian(Problem(), x0, mu0, rho=1.0, tol=TOL, max_iter=20000,
                               check_every=5, monitor=monitor)
    assert res.stop_reason == StopReason.GAP
    x_ref = torch.as_tensor(nnls(A.numpy(), b.numpy())[0])
    x = res.x.clamp_min(0)
    primal, gap, rel = monitor(res.x, (A @ res.x, res.x), Problem().augmented(res.extras["mu"],
                                                                              res.extras["rho"]))
    assert res.history.relative_gap[-1] <= TOL
    assert float(((x - x_ref) ** 2).sum()) <= 2 * res.history.gap[-1] / _sigma_min2(A) + 1e-12
    assert (res.extras["mu"] >= 0).all()
    assert gap >= -1e-12 * primal and math.isfinite(rel)


class _LassoADMM:
    """ADMM protocol for ½||Ax − b||² + reg||x||₁ (+ x ≥ 0 through B = I when ``cone``)."""

    def __init__(self, A, b, reg, cone):
        self.A, self.b, self.reg, self.has_cone, self.gamma = A, b, reg, cone, 1.0
        M = A.T @ A + torch.eye(A.shape[1], dtype=A.dtype) * (2.0 if cone else 1.0)
        self.chol = torch.linalg.cholesky(M)

    def forward(self, x):
        return self.A @ x, (x if self.has_cone else None)

    def adjoint(self, r, q):
        return self.A.T @ r + (q if q is not None else 0)

    def solve_normal(self, rhs):
        return torch.cholesky_solve(rhs[:, None], self.chol)[:, 0]

    def prox_f(self, v, t, warm):
        return (v + t * self.b) / (1 + t)

    def prox_g(self, v, t):
        return torch.sign(v) * (v.abs() - t * self.reg).clamp_min(0)


@pytest.mark.parametrize("cone", [False, True])
def test_admm_solves_the_lasso_and_the_nonnegative_lasso(cone):
    A, b = _data(seed=3)
    reg = 1.5
    prob = _LassoADMM(A, b, reg, cone)

    def monitor(y, lam, mu):
        x = y.clamp_min(0) if cone else y  # feasible point
        r = A @ x - b
        primal = float(0.5 * (r * r).sum() + reg * x.abs().sum())
        g = A.T @ r  # dual constraint: |Aᵀλ| ≤ reg, or −Aᵀλ ≤ reg on the cone
        h = float((-g).clamp_min(0).max()) if cone else float(g.abs().max())
        s = min(1.0, reg / max(h, 1e-300))
        dual = float(-(0.5 * (s * r) ** 2 + s * r * b).sum())
        return primal, primal - dual, (primal - dual) / primal

    res = admm(prob, torch.zeros(5, dtype=A.dtype), tol=TOL, max_iter=20000, check_every=5,
               monitor=monitor)
    assert res.stop_reason == StopReason.GAP
    x_ref, p_ref = _lasso_cvxpy(A, b, reg, nonneg=cone)
    x = res.x.clamp_min(0) if cone else res.x
    primal, gap, rel = monitor(res.x, None, None)
    assert rel <= TOL and primal - p_ref <= TOL * primal + 1e-12
    assert float(((x - x_ref) ** 2).sum()) <= 2 * gap / _sigma_min2(A) + 1e-12
    if cone:
        assert (res.extras["mu"] >= 0).all()


def test_sdp_interior_point_on_a_small_generic_sdp():
    """primal_dual_ipm on  min <C, Z> + ½ Σ_i (Z_ii − 1)²  s.t. Z ⪰ 0, Z_ij ≥ 0 (i < j),
    written as a Rank2SDP with T = I, against CVXPY + Clarabel."""
    q = 5
    rng = np.random.default_rng(4)
    Cn = rng.standard_normal((q, q))
    Cn = Cn + Cn.T
    iu = np.triu_indices(q, 1)
    C = torch.as_tensor(Cn)
    diag = torch.arange(q)
    P = torch.cat([diag, torch.as_tensor(iu[0])])
    R = torch.cat([diag, torch.as_tensor(iu[1])])
    coef = torch.cat([torch.ones(q), -torch.ones(len(iu[0]))]).to(C.dtype)  # −Z_ij ≤ 0
    prob = Rank2SDP(T=torch.eye(q, dtype=C.dtype), C=C, P=P, R=R, coef=coef,
                    b=torch.ones(q, dtype=C.dtype), n_quad=q, n_eq=0)
    m_in = len(iu[0])
    res = primal_dual_ipm(prob, Z0=torch.eye(q, dtype=C.dtype), S0=torch.eye(q, dtype=C.dtype),
                          y0=torch.cat([torch.zeros(q), torch.ones(m_in)]).to(C.dtype),
                          s0=torch.ones(m_in, dtype=C.dtype), tol=1e-9, max_iter=100)
    Z = cp.Variable((q, q), PSD=True)
    pr = cp.Problem(cp.Minimize(cp.trace(Cn @ Z) + 0.5 * cp.sum_squares(cp.diag(Z) - 1)),
                    [Z[i, j] >= 0 for i, j in zip(*iu)])
    pr.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    assert res.stop_reason in (StopReason.GAP, "stalled")
    assert res.infeasibility <= 1e-7
    assert abs(res.primal_value - pr.value) <= 1e-7 * (1 + abs(pr.value))
    assert abs(res.dual_value - pr.value) <= 1e-7 * (1 + abs(pr.value))
    assert float(torch.linalg.eigvalsh(res.Z).min()) >= -1e-8
    assert np.allclose(res.Z.numpy(), Z.value, atol=1e-4)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_group_lasso_by_fista_matches_cvxpy(loss):
    """The group lasso over fixed features (copositive master's FISTA backend, SDP read-back)
    stops at its certified gap and agrees with the master problem solved by CVXPY."""
    from convexnn.formulations.copositive import solve_master
    from convexnn.formulations.group_lasso import GroupLasso
    from convexnn.losses import get_loss

    rng = np.random.default_rng(5)
    Phi = np.maximum(rng.standard_normal((20, 6)), 0)
    Y = rng.standard_normal((20, 2)) if loss == "squared" else np.sign(rng.standard_normal((20, 1)))
    lo, reg = get_loss(loss), 0.5
    G = torch.as_tensor(solve_master(Phi, Y, reg, lo, backend="fista", tol=TOL))
    F, gap, rel = GroupLasso(torch.as_tensor(Phi), torch.as_tensor(Y), reg, lo).gap(
        G, torch.as_tensor(Phi) @ G)
    assert rel <= TOL
    Gc = solve_master(Phi, Y, reg, lo, backend="cvxpy", tol=1e-10)
    Fc = float(lo.value(torch.as_tensor(Phi @ Gc), torch.as_tensor(Y))) \
        + reg * np.linalg.norm(Gc, axis=1).sum()
    assert F <= Fc + TOL * abs(F) + 1e-9 and Fc - F <= 1e-7 * abs(F)
    assert (torch.linalg.vector_norm(G, dim=1) == 0).any()  # whole groups vanish


def test_history_extend_shifts_iterations_and_seconds():
    from convexnn.solvers.base import History

    a, b = History(), History()
    a.append(10, 3.0, 0.5, 0.1, 1.0)
    b.append(5, 2.0, 0.2, 0.05, 0.5)
    b.append(7, 1.5, 0.1, 0.01, 0.75)
    a.extend(b, 10, 1.0)
    assert a.iteration == [10, 15, 17] and a.seconds == [1.0, 1.5, 1.75]
    assert a.objective == [3.0, 2.0, 1.5] and a.relative_gap == [0.1, 0.05, 0.01]
