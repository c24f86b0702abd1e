"""Convex CNNs: every program against an independent CVXPY form, every read-back network
against the convex objective, exported torch modules against the containers."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning

from convexnn.formulations.cnn import (
    CircularCNNProgram,
    ConvSharedFilterProgram,
    ConvTwoLayerProgram,
    ThreeLayerCNNProgram,
    fourier_basis,
    solve,
)
from convexnn.patterns import sample_gates
from convexnn.patterns.patches import (
    enumerate_patch_patterns,
    extract_patches,
    patch_masks,
    sample_patch_gates,
)

cp = pytest.importorskip("cvxpy")
DT = torch.float64


def _data(N=6, C=1, H=4, W=4, c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(N, C, H, W, generator=g, dtype=DT)
    Y = torch.randn(N, c, generator=g, dtype=DT)
    return imgs, Y


CVX = 1e-7  # relative accuracy of the CVXPY reference (Clarabel's default tolerances)


def _check_against_cvxpy(prog, x, cert, tol):
    """``cert`` (from a solve at ``tol``) against an independent CVXPY optimum; every tolerance
    is the solve's ``tol`` plus the reference's own accuracy."""
    with warnings.catch_warnings():  # the reference's own certificate is not under test
        warnings.simplefilter("ignore", ConvergenceWarning)
        xc, cert_c, res_c = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    p_ref = res_c.extras["value"]
    slack = (tol + CVX) * max(1.0, abs(p_ref))
    # the solve reached its tolerance (else it would have warned and said so)
    assert cert.relative_gap <= tol and "NOT CONVERGED" not in cert.problem
    # the certified primal is an actual network's objective, within the gap of the optimum ...
    assert cert.primal <= p_ref + slack
    if prog.max_violation(x) == 0 or cert.scope == "global":
        # ... and never below it when attained by a feasible point or when the program is exact
        assert cert.primal >= p_ref - CVX * max(1.0, abs(p_ref))
    # a feasible returned point solves the same program (its convex objective)
    if prog.max_violation(x) == 0:
        assert abs(prog.objective(x) - p_ref) <= slack
    assert prog.max_violation(x) <= math.sqrt(tol) * float(prog.images.abs().max()
                                                           if hasattr(prog, "images") else 1.0)
    # the certified lower bound is a lower bound of the independent optimum
    assert cert.dual <= p_ref + CVX * max(1.0, abs(p_ref))
    return p_ref


def _check_readback(prog, x, cert, images, Y, reg, loss="squared"):
    net = prog.to_network(x)
    obj = net.objective(images, Y, reg, loss)
    assert obj == pytest.approx(cert.primal, rel=1e-7, abs=1e-9)
    model = net.to_torch()
    with torch.no_grad():
        out = model(images) if not isinstance(prog, CircularCNNProgram) else model(images[:, None])
    ref = net.forward(images)
    assert torch.allclose(out, ref, atol=1e-10, rtol=1e-9)
    return net


# --------------------------------------------------------------------------- patches
@pytest.mark.parametrize("stride,padding,intercept", [(1, 0, True), (2, 1, False), (1, 1, True)])
def test_patches_match_conv2d(stride, padding, intercept):
    imgs, _ = _data(N=3, C=2, H=5, W=6)
    P = extract_patches(imgs, 3, stride, padding, intercept)
    u = torch.randn(P.shape[2], dtype=DT)
    W = u[:18].reshape(1, 2, 3, 3)
    b = u[18:19] if intercept else None
    ref = F.conv2d(imgs, W, b, stride=stride, padding=padding).flatten(1)
    assert torch.allclose(P @ u, ref, atol=1e-12)
    G = torch.randn(P.shape[2], 4, dtype=DT)
    M = patch_masks(imgs, G, 3, stride, padding, intercept)
    assert torch.equal(M, (P @ G >= 0).transpose(1, 2))


def test_enumeration_is_exhaustive_rank2():
    imgs, _ = _data(N=5, C=1, H=3, W=3)
    ps = enumerate_patch_patterns(imgs, 1, intercept=True)  # h = 2: exact
    assert ps.exhaustive
    X = extract_patches(imgs, 1, intercept=True).reshape(-1, 2)
    enum = {tuple(m) for m in (X @ ps.gates >= 0).T.int().tolist()}
    dense = sample_gates(X, 20000, random_state=1)
    sampled = {tuple(m) for m in (X @ dense.gates >= 0).T.int().tolist()}
    assert sampled <= enum  # random gates never find a pattern the enumeration missed
    assert len(enum) == len(sampled)  # and (here) find all of them


def test_enumeration_2x2_kernels_and_refusal():
    """2x2 kernel + bias (h = 5, rank 5): cell enumeration of the stacked patch matrix; dense
    random gates find no pattern it missed."""
    from convexnn.patterns.arrangements import ArrangementTooLarge

    imgs, _ = _data(N=4, C=1, H=3, W=3)
    ps = enumerate_patch_patterns(imgs, 2, intercept=True)
    assert ps.exhaustive and ps.info["rank"] == 5
    X = extract_patches(imgs, 2, intercept=True).reshape(-1, 5)
    enum = {tuple(m) for m in (X @ ps.gates >= 0).T.int().tolist()}
    assert len(enum) == ps.n_patterns  # one gate per pattern
    # 16 generic hyperplanes through 0 in R^5 cut it into 2 Σ_{k<5} C(15, k) cells; the
    # all-inactive one is dropped (it contributes no feature)
    assert len(enum) == 2 * sum(math.comb(15, k) for k in range(5)) - 1
    dense = sample_gates(X, 50000, random_state=2)
    sampled = {tuple(m) for m in (X @ dense.gates >= 0).T.int().tolist()}
    assert sampled <= enum  # (random gates find only about half of these thin cells)
    with pytest.raises(ArrangementTooLarge, match="patterns"):
        enumerate_patch_patterns(_data(N=30, H=6, W=6)[0], 2, intercept=True,
                                 max_patterns=1000)


# ------------------------------------------------------------------ two-layer CNN
@pytest.mark.parametrize("pooling,pool_size,c", [("avg", None, 1), ("max", None, 1),
                                                 ("avg", 2, 2), ("none", None, 1)])
def test_two_layer_relu_matches_cvxpy(pooling, pool_size, c):
    H = 4 if pooling == "none" else 5
    imgs, Y = _data(N=6, H=H, W=H, c=c, seed=1)
    reg = 0.1
    pats = sample_patch_gates(imgs, 4, 3, intercept=True, random_state=0)
    prog = ConvTwoLayerProgram(imgs, Y, pats, reg, "squared", "relu", kernel_size=3,
                               pooling=pooling, pool_size=pool_size)
    x, cert, _ = solve(prog, tol=1e-5, max_iter=3000)
    _check_against_cvxpy(prog, x, cert, 1e-5)
    _check_readback(prog, x, cert, imgs, Y, reg)
    assert cert.scope == "sampled patterns"


@pytest.mark.parametrize("pooling,pool_size,c,loss,solver", [
    ("avg", 2, 2, "squared", "admm"), ("max", None, 1, "squared", "admm"),
    ("none", None, 2, "cross_entropy", "admm"), ("avg", None, 1, "squared", "admm")])
def test_cutting_planes_match_full_program(pooling, pool_size, c, loss, solver):
    """Working sets of 2 rows per cone: the solver must find the missing cone rows itself and
    still reach the optimum of the full program (CVXPY sees every row); the certificate's μ
    lives on the working rows only and must still give a valid lower bound."""
    H = 4 if pooling == "none" else 5
    imgs, Y = _data(N=8, H=H, W=H, c=c, seed=7)
    if loss == "cross_entropy":
        Y = torch.eye(c, dtype=DT)[torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])]
    reg = 0.1
    pats = sample_patch_gates(imgs, 4, 3, intercept=True, random_state=1)
    prog = ConvTwoLayerProgram(imgs, Y, pats, reg, loss, "relu", kernel_size=3,
                               pooling=pooling, pool_size=pool_size, working_set=True,
                               init_rows=2)
    n_all = prog.P * prog.a * prog.N * prog.win.size
    assert prog.n_working_rows <= 2 * prog.P * prog.a < n_all
    x, cert, res = solve(prog, solver=solver, tol=1e-4, max_iter=6000, round_iters=20,
                         add_rows=6)
    assert res.extras["rows_added"] > 0 and prog.n_working_rows < n_all
    p_ref = _check_against_cvxpy(prog, x, cert, 1e-4)
    assert cert.relative_gap <= 1e-3
    assert cert.constraint_violation <= 1e-3 * max(1.0, float(x.abs().max()))
    assert cert.dual <= p_ref + 1e-7 * max(1.0, abs(p_ref))
    _check_readback(prog, x, cert, imgs, Y, reg, loss)
    with pytest.raises(ValueError, match="working_set"):
        solve(prog, solver="al")


def test_admm_gated_matches_fista():
    imgs, Y = _data(N=7, H=5, W=5, c=2, seed=8)
    pats = sample_patch_gates(imgs, 4, 3, intercept=True, random_state=0)
    prog = ConvTwoLayerProgram(imgs, Y, pats, 0.05, "squared", "gated", kernel_size=3,
                               pooling="avg", pool_size=2)
    xa, ca, ra = solve(prog, solver="admm", tol=1e-6, max_iter=6000)
    xf, cf, _ = solve(prog, solver="fista", tol=1e-6, max_iter=6000)
    assert ca.relative_gap <= 1e-5 and ra.stop_reason == "gap_tolerance"
    assert ca.primal == pytest.approx(cf.primal, rel=2e-5)
    assert ca.dual <= cf.primal + 1e-9 and cf.dual <= ca.primal + 1e-9


@pytest.mark.parametrize("pooling,pool_size", [("avg", None), ("avg", 2), ("max", 2)])
def test_two_layer_gated_matches_cvxpy(pooling, pool_size):
    imgs, Y = _data(N=6, H=5, W=5, c=2, seed=2)
    reg = 0.05
    pats = sample_patch_gates(imgs, 5, 3, intercept=True, random_state=0)
    prog = ConvTwoLayerProgram(imgs, Y, pats, reg, "squared", "gated", kernel_size=3,
                               pooling=pooling, pool_size=pool_size)
    assert prog.nuclear
    x, cert, res = solve(prog, tol=1e-6, max_iter=5000)
    assert cert.relative_gap <= 1e-6
    p_ref = _check_against_cvxpy(prog, x, cert, 1e-6)
    assert cert.dual <= p_ref <= cert.primal + 1e-7
    _check_readback(prog, x, cert, imgs, Y, reg)


@pytest.mark.parametrize("pooling,pool_size,loss", [("avg", 2, "squared"),
                                                    ("max", 2, "cross_entropy"),
                                                    ("none", None, "squared")])
def test_shared_filter_program_matches_cvxpy(pooling, pool_size, loss):
    imgs, Y = _data(N=8, C=2, H=5, W=5, c=3, seed=9)
    if loss == "cross_entropy":
        Y = torch.eye(3, dtype=DT)[torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])]
    reg = 0.1
    pats = sample_patch_gates(imgs, 6, 3, intercept=True, random_state=0)
    prog = ConvSharedFilterProgram(imgs, Y, pats, reg, loss, kernel_size=3, pooling=pooling,
                                   pool_size=pool_size)
    x, cert, res = solve(prog, solver="fista", tol=1e-7, max_iter=20000)
    assert res.stop_reason == "gap_tolerance" and cert.relative_gap <= 1e-7
    xa, ca, ra = solve(prog, tol=1e-6, max_iter=20000)  # auto: ADMM
    assert ra.stop_reason == "gap_tolerance" and ca.relative_gap <= 1e-6
    assert ca.primal == pytest.approx(cert.primal, rel=2e-6)
    p_ref = _check_against_cvxpy(prog, x, cert, 1e-7)
    assert cert.dual <= p_ref <= cert.primal + 1e-8 * max(1.0, p_ref)  # Clarabel's accuracy
    net = _check_readback(prog, x, cert, imgs, Y, reg, loss)
    # one filter per gate direction, feeding every pooled output and class
    assert net.n_filters <= prog.P
    assert (net.linear_weight != 0).float().mean() > 0.5


def test_two_layer_cross_entropy_matches_cvxpy():
    imgs, _ = _data(N=6, H=4, W=4, seed=3)
    Y = torch.eye(2, dtype=DT)[torch.tensor([0, 1, 1, 0, 1, 0])]
    pats = sample_patch_gates(imgs, 3, 3, intercept=True, random_state=0)
    prog = ConvTwoLayerProgram(imgs, Y, pats, 0.5, "cross_entropy", "relu", kernel_size=3)
    x, cert, _ = solve(prog, tol=1e-5, max_iter=3000)
    _check_against_cvxpy(prog, x, cert, 1e-5)
    _check_readback(prog, x, cert, imgs, Y, 0.5, "cross_entropy")


def test_global_certificate_is_exact_against_adam():
    """Enumerated patterns + global average pooling + scalar output: the program is exact, so
    no CNN trained by Adam (any width) may beat the certified lower bound."""
    imgs, Y = _data(N=6, C=1, H=3, W=3, seed=4)
    reg = 0.05
    pats = enumerate_patch_patterns(imgs, 1, intercept=True)  # 1x1 conv + bias: h = 2
    prog = ConvTwoLayerProgram(imgs, Y, pats, reg, "squared", "relu", kernel_size=1)
    x, cert, _ = solve(prog, tol=5e-4, max_iter=4000)  # ADMM is slow on exact programs
    assert cert.scope == "global"
    p_ref = _check_against_cvxpy(prog, x, cert, 5e-4)
    for seed in range(2):
        torch.manual_seed(seed)
        obj = _adam_pooled_cnn(torch.nn.AdaptiveAvgPool2d(1), imgs, Y, reg)
        assert obj.item() >= cert.dual - 1e-8
        assert obj.item() >= p_ref - 1e-6


# --------------------------------------------------------------------- circular CNN
def test_fourier_basis_l1():
    R, w = fourier_basis((3, 4))
    B = R.reshape(12, -1)
    gram = B.T @ B  # orthonormal columns, plus zero columns padding self-conjugate groups
    nz = torch.diag(gram) > 0.5
    assert int(nz.sum()) == 12
    assert torch.allclose(gram[nz][:, nz], torch.eye(12, dtype=DT), atol=1e-12)
    e = torch.randn(12, dtype=DT)
    z = torch.einsum("d,dft->ft", e, R)
    l1 = torch.fft.fftn(e.reshape(3, 4), norm="ortho").abs().sum()
    assert float((w * torch.linalg.vector_norm(z, dim=-1)).sum()) == pytest.approx(float(l1))


@pytest.mark.parametrize("shape,n_circular", [((6,), 1), ((3, 4), 1), ((3, 4), 2)])
def test_circular_matches_cvxpy(shape, n_circular):
    g = torch.Generator().manual_seed(5)
    N = 7
    sig = torch.randn(N, *shape, generator=g, dtype=DT)
    Y = torch.randn(N, 1, generator=g, dtype=DT)
    reg = 0.1
    pats = sample_gates(sig.reshape(N, -1), 5, random_state=0)
    prog = CircularCNNProgram(sig, Y, pats, reg, "squared", n_circular=n_circular)
    x, cert, _ = solve(prog, tol=1e-5, max_iter=3000)
    _check_against_cvxpy(prog, x, cert, 1e-5)
    net = _check_readback(prog, x, cert, sig, Y, reg)
    nrm = torch.linalg.vector_norm(net.first_filters.flatten(1), dim=1)
    assert bool((nrm <= 1 + 1e-9).all())
    assert len(net.to_torch()) == 6 + 2 * (n_circular - 1)


def test_circular_vector_output_cross_entropy_matches_cvxpy():
    g = torch.Generator().manual_seed(5)
    sig = torch.randn(8, 3, 4, generator=g, dtype=DT)
    Y = torch.eye(2, dtype=DT)[torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])]
    pats = sample_gates(sig.reshape(8, -1), 4, random_state=0)
    prog = CircularCNNProgram(sig, Y, pats, 0.1, "cross_entropy")
    x, cert, _ = solve(prog, tol=1e-5, max_iter=4000)
    assert cert.relative_gap <= 1e-4
    _check_against_cvxpy(prog, x, cert, 1e-5)
    _check_readback(prog, x, cert, sig, Y, 0.1, "cross_entropy")


# ------------------------------------------------------------------- three-layer CNN
def test_three_layer_matches_cvxpy():
    imgs, Y = _data(N=6, H=4, W=4, seed=6)
    reg = 0.1
    pats = sample_patch_gates(imgs, 3, 3, intercept=True, random_state=0)
    prog = ThreeLayerCNNProgram(imgs, Y, pats, reg, "squared", kernel_size=3, n_outer=3,
                                random_state=0)
    x, cert, _ = solve(prog, tol=1e-5, max_iter=3000)
    p_ref = _check_against_cvxpy(prog, x, cert, 1e-5)
    _check_readback(prog, x, cert, imgs, Y, reg)
    # the CVXPY solution reads back into a network with the same (non-convex) objective (its
    # certificate has no cone multipliers here, so it is loose and warns: not under test)
    with pytest.warns(ConvergenceWarning, match="CVXPY"):
        xc, _, _ = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    assert prog.to_network(xc).objective(imgs, Y, reg) == pytest.approx(p_ref, rel=1e-5)


@pytest.mark.slow
def test_three_layer_vector_output_cross_entropy_matches_cvxpy():
    imgs, _ = _data(N=6, H=4, W=4, seed=10)
    Y = torch.eye(2, dtype=DT)[torch.tensor([0, 1, 1, 0, 1, 0])]
    pats = sample_patch_gates(imgs, 3, 3, intercept=True, random_state=0)
    prog = ThreeLayerCNNProgram(imgs, Y, pats, 0.1, "cross_entropy", kernel_size=3, n_outer=3,
                                random_state=0)
    x, cert, _ = solve(prog, tol=1e-5, max_iter=4000)
    assert cert.relative_gap <= 1e-3
    _check_against_cvxpy(prog, x, cert, 1e-5)
    _check_readback(prog, x, cert, imgs, Y, 0.1, "cross_entropy")


# ----------------------------------------------------- convergence report, exact max pool
def test_solve_reports_when_tol_is_not_reached():
    imgs, Y = _data(N=6, H=4, W=4, seed=1)
    pats = sample_patch_gates(imgs, 4, 2, intercept=True, random_state=0)
    prog = ConvTwoLayerProgram(imgs, Y, pats, 0.1, "squared", "relu", kernel_size=2)
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        _, cert, res = solve(prog, tol=1e-12, max_iter=20)
    assert res.stop_reason == "max_iter" and cert.relative_gap > 1e-12
    assert "NOT CONVERGED" in cert.problem and "max_iter" in cert.problem
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a solve that reaches tol is silent
        _, cert, _ = solve(prog, tol=1e-2, max_iter=5000)
    assert cert.relative_gap <= 1e-2 and "NOT CONVERGED" not in cert.problem


@pytest.mark.slow
def test_global_max_pooling_enumeration_is_exact():
    """Global max pooling + the arg-max arrangement + scalar output: the program is exact
    (scope "global"), matches CVXPY, and no network trained by Adam beats its lower bound."""
    from convexnn.patterns.patches import enumerate_max_pool_patterns

    imgs, Y = _data(N=5, C=1, H=2, W=2, seed=3)
    reg, tol = 0.05, 1e-6
    pats = enumerate_max_pool_patterns(imgs, 1, intercept=True)
    prog = ConvTwoLayerProgram(imgs, Y, pats, reg, "squared", "relu", kernel_size=1,
                               pooling="max")
    x, cert, res = solve(prog, tol=tol, max_iter=20000)
    assert cert.scope == "global" and res.stop_reason == "gap_tolerance"
    p_ref = _check_against_cvxpy(prog, x, cert, tol)
    for seed in range(2):
        torch.manual_seed(seed)
        obj = _adam_pooled_cnn(torch.nn.AdaptiveMaxPool2d(1), imgs, Y, reg)
        assert obj.item() >= cert.dual - 1e-8 * max(1.0, abs(p_ref))


def _adam_pooled_cnn(pool, imgs, Y, reg, steps: int = 250):
    """250 Adam steps on a 1x1-conv (8 filters) -> ReLU -> pool -> linear network, squared loss
    + reg/2 ||weights||²; returns the last objective (a tensor)."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 1), torch.nn.ReLU(), pool,
                                torch.nn.Flatten(), torch.nn.Linear(8, 1, bias=False)).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        pen = sum((p ** 2).sum() for p in model.parameters())
        obj = 0.5 * ((model(imgs) - Y) ** 2).sum() + 0.5 * reg * pen
        obj.backward()
        opt.step()
    return obj
