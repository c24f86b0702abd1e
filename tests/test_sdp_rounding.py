"""The paper's rounding (three-operator splitting) and the sandwich of every claimed bound
against independent CVXPY models and an exhaustive solve (convexnn.formulations.sdp)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convexnn.formulations.sdp import SDPRelaxation, extract_network, fit_sdp
from convexnn.formulations.sdp.rounding import lifted_matrix, project_relu, round_tos
from convexnn.formulations.two_layer import TwoLayerProgram, solve
from convexnn.networks import TwoLayerNetwork

from .test_sdp import _all_patterns_2d, _data

cp = pytest.importorskip("cvxpy")


def _paper_value(prob: SDPRelaxation) -> float:
    """The relaxation solved in the paper's own coordinates (independent reference)."""
    problem, _ = prob.to_cvxpy("paper")
    problem.solve(solver="CLARABEL")
    assert problem.status in ("optimal", "optimal_inaccurate")
    return float(problem.value)


@pytest.mark.parametrize("n,d,c,seed", [(6, 2, 2, 3), (10, 3, 1, 4)])
def test_paper_form_equals_reduced_form(n, d, c, seed):
    """The paper's Λ with its own selection matrices (through a numerical basis of null(M))
    and our reduced coordinates give the same optimum (Clarabel, tolerance ~1e-8)."""
    X, Y = _data(n, d, c, seed, intercept=True)
    prob = SDPRelaxation(X, Y, 0.2, intercept=True)
    reduced, _ = prob.to_cvxpy("reduced")
    reduced.solve(solver="CLARABEL")
    assert abs(_paper_value(prob) - reduced.value) <= 1e-6 * reduced.value
    with pytest.raises(ValueError, match="form"):
        prob.to_cvxpy("lifted")


def test_every_bound_against_the_exhaustive_optimum():
    """On 2-D data (c = 1, no bias) the exact program over ALL activation patterns gives p*.
    Independent relaxation value ≤ p*; the certified lower bound ≤ it; both read-backs (ours
    and the paper's TOS) give networks whose objective (recomputed) is ≥ p*."""
    X, Y = _data(10, 2, 1, 5)
    reg = 0.05
    prog = TwoLayerProgram(X, Y, _all_patterns_2d(X), reg, "squared", "relu")
    _, _, res = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    p_star = res.extras["value"]
    prob = SDPRelaxation(X, Y, reg)
    p_sdp = _paper_value(prob)
    tol = 1e-6 * p_star
    assert p_sdp <= p_star + tol
    for rounding in ("polish", "tos"):
        fit = fit_sdp(X, Y, reg, intercept=False, rounding=rounding,
                      rounding_options={"max_iter": 300} if rounding == "tos" else None)
        obj = fit.network.objective(X, Y, reg)
        assert math.isclose(fit.certificate.primal, obj, rel_tol=1e-12)
        assert fit.certificate.dual <= p_sdp + tol
        assert obj >= p_star - tol and obj >= p_sdp - tol
        assert fit.certificate.dual <= fit.certificate.primal


def test_tos_keeps_an_exact_lift_and_reports_its_objective():
    """If Λ̃ is the lift of a network (so rank ≤ width and every column a true neuron), the
    splitting starts at a fixed point: the rounded network has exactly its objective."""
    X, Y = _data(12, 2, 2, 0, intercept=True)
    rng = np.random.default_rng(2)
    net = TwoLayerNetwork(torch.tensor(rng.standard_normal((1, 2))),
                          torch.tensor(rng.standard_normal(1)),
                          torch.tensor(rng.standard_normal((2, 1))))
    prob = SDPRelaxation(X, Y, 0.3, intercept=True)
    W = prob.lift_network(net)
    r = round_tos(prob, W @ W.T, rank=4, max_iter=20)
    want = net.objective(X[:, :-1], Y, 0.3)
    # the zero eigenvalues of Λ̃ come out of eigh at ~eps·λ_max, i.e. spurious columns of
    # size ~sqrt(eps): the objective is exact to ~1e-7 relative
    assert math.isclose(r.objective, want, rel_tol=1e-6)
    assert math.isclose(r.network.objective(X[:, :-1], Y, 0.3), r.objective, rel_tol=1e-12)
    assert r.feasibility_m <= 1e-7 and r.feasibility_c <= 1e-9
    assert r.rounding_objective <= 1e-12 * float((lifted_matrix(prob, W @ W.T) ** 2).sum())


def test_tos_projections_and_selection():
    """P_𝓜 gives non-negative complementary (α, β) and is idempotent; "objective" selection is
    never worse than "last"; bad arguments are rejected."""
    X, Y = _data(8, 2, 1, 1, intercept=True)
    prob = SDPRelaxation(X, Y, 0.1, intercept=True)
    B = torch.tensor(np.random.default_rng(0).standard_normal((2 * 8 + 4, 5)))
    P = project_relu(B, 8)
    assert float(P[:16].min()) >= 0 and float((P[:8] * P[8:16]).abs().max()) == 0
    assert torch.equal(project_relu(P, 8), P) and torch.equal(P[16:], B[16:])
    problem, h = prob.to_cvxpy("reduced")
    problem.solve(solver="CLARABEL")
    Z = torch.tensor(h["Z"].value)
    last = round_tos(prob, Z, max_iter=60, rank=20)
    best = round_tos(prob, Z, max_iter=60, rank=20, select="objective")
    assert best.objective <= last.objective and last.iteration == 59
    assert best.objective >= problem.value - 1e-6 * problem.value
    net = extract_network(prob, prob.factor_from_matrix(Z))
    assert net.objective(X[:, :-1], Y, 0.1) >= problem.value - 1e-6 * problem.value
    for kw, match in (({"select": "best"}, "select"), ({"rank": 0}, "rank")):
        with pytest.raises(ValueError, match=match):
            round_tos(prob, Z, **kw)
    with pytest.raises(ValueError, match="Z must be"):
        round_tos(prob, Z[:-1, :-1])
    with pytest.raises(ValueError, match="rounding"):
        fit_sdp(X, Y, 0.1, intercept=True, rounding="eig")
