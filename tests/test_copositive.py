"""Vector-output copositive programs: exact solver, oracle, relaxation, SVD, certify()."""

import warnings

import numpy as np
import pytest
import torch

from convexnn.certificates.global_ import certify
from convexnn.formulations.copositive import (
    ConeFaces,
    cone_constrained_pca,
    exact_sdp_reference,
    fit_column_generation,
    fit_exact,
    fit_relaxation,
    fit_svd,
    prune_network,
    solve_exact_program,
)
from convexnn.formulations.two_layer import TwoLayerProgram, to_cvxpy
from convexnn.networks import TwoLayerNetwork
from convexnn.patterns.arrangements import ArrangementTooLarge, enumerate_patterns

cp = pytest.importorskip("cvxpy")


def _data(n, din, c, seed, bias=True):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, din))
    Y = np.c_[np.sin(2 * X[:, :1]), X[:, -1:] ** 2, X[:, :1] * X[:, -1:]][:, :c]
    Y = Y + 0.1 * rng.standard_normal(Y.shape)
    return (np.c_[X, np.ones(n)] if bias else X), Y


def _adam(X, Y, reg, m, seed, steps=1500):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], m), torch.nn.ReLU(),
                                torch.nn.Linear(m, Y.shape[1], bias=False)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * ((model(Xt) - Yt) ** 2).sum() + 0.5 * reg * sum(
            (p ** 2).sum() for p in model.parameters())
        loss.backward()
        opt.step()
    return TwoLayerNetwork.from_torch(model)


# ------------------------------------------------------------------------------ oracle
def test_oracle_matches_bruteforce_face_search_and_sampling():
    X, _ = _data(14, 2, 1, 0)
    ps = enumerate_patterns(X)
    faces = ConeFaces(X, ps.gates)
    rng = np.random.default_rng(1)
    Lam = rng.standard_normal((14, 3))
    h, U = faces.oracle(Lam)
    M = X @ ps.gates.numpy() >= 0
    for p in range(0, ps.n_patterns, 7):
        A = Lam.T @ (M[:, p:p + 1] * X)
        B = (2 * M[:, p:p + 1] - 1) * X
        ref, _ = cone_constrained_pca(A, B)  # all row subsets, no facet bookkeeping
        assert h[p] == pytest.approx(ref, rel=1e-9)
        assert (B @ U[p]).min() >= -1e-8 and np.linalg.norm(A @ U[p]) == pytest.approx(h[p])
        # independent: random unit vectors of the cone never beat the oracle
        Ur = rng.standard_normal((20000, 3))
        Ur /= np.linalg.norm(Ur, axis=1, keepdims=True)
        Ur = Ur[(Ur @ B.T).min(1) >= 0]
        if len(Ur):
            assert np.linalg.norm(Ur @ A.T, axis=1).max() <= h[p] * (1 + 1e-12)


# -------------------------------------------------------------------------- exact
def test_exact_scalar_matches_socp_over_enumerated_patterns():
    X, Y = _data(12, 2, 1, 2)
    reg = 0.1
    res = fit_exact(X, Y, reg, intercept=True, tol=1e-7)
    ps = enumerate_patterns(X)
    prob, _ = to_cvxpy(TwoLayerProgram(torch.as_tensor(X), torch.as_tensor(Y), ps, reg,
                                       intercept=True))
    prob.solve(solver="CLARABEL")
    assert res.certificate.scope == "global"
    assert res.certificate.primal == pytest.approx(prob.value, rel=1e-6)
    assert res.certificate.dual <= prob.value * (1 + 1e-8)
    obj = res.network.objective(X[:, :-1], Y, reg)
    assert obj == pytest.approx(res.certificate.primal, rel=1e-12)


@pytest.mark.parametrize("n,din,c", [(10, 2, 3), (14, 1, 2)])
def test_exact_vector_matches_independent_sdp(n, din, c):
    X, Y = _data(n, din, c, 3 + n)
    reg = 0.2
    res = fit_exact(X, Y, reg, intercept=True, tol=1e-7)
    ref = exact_sdp_reference(X, Y, reg, enumerate_patterns(X))
    assert ref["status"] == "optimal"
    assert res.certificate.primal == pytest.approx(ref["value"], rel=1e-6)
    assert res.certificate.dual <= ref["value"] * (1 + 1e-7)
    assert res.certificate.scope == "global" and res.info["optimal"]
    net = res.network
    assert net.objective(X[:, :-1], Y, reg) == pytest.approx(res.certificate.primal, rel=1e-12)
    # exported module reproduces the network
    out = net.to_torch()(torch.as_tensor(X[:, :-1]))
    assert torch.allclose(out, net.forward(X[:, :-1]), atol=1e-12)


def test_sdp_reference_agrees_with_socp_in_scalar_case():
    # validates the reference itself (Diananda / triangulation argument) on c = 1
    X, Y = _data(9, 2, 1, 5)
    ps = enumerate_patterns(X)
    ref = exact_sdp_reference(X, Y, 0.15, ps)
    prob, _ = to_cvxpy(TwoLayerProgram(torch.as_tensor(X), torch.as_tensor(Y), ps, 0.15))
    prob.solve(solver="CLARABEL")
    assert ref["value"] == pytest.approx(prob.value, rel=1e-6)


def test_exact_refuses_large_arrangement_with_count():
    X = np.c_[np.random.default_rng(0).standard_normal((300, 4)), np.ones(300)]
    with pytest.raises(ArrangementTooLarge, match="activation patterns"):
        fit_exact(X, np.ones((300, 1)), 0.1, intercept=True, max_patterns=1000)
    with pytest.raises(ValueError, match="GiB"):  # default: refused by the memory estimate
        fit_exact(X, np.ones((300, 1)), 0.1, intercept=True)


def test_exact_other_loss_and_bad_inputs():
    X, Y = _data(10, 1, 1, 6)
    yb = np.sign(Y - np.median(Y))
    res = fit_exact(X, yb, 0.1, "logistic", intercept=True, tol=1e-5)
    assert res.certificate.relative_gap <= 1e-5 and res.certificate.scope == "global"
    with pytest.raises(ValueError):
        fit_exact(X, Y, 0.0, intercept=True)
    with pytest.raises(ValueError):
        fit_exact(X, Y[:5], 0.1, intercept=True)


# --------------------------------------------------------------------- relaxation
@pytest.mark.parametrize("n,din,c", [(9, 2, 2), (12, 1, 3)])
def test_relaxation_bounds_sandwich_the_exact_optimum(n, din, c):
    X, Y = _data(n, din, c, 7 + n)
    reg = 0.2
    ex = fit_exact(X, Y, reg, intercept=True, tol=1e-8)
    p_star = ex.certificate.primal
    rel = fit_relaxation(X, Y, reg, intercept=True)
    lo, up = rel.info["lower_bound"], rel.info["upper_bound"]
    assert lo <= p_star * (1 + 1e-8)
    assert p_star <= up * (1 + 1e-8)
    assert rel.network.objective(X[:, :-1], Y, reg) == pytest.approx(up, rel=1e-10)
    assert rel.certificate.scope == "global"
    if din == 1:  # rank 2: every cone is simplicial and CP = DNN: the relaxation is exact
        assert rel.info["tightness"] <= 1e-4
        assert rel.info["relaxation_value"] == pytest.approx(p_star, rel=1e-5)


def test_relaxation_sampled_scope_and_loss_refusal():
    X, Y = _data(12, 2, 2, 11)
    rel = fit_relaxation(X, Y, 0.2, intercept=True, patterns="sample", n_patterns=15,
                         random_state=0)
    assert rel.certificate.scope == "sampled patterns"
    assert rel.info["lower_bound"] <= rel.info["upper_bound"] * (1 + 1e-9)
    with pytest.raises(ValueError, match="squared"):
        fit_relaxation(X, Y, 0.2, "logistic", intercept=True)


# ---------------------------------------------------------------------------- SVD
def test_svd_whitened_one_hot_matches_exact():
    rng = np.random.default_rng(0)
    Xw = np.linalg.qr(rng.standard_normal((6, 4)))[0].T  # 4 x 6, X Xᵀ = I
    Y = np.eye(3)[[0, 0, 1, 2]]
    reg = 0.3
    sv = fit_svd(Xw, Y, reg, intercept=False)
    ex = fit_exact(Xw, Y, reg, intercept=False, tol=1e-9)
    assert sv.info["conditions_hold"]
    assert sv.certificate.primal == pytest.approx(ex.certificate.primal, rel=1e-7)
    assert sv.certificate.relative_gap <= 1e-10 and sv.certificate.scope == "global"
    assert sv.network.n_neurons == 3


def test_svd_orthonormal_spike_free_columns_match_exact():
    # one positive entry per row: XᵀX = I and (Xu)_+ = X(u)_+, so X is spike-free
    cols = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    X = np.zeros((8, 3))
    X[np.arange(8), cols] = np.random.default_rng(1).uniform(0.5, 1.5, 8)
    X /= np.linalg.norm(X, axis=0)
    # XᵀY = diag(3, 1) padded: retained left singular vectors e_k are sign-definite
    N = np.random.default_rng(2).standard_normal((8, 2))
    Y = X @ np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]]) + N - X @ (X.T @ N)
    reg = 0.2
    sv = fit_svd(X, Y, reg, intercept=False)
    ex = fit_exact(X, Y, reg, intercept=False, tol=1e-9)
    assert sv.info["case"] == "orthonormal columns" and sv.info["conditions_hold"]
    assert sv.certificate.primal == pytest.approx(ex.certificate.primal, rel=1e-7)


def test_svd_refuses_or_flags_when_conditions_fail():
    X, Y = _data(10, 2, 2, 4)
    with pytest.raises(ValueError, match="whitened"):
        fit_svd(X, Y, 0.1, intercept=True)
    rng = np.random.default_rng(5)
    Xw = np.linalg.qr(rng.standard_normal((8, 5)))[0].T
    Ym = rng.standard_normal((5, 2))  # mixed-sign singular vectors
    with pytest.raises(ValueError, match="sign-definite"):
        fit_svd(Xw, Ym, 0.1, intercept=False)
    with pytest.warns(RuntimeWarning):
        fl = fit_svd(Xw, Ym, 0.1, intercept=False, on_violation="warn")
    ex = fit_exact(Xw, Ym, 0.1, intercept=False, tol=1e-6)
    assert not fl.info["conditions_hold"]
    # the flagged certificate stays honest: lower ≤ p* ≤ its network objective
    assert fl.certificate.dual <= ex.certificate.primal * (1 + 1e-8)
    assert fl.certificate.primal >= ex.certificate.dual * (1 - 1e-8)
    assert fl.certificate.primal > ex.certificate.primal * (1 + 1e-3)  # really not optimal


# ------------------------------------------------------------------------ certify
def test_certify_exact_network_and_adam_networks():
    X, Y = _data(9, 2, 2, 8, bias=False)
    reg = 0.1
    Xa = np.c_[X, np.ones(len(X))]
    ex = fit_exact(Xa, Y, reg, intercept=True, tol=1e-8)
    p_star = ex.certificate.primal
    good = certify(ex.network, X, Y, reg)
    assert good.is_optimal is True and good.scope == "global"
    assert good.dual <= p_star * (1 + 1e-9)
    bad = certify(_adam(X, Y, reg, 2, 0), X, Y, reg)
    assert bad.dual <= p_star * (1 + 1e-9) <= bad.primal * (1 + 1e-9)
    assert bad.is_optimal is False and bad.optimum_upper_bound < bad.primal
    assert bad.better_network.objective(X, Y, reg) == pytest.approx(bad.optimum_upper_bound)
    # without solving: the bound from the network's own gradient is still a proven bound
    quick = certify(bad.better_network, X, Y, reg, solve=False)
    assert quick.dual <= p_star * (1 + 1e-9)
    # norm-bound path (arrangement "too large"): valid, loose, undecided
    loose = certify(_adam(X, Y, reg, 8, 1), X, Y, reg, max_patterns=5, solve=False,
                    relaxation=False)
    assert loose.scope == "global (norm bound)" and loose.dual <= p_star
    assert loose.is_optimal in (None, True)


def test_certify_logistic_and_input_errors():
    X, Y = _data(10, 1, 1, 9, bias=False)
    yb = np.sign(Y - np.median(Y))
    g = torch.Generator().manual_seed(0)
    net = TwoLayerNetwork(*(torch.randn(*s, generator=g, dtype=torch.float64)
                            for s in [(3, 1), (3,), (1, 3)]))
    cert = certify(net, X, yb, 0.1, "logistic")
    ex = fit_exact(np.c_[X, np.ones(10)], yb, 0.1, "logistic", intercept=True, tol=1e-5)
    assert cert.dual <= ex.certificate.primal * (1 + 1e-6) and cert.dual <= cert.primal
    with pytest.raises(ValueError):
        certify(net, X[:, :0], yb, 0.1)
    with pytest.raises(ValueError):
        certify(net, X, yb, -1.0)


def test_oracle_subset_and_partial_pricing_give_the_same_values_and_optimum():
    X, Y = _data(25, 2, 2, 3)
    pats = enumerate_patterns(X)
    faces = ConeFaces(X, pats.gates, exhaustive=True)
    lam = np.random.default_rng(1).standard_normal((25, 2))
    h, U = faces.oracle(lam)
    cells = np.random.default_rng(2).choice(faces.P, 40, replace=False)
    hs, Us = faces.subset(cells).oracle(lam)
    np.testing.assert_allclose(hs, h[cells], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.abs(Us @ U[cells].T).diagonal()[hs > 1e-9], 1.0, rtol=1e-9)
    outs = [solve_exact_program(X, Y, 0.1, patterns=pats, faces=faces, tol=1e-8, max_iter=500,
                                max_add=3, partial=p) for p in (True, False)]
    for o in outs:
        assert o["certificate"].relative_gap <= 1e-8 and o["certificate"].scope == "global"
    p1, p2 = (o["certificate"].primal for o in outs)
    assert p1 == pytest.approx(p2, rel=2e-8)


# ------------------------------------------------------------- column generation
def test_column_generation_sampled_mode_is_an_upper_bound():
    X, Y = _data(10, 2, 2, 10)
    reg = 0.2
    ex = fit_exact(X, Y, reg, intercept=True, tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cg = fit_column_generation(X, Y, reg, intercept=True, n_patterns=40, random_state=0,
                                   tol=1e-5)
    c_ = cg.certificate
    assert c_.dual <= c_.primal * (1 + 1e-9)  # dual bounds a program the network is feasible for
    assert cg.certificate.scope == "sampled patterns"
    assert cg.certificate.primal >= ex.certificate.dual * (1 - 1e-9)
    assert cg.certificate.primal <= ex.certificate.primal * 1.05
    assert "not a global proof" in cg.info["proved"]


# ------------------------------------------------------------------------- pruning
def test_exact_networks_are_pruned_to_nc_plus_one():
    X, Y = _data(12, 2, 3, 12)
    reg = 0.05
    ps = enumerate_patterns(X)
    full = solve_exact_program(X, Y, reg, patterns=ps, tol=1e-8, prune=False)
    res = fit_exact(X, Y, reg, intercept=True, tol=1e-8)
    assert len(full["U"]) > 12 * 3 + 1  # the unpruned solution is larger than the bound
    net = res.network
    assert net.n_neurons <= 12 * 3 + 1
    F_full = np.maximum(X @ full["U"].T, 0) @ full["G"]
    assert np.abs(net.forward(X[:, :-1]).numpy() - F_full).max() <= 1e-9 * np.abs(F_full).max()
    assert res.certificate.primal == pytest.approx(full["certificate"].primal, rel=1e-10)
    assert net.objective(X[:, :-1], Y, reg) == pytest.approx(res.certificate.primal, rel=1e-12)
    assert res.certificate.relative_gap <= 1e-8


def test_prune_network_keeps_predictions_and_objective_of_any_network():
    X, Y = _data(10, 2, 2, 13, bias=False)
    g = torch.Generator().manual_seed(1)
    W, b, V = (torch.randn(*s, generator=g, dtype=torch.float64) for s in [(60, 2), (60,),
                                                                            (2, 60)])
    s = torch.sqrt(V.norm(dim=0) / torch.sqrt((W ** 2).sum(1) + b ** 2))  # balance the neurons
    net = TwoLayerNetwork(W * s[:, None], b * s, V / s)
    small = prune_network(net, X)
    assert small.n_neurons <= 10 * 2 + 1
    assert torch.allclose(small.forward(X), net.forward(X), rtol=0, atol=1e-10)
    assert small.objective(X, Y, 0.1) == pytest.approx(net.objective(X, Y, 0.1), rel=1e-12)
    unbalanced = TwoLayerNetwork(W, b, V)  # pruning balances: the objective can only drop
    assert prune_network(unbalanced, X).objective(X, Y, 0.1) <= unbalanced.objective(
        X, Y, 0.1) + 1e-12


@pytest.mark.slow  # ~10-25 s: one CVXPY SDP over ~400 sampled cones
def test_relaxation_runs_at_default_arguments_beyond_the_enumeration_limit():
    X, Y = _data(16, 3, 2, 14)  # rank 4: up to 1,152 patterns > max_enumerate = 1,000
    reg = 0.3
    rel = fit_relaxation(X, Y, reg, intercept=True)
    assert not rel.info["exhaustive"] and rel.certificate.scope == "sampled patterns"
    assert rel.info["lower_bound"] <= rel.info["upper_bound"] * (1 + 1e-8)
    ex = fit_exact(X, Y, reg, intercept=True, tol=1e-7)
    assert rel.info["upper_bound"] >= ex.certificate.dual * (1 - 1e-8)  # a network: ≥ p*
    assert rel.network.objective(X[:, :-1], Y, reg) == pytest.approx(rel.info["upper_bound"],
                                                                      rel=1e-10)
    assert rel.network.n_neurons <= 16 * 2 + 1
