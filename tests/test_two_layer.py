"""The two-layer convex programs against CVXPY, certificates, read-back identity, reverse map."""

import numpy as np
import pytest
import torch

from convexnn.formulations.two_layer import TwoLayerProgram, solve
from convexnn.networks import TwoLayerNetwork
from convexnn.solvers import fista

from .helpers import classification_targets, regression_problem

REG = 0.1


def _reference(prog, solver="CLARABEL"):
    _, cert, res = solve(prog, solver="cvxpy", cvxpy_solver=solver)
    return res.extras["value"], cert


@pytest.mark.parametrize("c", [1, 3])
def test_gated_fista_matches_cvxpy(c):
    X, Y, ps = regression_problem(n=30, c=c, P=10)
    prog = TwoLayerProgram(X, Y, ps, REG, "squared", "gated", intercept=True)
    ref, _ = _reference(prog)
    x, cert, res = solve(prog, solver="fista", tol=1e-7, max_iter=20000)
    assert res.stop_reason == "gap_tolerance"
    assert cert.primal == pytest.approx(ref, rel=1e-6)
    assert cert.dual <= ref * (1 + 1e-8) and cert.primal >= ref * (1 - 1e-8)
    assert cert.scope == "sampled patterns"


@pytest.mark.parametrize("loss,c", [("logistic", 1), ("cross_entropy", 3)])
def test_gated_classification_losses_match_cvxpy(loss, c):
    X, _, ps = regression_problem(n=30, P=8)
    Y = classification_targets(30, c if c > 1 else 2, loss)
    prog = TwoLayerProgram(X, Y, ps, 1.0, loss, "gated", intercept=True)
    ref, _ = _reference(prog)
    _, cert, _ = solve(prog, solver="fista", tol=1e-7, max_iter=30000)
    assert cert.primal == pytest.approx(ref, rel=1e-6)
    assert cert.dual <= ref + 1e-7


@pytest.mark.parametrize("c", [1, 2])
def test_relu_active_set_matches_cvxpy(c):
    X, Y, ps = regression_problem(n=25, c=c, P=6, seed=1)
    prog = TwoLayerProgram(X, Y, ps, REG, "squared", "relu", intercept=True)
    ref, cert_ref = _reference(prog)
    x, cert, _ = solve(prog, solver="active_set", tol=1e-8)
    assert cert.primal == pytest.approx(ref, rel=1e-6)
    assert cert.relative_gap <= 1e-6
    # the CVXPY solution, certified with its own multipliers, is also tight
    assert cert_ref.relative_gap <= 1e-5


def test_relu_matches_scs_as_second_reference():
    X, Y, ps = regression_problem(n=20, P=5, seed=2)
    prog = TwoLayerProgram(X, Y, ps, REG, "squared", "relu", intercept=True)
    ref_clarabel, _ = _reference(prog, "CLARABEL")
    ref_scs, _ = _reference(prog, "SCS")
    assert ref_scs == pytest.approx(ref_clarabel, rel=1e-3)  # SCS is a low-accuracy solver


def test_relu_augmented_lagrangian_approaches_cvxpy():
    """The matrix-free AL is slow to high accuracy; check it gets close and stays honest."""
    X, Y, ps = regression_problem(n=20, P=6, seed=3)
    prog = TwoLayerProgram(X, Y, ps, REG, "squared", "relu", intercept=True)
    ref, _ = _reference(prog)
    x, cert, _ = solve(prog, solver="al", tol=1e-9, max_iter=3000)
    assert cert.primal == pytest.approx(ref, rel=1e-3)
    tol = 1e-7 * abs(ref)  # CVXPY's own accuracy
    assert cert.dual <= ref + tol and ref <= cert.primal + tol  # a valid bracket, whatever the gap
    assert cert.constraint_violation < 1e-2


def test_certificate_bounds_true_gap_along_the_path():
    """At every early iterate, gap ≥ primal − p* and dual ≤ p* (p* from CVXPY)."""
    X, Y, ps = regression_problem(n=30, c=2, P=10, seed=4)
    prog = TwoLayerProgram(X, Y, ps, REG, "squared", "gated", intercept=True)
    ref, _ = _reference(prog)
    x = prog.zeros()
    for iters in (1, 3, 10, 30, 100):
        x = fista(prog, x, step=1e-3, tol=0, max_iter=iters).x
        cert = prog.certificate(x)
        assert cert.dual <= ref + 1e-9
        assert cert.gap >= cert.primal - ref - 1e-9


def test_relu_certificate_is_honest_for_infeasible_iterates():
    X, Y, ps = regression_problem(n=25, P=6, seed=5)
    prog = TwoLayerProgram(X, Y, ps, REG, "squared", "relu", intercept=True)
    ref, _ = _reference(prog)
    torch.manual_seed(0)
    for scale in (0.01, 0.1, 1.0):
        x = scale * torch.randn(prog.shape, dtype=torch.float64)  # violates the cones
        cert = prog.certificate(x)
        assert cert.dual <= ref + 1e-9
        assert cert.primal >= ref - 1e-9  # primal of a repaired, feasible point
        net = prog.to_network(prog.repair(x))
        assert net.objective(X[:, :-1], Y, REG) == pytest.approx(cert.primal, rel=1e-9)


@pytest.mark.parametrize("act,c,certify", [("relu", 1, "program"), ("relu", 2, "program"),
                                            ("relu", 2, "network"), ("gated", 1, "network"),
                                            ("gated", 3, "network")])
def test_network_objective_equals_certified_primal(act, c, certify):
    X, Y, ps = regression_problem(n=25, c=c, P=6, seed=6)
    prog = TwoLayerProgram(X, Y, ps, REG, "squared", act, intercept=True)
    ref, _ = _reference(prog)
    x, cert, _ = solve(prog, tol=1e-8, max_iter=20000, certify=certify)
    net = prog.to_network(x)
    assert net.objective(X[:, :-1], Y, REG) == pytest.approx(cert.primal, rel=1e-10)
    assert cert.dual <= ref + 1e-8 * ref
    if certify == "program":  # x is feasible: the network and the convex objective agree
        assert net.objective(X[:, :-1], Y, REG) == pytest.approx(prog.objective(x), rel=1e-9)
        assert cert.primal == pytest.approx(ref, rel=1e-6)
    else:  # the network may beat the program's optimum, never the certified bound's claim
        assert cert.primal <= ref * (1 + 1e-7)
    # weights are balanced: each neuron's ||u||² + ||v||² equals 2 ||u|| ||v||
    u = torch.cat([net.first_layer_weights, net.first_layer_bias[:, None]], 1).norm(dim=1)
    v = net.second_layer_weights.norm(dim=0)
    assert torch.allclose(u, v, rtol=1e-9)


@pytest.mark.parametrize("act", ["relu", "gated"])
@pytest.mark.parametrize("loss,c", [("squared", 1), ("squared", 3), ("logistic", 1),
                                    ("cross_entropy", 3)])
def test_admm_matches_cvxpy(act, loss, c):
    X, Y, ps = regression_problem(n=30, c=c, P=6, seed=11)
    if loss != "squared":
        Y = classification_targets(30, c if c > 1 else 2, loss)
    prog = TwoLayerProgram(X, Y, ps, REG, loss, act, intercept=True)
    ref, _ = _reference(prog)
    x, cert, res = solve(prog, solver="admm", tol=1e-7, max_iter=30000, certify="program")
    assert res.stop_reason == "gap_tolerance"
    assert cert.primal == pytest.approx(ref, rel=2e-7)
    # a valid bracket up to the reference's own accuracy (interior point, ~1e-8)
    assert cert.dual <= ref + 1e-7 * abs(ref) and ref <= cert.primal + 1e-7 * abs(ref)
    assert prog.objective(x) == pytest.approx(cert.primal, rel=1e-10)
    if act == "relu":
        assert prog.violation(prog.relu_state(x)) <= 1e-12  # repaired into the cones


@pytest.mark.parametrize("act", ["relu", "gated"])
def test_admm_normal_equations_in_both_spaces(act):
    """K x = rhs for K = AᵀA + γ² I + BᵀB, factorised in sample space and in feature space."""
    from convexnn.formulations.two_layer import _ADMMSplitting

    X, Y, ps = regression_problem(n=20, c=2, P=5, seed=12)
    prog = TwoLayerProgram(X, Y, ps, REG, "squared", act, intercept=True)
    rhs = torch.randn(prog.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sols = []
    for space in ("samples", "features"):
        sp = _ADMMSplitting(prog, space=space)
        x = sp.solve_normal(rhs)
        Ax, Bx = sp.forward(x)
        Kx = sp.adjoint(Ax, Bx) + sp.gamma ** 2 * x
        assert torch.allclose(Kx, rhs, atol=1e-9 * float(rhs.abs().max()))
        sols.append(x)
    assert torch.allclose(sols[0], sols[1], atol=1e-9)


def test_admm_network_certificate_bounds_the_true_gap():
    """Early ADMM iterates: the network's certified gap bounds its distance to the optimum."""
    X, Y, ps = regression_problem(n=30, c=1, P=8, seed=13)
    prog = TwoLayerProgram(X, Y, ps, REG, "squared", "relu", intercept=True)
    ref, _ = _reference(prog)
    for iters in (1, 5, 20, 80):
        x, cert, _ = solve(prog, solver="admm", tol=0.0, max_iter=iters)
        assert cert.dual <= ref + 1e-9
        net = prog.to_network(x)
        assert net.objective(X[:, :-1], Y, REG) == pytest.approx(cert.primal, rel=1e-10)
        assert cert.gap >= cert.primal - ref - 1e-9


def test_pattern_refinement_improves_and_stays_certified():
    from convexnn.formulations.two_layer import solve_with_search

    X, Y, ps = regression_problem(n=60, c=1, P=4, seed=14)
    prog = TwoLayerProgram(X, Y, ps, 0.05, "squared", "relu", intercept=True)
    _, cert0, _ = solve(prog, tol=1e-6, max_iter=5000)
    prog2, x2, cert2, info = solve_with_search(prog, rounds=3, tol=1e-6, max_iter=5000,
                                                random_state=0)
    results = info["results"]
    assert len(results) >= 2 and prog2.P > prog.P
    assert cert2.primal < cert0.primal * (1 - 1e-3)  # the extra patterns pay off here
    net = prog2.to_network(x2)
    assert net.objective(X[:, :-1], Y, 0.05) == pytest.approx(cert2.primal, rel=1e-10)
    ref2, _ = _reference(prog2)
    assert cert2.dual <= ref2 + 1e-8 and cert2.primal <= ref2 * (1 + 2e-6)


def test_reverse_map_of_a_foreign_network():
    """A network trained elsewhere maps to convex variables with the same objective."""
    X, Y, _ = regression_problem(n=30, seed=7)
    g = torch.Generator().manual_seed(0)
    W1 = torch.randn(5, 2, generator=g, dtype=torch.float64)
    b1 = torch.randn(5, generator=g, dtype=torch.float64)
    W2 = torch.randn(1, 5, generator=g, dtype=torch.float64)
    # balance neurons so that weight decay equals the group penalty
    s = (W2.abs()[0] / torch.cat([W1, b1[:, None]], 1).norm(dim=1)).sqrt()
    net = TwoLayerNetwork(W1 * s[:, None], b1 * s, W2 / s)
    prog, x = TwoLayerProgram.from_network(net, X, Y, REG, intercept=True)
    assert prog.objective(x) == pytest.approx(net.objective(X[:, :-1], Y, REG), rel=1e-10)
    cert = prog.certificate(x)
    assert cert.primal == pytest.approx(net.objective(X[:, :-1], Y, REG), rel=1e-10)
    assert cert.dual <= cert.primal
    # and solving over the network's own patterns can only improve on it
    _, cert2, _ = solve(prog, solver="cvxpy")
    assert cert2.primal <= cert.primal + 1e-9


def test_float32_agrees_with_float64():
    X, Y, ps = regression_problem(n=25, P=6, seed=8)
    p64 = TwoLayerProgram(X, Y, ps, REG, "squared", "gated", intercept=True)
    p32 = TwoLayerProgram(X.float(), Y.float(), ps.to(dtype=torch.float32), REG, "squared",
                          "gated", intercept=True)
    _, c64, _ = solve(p64, tol=1e-6, max_iter=20000)
    _, c32, _ = solve(p32, tol=1e-4, max_iter=20000)
    assert c32.primal == pytest.approx(c64.primal, rel=1e-3)


def test_bad_program_arguments():
    X, Y, ps = regression_problem(n=10, P=3)
    with pytest.raises(ValueError, match="reg"):
        TwoLayerProgram(X, Y, ps, 0.0)
    with pytest.raises(ValueError, match="activation"):
        TwoLayerProgram(X, Y, ps, 1.0, activation="tanh")
    prog = TwoLayerProgram(X, Y, ps, 1.0, activation="relu")
    with pytest.raises(ValueError, match="solver"):
        solve(prog, solver="newton")
    with pytest.raises(ValueError, match="gated"):
        solve(prog, solver="fista")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    X, Y, ps = regression_problem(n=25, P=6)
    pc = TwoLayerProgram(X, Y, ps, REG, "squared", "gated", intercept=True)
    pg = TwoLayerProgram(X.cuda(), Y.cuda(), ps.to(device="cuda"), REG, "squared", "gated",
                         intercept=True)
    _, cc, _ = solve(pc, tol=1e-7)
    _, cg, _ = solve(pg, tol=1e-7)
    assert cg.primal == pytest.approx(cc.primal, rel=1e-6)
    assert np.isfinite(cg.gap)


@pytest.mark.parametrize("loss,c", [("squared", 1), ("logistic", 1), ("cross_entropy", 3)])
def test_gated_fista_with_offset_matches_cvxpy(loss, c):
    """The estimators' path: an unpenalised output offset (OffsetLoss), solver='auto'."""
    from convexnn.losses import OffsetLoss, get_loss

    X, Yr, ps = regression_problem(n=30, P=8)
    Y = Yr if loss == "squared" else classification_targets(30, c if c > 1 else 2, loss)
    prog = TwoLayerProgram(X, Y, ps, 0.5, OffsetLoss(get_loss(loss)), "gated", intercept=True)
    ref, _ = _reference(prog)
    _, cert, res = solve(prog, tol=1e-7, max_iter=30000)
    assert res.stop_reason == "gap_tolerance"
    assert cert.primal == pytest.approx(ref, rel=1e-6)
    assert cert.dual <= ref * (1 + 1e-8)


def test_dual_extrapolation_is_an_affine_combination():
    from convexnn.formulations.two_layer import _EXTRAPOLATE, _extrapolate

    assert _extrapolate([torch.ones(3, 1)] * (_EXTRAPOLATE - 1)) is None
    # a linearly converging sequence λ_k = λ* + ρ^k e: the extrapolation recovers λ*
    star, e = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64), \
        torch.tensor([[0.3], [0.1], [-0.2]], dtype=torch.float64)
    lams = [star + 0.5 ** k * e for k in range(_EXTRAPOLATE)]
    assert torch.allclose(_extrapolate(lams), star, atol=1e-6)


_PEAK = """
import resource, torch
from convexnn.formulations.two_layer import TwoLayerProgram, solve_with_search
from convexnn.patterns import sample_gates
g = torch.Generator().manual_seed(0)
X = torch.randn({n}, 5, generator=g, dtype=torch.float64)
Y = X[:, :1].clamp_min(0)
pats = sample_gates(X, {P}, 0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prog = TwoLayerProgram(X, Y, pats, 1.0, "squared", "gated")
prog, x, cert, info = solve_with_search(prog, rounds=0, max_iter=5)
prog.to_network(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024, pats.n_patterns)
"""


@pytest.mark.slow
def test_gated_default_path_allocates_no_n_by_P_float64_array():
    """Peak RSS of the default gated path (program, solve(auto), read-back) stays well under
    one n x P float64 array (bool mask cache + row-chunk temporaries only; the pattern search
    works on row chunks too, but is too slow for the fast suite at this size)."""
    import os
    import subprocess
    import sys

    n, P = 30000, 400
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _PEAK.format(n=n, P=P)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    peak, P_kept = int(out[0]), int(out[1])
    assert P_kept > 300
    assert peak < 0.6 * n * P_kept * 8


def test_reg_path_warm_starts_match_cvxpy():
    from convexnn.formulations.two_layer import reg_max, reg_path

    X, Y, ps = regression_problem(n=30, P=8)
    prog = TwoLayerProgram(X, Y, ps, 1.0, "squared", "gated", intercept=True)
    top = reg_max(prog)
    path = reg_path(prog, [1.01 * top, 0.3 * top, 0.05 * top], tol=1e-7, max_iter=20000)
    assert float(path[0][1].abs().max()) == 0.0  # above reg_max: the zero network
    for r, _, cert in path[1:]:
        prog.reg = r
        ref, _ = _reference(prog)
        assert cert.primal == pytest.approx(ref, rel=1e-6)
        assert cert.dual <= ref * (1 + 1e-8)
    with pytest.raises(ValueError, match="decreasing"):
        reg_path(prog, [0.1, 0.2])


def test_relu_active_set_with_output_offset_matches_cvxpy():
    """With fit_intercept the program's loss has a free output offset; the active-set solver's
    reduced programs must keep it (they once dropped it: gap 100 % on shifted targets)."""
    import convexnn as cn

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = np.maximum(X @ [1.0, -1.0, 0.5], 0) + 5 + 0.1 * rng.standard_normal(40)
    fits = {s: cn.ConvexReLURegressor(reg=0.5, solver=s, n_patterns=8, search_rounds=0,
                                      random_state=0, warn_gap=None).fit(X, y)
            for s in ("active_set", "cvxpy")}
    ref = fits["cvxpy"].certificate_
    cert = fits["active_set"].certificate_
    assert cert.relative_gap <= 1e-6
    assert cert.primal == pytest.approx(ref.primal, rel=1e-6)
    assert fits["active_set"].objective(X, y) == pytest.approx(cert.primal, rel=1e-9)
