"""Tests of the neuron-SDP certificate (convexnn.formulations.sdp_neuron)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convexnn.formulations.sdp import SDPRelaxation, solve_admm
from convexnn.formulations.sdp_neuron import neuron_sdp_bound, scaled_gamma_bound

from .helpers import iris_subsample

cp = pytest.importorskip("cvxpy")


_iris = iris_subsample


def _phi_cvxpy(X, Gam):
    """φ(Γ) by CVXPY + Clarabel: max ¼ tr(Γᵀ Λ_αα Γ) over the DNN set of one neuron."""
    n, d = X.shape
    B = 0.5 * np.vstack([Gam, X.T @ Gam])
    B = B / np.linalg.norm(B, 2)
    W = cp.Variable((n + d, n + d), PSD=True)
    Wb, Wbu, Wu = W[:n, :n], W[:n, n:], W[n:, n:]
    Lab = Wb + X @ Wbu.T
    Laa = Lab + Wbu @ X.T + X @ Wu @ X.T
    cons = [Laa >= 0, Wb >= 0, Lab - cp.diag(cp.diag(Lab)) >= 0, cp.diag(Lab) == 0,
            cp.trace(Wu) <= 1]
    prob = cp.Problem(cp.Maximize(cp.trace(B @ B.T @ W)), cons)
    prob.solve(solver="CLARABEL")
    return float(prob.value) * np.linalg.norm(0.5 * np.vstack([Gam, X.T @ Gam]), 2) ** 2


@pytest.mark.parametrize("seed", [0, 1])
def test_neuron_bound_matches_cvxpy_and_bounds_every_neuron(seed):
    X, _ = _iris(16, seed)
    Gam = np.random.default_rng(seed + 10).standard_normal((16, 3))
    ref = _phi_cvxpy(X, Gam)
    nb = neuron_sdp_bound(torch.tensor(X), torch.tensor(Gam), tol=1e-5, max_iter=20000)
    assert nb.phi_upper >= ref * (1 - 1e-6)          # proven upper bound
    assert nb.phi_upper <= ref * (1 + 1e-4)          # and tight
    assert abs(nb.phi_estimate - ref) <= 1e-4 * ref
    # every true unit neuron is feasible: ¼||Γᵀ(Xu)_+||² ≤ φ
    U = np.random.default_rng(seed).standard_normal((X.shape[1], 20000))
    U /= np.linalg.norm(U, axis=0)
    vals = 0.25 * ((Gam.T @ np.maximum(X @ U, 0)) ** 2).sum(0)
    assert vals.max() <= nb.phi_upper


def test_scaled_gamma_bound_is_valid_and_tight_at_the_optimum():
    """From the optimal Γ the bound reaches p_SDP; from perturbed or random Γ it stays below."""
    X, Y = _iris(14, 2)
    prob = SDPRelaxation(torch.tensor(X), torch.tensor(Y), 0.1, intercept=True)
    problem, handles = prob.to_cvxpy("reduced")
    problem.solve(solver="CLARABEL")
    value = float(problem.value)
    Z = torch.tensor(handles["Z"].value)
    Gam = prob.blocks_from_matrix(Z)["av"] - prob.Y
    rng = np.random.default_rng(0)
    for G, tight in [(Gam, True), (Gam + 0.05 * torch.tensor(rng.standard_normal(Gam.shape)),
                                    False), (torch.tensor(rng.standard_normal(Gam.shape)), False)]:
        nb = neuron_sdp_bound(prob.X, G, tol=1e-6, max_iter=20000)
        lb, s = scaled_gamma_bound(G, prob.Y, 0.1, nb.phi_upper)
        assert lb <= value * (1 + 1e-7)
        assert 0.0 <= s
        if tight:
            assert lb >= value * (1 - 2e-3)


def test_solve_admm_reports_the_neuron_bound_early():
    """Stopped early, the ADMM's proven bound comes from the neuron certificate, is below
    CVXPY's optimum and far tighter than the blend certificate of the same multipliers."""
    X, Y = _iris(20, 5)
    prob = SDPRelaxation(torch.tensor(X), torch.tensor(Y), 0.1, intercept=True)
    problem, _ = prob.to_cvxpy("reduced")
    problem.solve(solver="CLARABEL")
    value = float(problem.value)
    bound, _, info = solve_admm(prob, tol=1e-5, max_iter=1000, neuron_first=200)
    assert bound.value <= value * (1 + 1e-7)
    assert bound.method == "neuron"
    assert info["neuron_iterations"] > 0
    blend = info["certify"](None)
    assert blend.value >= bound.value      # certify returns the best of both
    Gam, om, N = info["multipliers"]
    assert prob.dual_bound(Gam, om, N, upper=0.5 * float((prob.Y ** 2).sum())).value < \
        bound.value
    assert bound.value >= 0.98 * value


def test_bad_input():
    X = torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="Gamma"):
        neuron_sdp_bound(X, torch.randn(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="nonzero"):
        neuron_sdp_bound(torch.zeros(5, 2, dtype=torch.float64),
                         torch.randn(5, 2, dtype=torch.float64))
    nb = neuron_sdp_bound(X, torch.zeros(5, 2, dtype=torch.float64))
    assert nb.phi_upper == 0.0
    assert scaled_gamma_bound(torch.zeros(5, 2), torch.ones(5, 2), 0.1, 0.0) == (0.0, 0.0)


def test_solve_admm_rejects_a_bad_schedule():
    X, Y = _iris(10, 0)
    prob = SDPRelaxation(torch.tensor(X), torch.tensor(Y), 0.1, intercept=True)
    for bad in (0, -5, "sometimes", 1.5):
        with pytest.raises(ValueError, match="neuron_first"):
            solve_admm(prob, max_iter=10, neuron_first=bad)


def test_neuron_congruence_matches_the_dense_rows():
    """T W Tᵀ and Tᵀ E T of the structured maps equal the dense rows (α | β | u) on (b, u)."""
    from convexnn.formulations.sdp_neuron import neuron_congruence

    rng = np.random.default_rng(0)
    X = torch.tensor(rng.standard_normal((7, 3)))
    n, d = X.shape
    T = torch.zeros(2 * n + d, n + d, dtype=X.dtype)
    T[:n, :n] = torch.eye(n)
    T[:n, n:] = X
    T[n:2 * n, :n] = torch.eye(n)
    T[2 * n:, n:] = torch.eye(d)
    gram, adjoint = neuron_congruence(X)
    W = torch.tensor(rng.standard_normal((n + d, n + d)))
    E = torch.tensor(rng.standard_normal((2 * n + d, 2 * n + d)))
    W, E = W + W.T, E + E.T
    assert torch.allclose(gram(W), T @ W @ T.T, atol=1e-12)
    assert torch.allclose(adjoint(E), T.T @ E @ T, atol=1e-12)
