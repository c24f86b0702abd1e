"""Tests of the CP program's SDP relaxation (convexnn.formulations.sdp) and the low-rank solver."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convexnn.formulations.sdp import SDPRelaxation, fit_sdp, solve_admm, solve_ipm
from convexnn.formulations.two_layer import TwoLayerProgram, solve
from convexnn.networks import TwoLayerNetwork
from convexnn.patterns import PatternSet
from convexnn.solvers.lowrank_sdp import burer_monteiro_al
from convexnn.solvers.sdp_admm import CongruenceSDP, sdp_admm

from .helpers import iris_subsample

pytest.importorskip("cvxpy")


def _data(n, d, c, seed, intercept=False):
    rng = np.random.default_rng(seed)
    X = torch.tensor(rng.standard_normal((n, d)))
    if intercept:
        X = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], 1)
    Y = torch.tensor(rng.standard_normal((n, c)))
    return X, Y


def _all_patterns_2d(X):
    """Every activation pattern of 2-D data without bias: one gate per arc between the
    critical directions ±x_i^⊥ (exact enumeration, 2n patterns in general position)."""
    ang = np.arctan2(X[:, 1].numpy(), X[:, 0].numpy())
    crit = np.sort(np.mod(np.concatenate([ang + np.pi / 2, ang - np.pi / 2]), 2 * np.pi))
    mids = 0.5 * (crit + np.roll(crit, -1))
    mids[-1] = 0.5 * (crit[-1] + crit[0] + 2 * np.pi)
    G = torch.tensor(np.stack([np.cos(mids), np.sin(mids)]))
    return PatternSet(G, exhaustive=True)


def _solve_sdp_cvxpy(prob):
    problem, handles = prob.to_cvxpy("reduced")
    problem.solve(solver="CLARABEL")
    return float(problem.value), handles


def test_lift_of_a_network_is_feasible_and_has_its_objective():
    X, Y = _data(15, 3, 2, 0, intercept=True)
    rng = np.random.default_rng(1)
    net = TwoLayerNetwork(torch.tensor(rng.standard_normal((5, 3))),
                          torch.tensor(rng.standard_normal(5)),
                          torch.tensor(rng.standard_normal((2, 5))))
    prob = SDPRelaxation(X, Y, 0.3, intercept=True)
    W = prob.lift_network(net)
    assert W.shape == (prob.q, 5)
    assert math.isclose(float(prob.objective(W)), net.objective(X[:, :-1], Y, 0.3),
                        rel_tol=1e-12)
    assert float(prob.equality(W).abs().max()) < 1e-12
    G = prob.inequality(W)  # products of non-negative parts: >= 0 up to round-off
    assert float(G.min()) >= -1e-12 * float(G.abs().max())
    # and the matrix form of Z = W Wᵀ gives the same objective
    assert math.isclose(prob.objective_matrix(W @ W.T), float(prob.objective(W)), rel_tol=1e-10)


def test_cvxpy_duals_give_a_tight_certified_bound():
    X, Y = _data(10, 2, 1, 4, intercept=True)
    prob = SDPRelaxation(X, Y, 0.1, intercept=True)
    value, handles = _solve_sdp_cvxpy(prob)
    bound, _ = prob.certify_cvxpy(handles)
    assert bound.value <= value + 1e-7
    assert value - bound.value <= 1e-4 * value


def test_loose_scs_solution_is_certified_through_the_neuron_bound():
    """SCS at eps = 1e-3 (a first-order solver, as in the paper's code): its duals alone give a
    loose blend bound; the neuron certificate of its Γ must stay valid and get close."""
    X, Y = _data(12, 2, 2, 0, intercept=True)
    prob = SDPRelaxation(X, Y, 0.1, intercept=True)
    value, _ = _solve_sdp_cvxpy(prob)
    problem, handles = prob.to_cvxpy("reduced")
    problem.solve(solver="SCS", eps=1e-3)
    blend, _ = prob.certify_cvxpy(handles, neuron=False)
    both, _ = prob.certify_cvxpy(handles)
    assert blend.method == "blend"
    assert blend.value <= both.value <= value + 1e-7
    assert both.value >= 0.9 * value


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_dual_estimate_gives_a_valid_lower_bound(seed):
    """Random (Γ, ω, N) — however bad — must never bound above the SDP optimum."""
    X, Y = _data(8, 2, 2, seed, intercept=True)
    prob = SDPRelaxation(X, Y, 0.5, intercept=True)
    value, _ = _solve_sdp_cvxpy(prob)
    rng = np.random.default_rng(seed + 10)
    for scale in (0.01, 0.3, 3.0):
        Gam = -Y + scale * torch.tensor(rng.standard_normal(Y.shape))
        om = scale * torch.tensor(rng.standard_normal(prob.n))
        N = scale * torch.tensor(rng.random((2 * prob.n, 2 * prob.n)))
        for upper in (None, 0.5 * float((Y * Y).sum()), value):
            b = prob.dual_bound(Gam, om, N, upper=upper)
            assert b.value <= value + 1e-6
            assert 0.0 <= b.theta <= 1.0


def test_sandwich_lower_bound_exact_optimum_network_2d():
    """LB(SDP) ≤ p* (exact program over ALL patterns of 2-D data) ≤ extracted network."""
    X, Y = _data(10, 2, 1, 5)
    reg = 0.05
    prog = TwoLayerProgram(X, Y, _all_patterns_2d(X), reg, "squared", "relu")
    assert prog.P == 2 * X.shape[0]
    _, cert_exact, res = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    p_star = res.extras["value"]  # exact optimum over all networks (solver tolerance)
    fit = fit_sdp(X, Y, reg, intercept=False, solver="cvxpy", random_state=0)
    lb, ub = fit.certificate.dual, fit.certificate.primal
    assert lb <= p_star + 1e-6 * abs(p_star)
    assert p_star <= ub + 1e-6 * abs(p_star)
    assert math.isclose(ub, fit.network.objective(X, Y, reg), rel_tol=1e-12)
    assert fit.certificate.scope == "global"


def test_fit_sdp_vector_output_with_intercept_is_consistent():
    X, Y = _data(12, 2, 3, 6, intercept=True)
    fit = fit_sdp(X, Y, 0.1, intercept=True, solver="cvxpy")
    c = fit.certificate
    assert c.dual <= fit.info["sdp_value_estimate"] + 1e-6
    assert c.dual <= c.primal
    assert math.isclose(c.primal, fit.network.objective(X[:, :-1], Y, 0.1), rel_tol=1e-12)
    assert fit.network.n_outputs == 3
    # predictions of the exported torch module equal the network's
    mod = fit.network.to_torch()
    assert torch.allclose(mod(X[:, :-1]), fit.network.forward(X[:, :-1]), atol=1e-10)


def test_lowrank_solver_matches_cvxpy():
    X, Y = _data(10, 2, 1, 0, intercept=True)
    reg = 0.2
    prob = SDPRelaxation(X, Y, reg, intercept=True)
    value, _ = _solve_sdp_cvxpy(prob)
    fit = fit_sdp(X, Y, reg, intercept=True, solver="lowrank", random_state=0, tol=1e-6,
                  max_iter=8000)
    est = fit.info["sdp_value_estimate"]
    assert abs(est - value) <= 1e-2 * value          # the relaxation's optimum is found
    assert fit.info["violation"] <= 1e-4
    assert fit.certificate.dual <= value + 1e-7      # the reported bound is proven
    assert fit.certificate.dual >= 0.8 * value       # and not vacuous
    assert fit.certificate.dual <= fit.certificate.primal


@pytest.mark.parametrize("n,d,c,seed", [(10, 2, 1, 0), (16, 3, 2, 1), (24, 2, 3, 2)])
def test_interior_point_matches_cvxpy(n, d, c, seed):
    """The structured interior-point method (with its working set of entrywise constraints)
    reaches CVXPY + Clarabel's optimum of the full relaxation, and its bound is proven."""
    X, Y = _data(n, d, c, seed, intercept=True)
    reg = 0.1
    prob = SDPRelaxation(X, Y, reg, intercept=True)
    value, _ = _solve_sdp_cvxpy(prob)
    bound, Z, info = solve_ipm(prob, tol=1e-8)
    # "stalled": the step lengths collapsed at ~1e-8 infeasibility, already accurate enough
    assert info["ipm_stop"] in ("gap_tolerance", "stalled")
    assert abs(info["sdp_primal_estimate"] - value) <= 1e-6 * value
    assert bound.value <= value + 1e-6 * value     # a lower bound of the optimum
    assert bound.value >= value - 1e-6 * value     # and tight
    # the returned Z is (nearly) feasible for every constraint, not just the working set
    assert prob.objective_matrix(Z) == pytest.approx(value, rel=1e-6)
    assert torch.linalg.eigvalsh(Z).min() >= -1e-8 * float(Z.diagonal().max())


def test_fit_sdp_ipm_sandwich_2d():
    """Default solver: LB ≤ p* (exact program over all patterns) ≤ extracted network."""
    X, Y = _data(12, 2, 1, 7)
    reg = 0.05
    prog = TwoLayerProgram(X, Y, _all_patterns_2d(X), reg, "squared", "relu")
    _, _, res = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    p_star = res.extras["value"]
    fit = fit_sdp(X, Y, reg, intercept=False, random_state=0)
    assert fit.info["solver"] == "ipm"
    lb, ub = fit.certificate.dual, fit.certificate.primal
    assert lb <= p_star + 1e-6 * abs(p_star) and p_star <= ub + 1e-6 * abs(p_star)
    assert lb >= 0.5 * p_star  # not vacuous


def test_burer_monteiro_generic_small_sdp():
    """The generic solver on a textbook SDP: max-cut-like  min <C, Z>, diag(Z) = 1, Z ⪰ 0,
    Z ≥ 0 entrywise — against CVXPY."""
    import cvxpy as cp

    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    C = torch.tensor(A + A.T)

    class P:
        def objective(self, W):
            return (C * (W @ W.T)).sum()

        def equality(self, W):
            return (W * W).sum(1) - 1

        def inequality(self, W):
            return W @ W.T

    res = burer_monteiro_al(P(), torch.tensor(rng.standard_normal((6, 6))) / 3, rho=10.0,
                            max_iter=5000, feas_tol=1e-7, inner_iter=300)
    Z = cp.Variable((6, 6), PSD=True)
    pr = cp.Problem(cp.Minimize(cp.trace(C.numpy() @ Z)), [cp.diag(Z) == 1, Z >= 0])
    pr.solve(solver="CLARABEL")
    W = res.x
    assert abs(float(P().objective(W)) - pr.value) <= 1e-4 * abs(pr.value)
    assert float(P().equality(W).abs().max()) <= 1e-5


def _classification(n, seed):
    """Standardised iris subsample with one-hot targets and a bias column (the paper's use)."""
    X, Y = iris_subsample(n, seed)
    return torch.tensor(X), torch.tensor(Y)


@pytest.mark.parametrize("n,seed,accel,eig", [(12, 0, True, "auto"), (20, 1, True, "auto"),
                                              (20, 1, False, "auto"), (20, 1, True, "full")])
def test_admm_matches_cvxpy(n, seed, accel, eig):
    """The first-order solver (restarted momentum by default, and plain; positive eigenpairs by
    LAPACK's subset driver by default, and by a full eigendecomposition) reaches CVXPY +
    Clarabel's optimum of the full relaxation (all 4n² entrywise constraints, no working set),
    and its bound is proven and tight."""
    X, Y = _classification(n, seed)
    prob = SDPRelaxation(X, Y, 0.1, intercept=True)
    value, _ = _solve_sdp_cvxpy(prob)
    bound, Z, info = solve_admm(prob, tol=1e-5, max_iter=20000, accel=accel, eig=eig)
    assert info["admm_stop"] == "gap_tolerance"
    assert abs(info["sdp_primal_estimate"] - value) <= 1e-4 * value
    assert bound.value <= value + 1e-7 * value     # proven lower bound
    assert bound.value >= value - 1e-3 * value     # and close to the optimum
    assert torch.linalg.eigvalsh(Z).min() >= -1e-10 * float(Z.diagonal().max())
    # the certificate tightens when a better (proven) upper bound is supplied
    assert info["certify"](value * (1 + 1e-6)).value >= bound.value


def test_structured_factor_and_subset_eigenpairs_give_the_dense_iterates():
    """The block Cholesky factor of TᵀT (O(n d) per column) factors G exactly and its ADMM
    iterates equal those of the dense inverse root; LAPACK's positive-eigenpair subset equals
    the positive part of a full eigendecomposition; rank-deficient X falls back on the dense
    root; bad eig modes are rejected."""
    from convexnn.formulations.sdp.lifting import lift_factor, lift_rows
    from convexnn.pipelines.sdp import admm as admm_mod
    from convexnn.solvers.sdp_admm import positive_part

    X, Y = _classification(15, 2)
    prob = SDPRelaxation(X, Y, 0.1, intercept=True)
    T = lift_rows(prob.X, prob.c)
    solve = lift_factor(prob.X, 0.0, prob.c)
    Linv = solve(torch.eye(prob.q, dtype=X.dtype), False)
    L = torch.linalg.inv(Linv)
    assert torch.allclose(L @ L.T, T.T @ T, atol=1e-12)
    assert torch.allclose(solve(torch.eye(prob.q, dtype=X.dtype), True), Linv.T, atol=1e-12)
    assert lift_factor(torch.cat([X, X[:, :1]], 1), 0.0, prob.c) is None

    rng = np.random.default_rng(0)
    B = torch.tensor(rng.standard_normal((40, 40)))
    w, V = positive_part(B + B.T, "subset")
    wf, Vf = positive_part(B + B.T, "full")
    assert torch.allclose(w, wf, atol=1e-10)
    assert torch.allclose((V * w) @ V.T, (Vf * wf) @ Vf.T, atol=1e-10)
    with pytest.raises(ValueError, match="eig"):
        positive_part(B, "lanczos")
    with pytest.raises(ValueError, match="float32/float64"):
        positive_part(B.to(torch.bfloat16), "subset")

    # the same 40 ADMM steps with the structured factor and with the dense root
    calls = {}
    orig = admm_mod.lift_factor
    try:
        for name, factor in (("structured", orig), ("dense", lambda *a: None)):
            admm_mod.lift_factor = factor
            calls[name] = solve_admm(prob, tol=1e-12, max_iter=40, check_every=10,
                                     neuron_first=None)
    finally:
        admm_mod.lift_factor = orig
    Zs, Zd = calls["structured"][1], calls["dense"][1]
    assert torch.allclose(Zs, Zd, atol=1e-8 * float(Zd.abs().max()))
    with pytest.raises(ValueError, match="eig"):
        solve_admm(prob, eig="lanczos")


def test_admm_mixed_precision_switches_to_float64_and_stays_proven(monkeypatch):
    """dtype="mixed": float32 iterates stall (their rounding caps the certificate's accuracy,
    here at ~1e-3), the solver notices, continues in float64 and returns a proven bound much
    closer to CVXPY's optimum; a stall above the floor _STALL_BELOW does not switch; an
    unknown dtype is rejected."""
    from convexnn.pipelines.sdp import admm as admm_mod

    X, Y = _classification(20, 1)
    prob = SDPRelaxation(X, Y, 0.1, intercept=True)
    value, _ = _solve_sdp_cvxpy(prob)
    b32, _, i32 = solve_admm(prob, tol=1e-5, max_iter=6000, dtype=torch.float32)
    bound, _, info = solve_admm(prob, tol=1e-5, max_iter=20000, dtype="mixed")
    assert i32["precision_switch_iteration"] is None
    assert info["precision_switch_iteration"] is not None
    assert b32.value <= value + 1e-7 * value and bound.value <= value + 1e-7 * value
    assert value - bound.value <= 2e-4 * value
    assert value - bound.value <= 0.25 * (value - b32.value)
    sw = info["precision_switch_iteration"]
    monkeypatch.setattr(admm_mod, "_STALL_BELOW", 1e-9)    # the stall is above this floor
    _, _, ifl = solve_admm(prob, tol=1e-5, max_iter=sw + 2000, dtype="mixed")
    assert ifl["precision_switch_iteration"] is None
    with pytest.raises(ValueError, match="dtype"):
        solve_admm(prob, dtype="half")


def test_fit_sdp_admm_sandwich_and_auto_choice():
    """solver="admm": LB ≤ CVXPY's SDP optimum ≤ p* ≤ network; "auto" switches to the ADMM
    above the interior-point size limit."""
    X, Y = _classification(24, 3)
    prob = SDPRelaxation(X, Y, 0.1, intercept=True)
    value, _ = _solve_sdp_cvxpy(prob)
    fit = fit_sdp(X, Y, 0.1, intercept=True, solver="admm", tol=1e-4)
    c = fit.certificate
    assert fit.info["solver"] == "admm"
    assert fit.info["precision_switch_iteration"] is None     # q < 700: float64 throughout
    assert c.dual <= value + 1e-7 * value <= c.primal
    assert c.dual >= 0.99 * value
    assert math.isclose(c.primal, fit.network.objective(X[:, :-1], Y, 0.1), rel_tol=1e-12)
    from convexnn.pipelines.sdp import fit as fit_mod

    Xb, Yb = _classification(fit_mod._AUTO_IPM_MAX_N + 1, 4)
    auto = fit_sdp(Xb, Yb, 0.1, intercept=True, max_iter=20)
    assert auto.info["solver"] == "admm"
    assert auto.certificate.dual <= auto.certificate.primal


@pytest.mark.parametrize("accel", [False, True])
def test_sdp_admm_generic_doubly_nonnegative_projection(accel):
    """The generic solver on  min ½||Z − A||²  s.t. Z ⪰ 0, Z ≥ 0 (T = I) — against CVXPY + SCS,
    plain and with restarted momentum."""
    import cvxpy as cp

    rng = np.random.default_rng(3)
    B = rng.standard_normal((7, 7))
    A = torch.tensor(B + B.T)

    def prox(V, r):   # entrywise argmin ½(k − a)² + (r/2)(k − v)² over k ≥ 0
        return ((A + r * V) / (1 + r)).clamp_min(0)

    sdp = CongruenceSDP(C=torch.zeros(7, 7, dtype=A.dtype), G=torch.eye(7, dtype=A.dtype),
                        gram_fn=lambda Z: Z, adjoint_fn=lambda E: E, prox_fn=prox)
    res = sdp_admm(sdp, rho=1.0, max_iter=3000, check_every=10, accel=accel,
                   monitor=lambda s: s["r_primal"] < 1e-10 and s["r_dual"] < 1e-10)
    Zc = cp.Variable((7, 7), PSD=True)
    # SCS at high accuracy: Clarabel stops at ~2e-5 on this projection
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(Zc - A.numpy())), [Zc >= 0]).solve(
        solver="SCS", eps=1e-9, max_iters=100000)
    assert np.abs(res.x.numpy() - Zc.value).max() <= 1e-6
    assert float(res.x.min()) >= -1e-8
    with pytest.raises(ValueError, match="relax"):
        sdp_admm(sdp, relax=2.5)
    with pytest.raises(ValueError, match="rho"):
        sdp_admm(sdp, rho=0.0)
    with pytest.raises(ValueError, match="restart_eta"):
        sdp_admm(sdp, restart_eta=1.5)


def test_bad_inputs():
    X, Y = _data(6, 2, 1, 0)
    with pytest.raises(ValueError, match="squared"):
        fit_sdp(X, Y, 0.1, "logistic", intercept=False)
    with pytest.raises(ValueError, match="solver"):
        fit_sdp(X, Y, 0.1, intercept=False, solver="mosek-please")
    with pytest.raises(ValueError, match="reg"):
        fit_sdp(X, Y, 0.0, intercept=False)
    with pytest.raises(ValueError, match="samples"):
        SDPRelaxation(X, Y[:3], 0.1)


def test_estimator_method_sdp_fit_predict_save_load(tmp_path):
    """The user-facing path: method="sdp" on the classifier (one-hot squared loss, as in the
    paper), the ADMM chosen through method_options, a global certificate, save/load."""
    from sklearn.datasets import load_iris

    from convexnn.estimators.two_layer import ConvexReLUClassifier, load_estimator

    X, y = load_iris(return_X_y=True)
    idx = np.random.default_rng(0).choice(len(y), 40, replace=False)
    X, y = (X[idx] - X[idx].mean(0)) / X[idx].std(0), y[idx]
    clf = ConvexReLUClassifier(reg=0.1, loss="squared", method="sdp",
                               method_options={"solver": "admm"}, max_iter=5000)
    clf.fit(X, y)
    cert = clf.certificate_
    assert clf.fit_info_["solver"] == "admm"
    assert cert.scope == "global" and cert.dual <= cert.primal
    assert math.isclose(cert.primal, clf.objective(X, y), rel_tol=1e-9)
    assert clf.score(X, y) >= 0.9
    clf.save(tmp_path / "m")
    back = load_estimator(tmp_path / "m")
    assert np.array_equal(back.predict(X), clf.predict(X))
    with pytest.raises(ValueError, match="squared"):
        ConvexReLUClassifier(reg=0.1, method="sdp").fit(X, y)
