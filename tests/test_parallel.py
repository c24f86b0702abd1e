"""Tests of the path-regularised deep parallel ReLU networks (issue 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convexnn._validation import add_intercept
from convexnn.estimators.parallel import ConvexParallelReLUClassifier, ConvexParallelReLURegressor
from convexnn.formulations.parallel import (
    ParallelBlocks,
    ParallelProgram,
    approximation_bound,
    fit_parallel,
    low_rank,
    sample_blocks,
    solve,
)
from convexnn.formulations.parallel.interior import NotStrictlyFeasible, solve_barrier, solve_pd
from convexnn.formulations.parallel.pricing import (
    PricingResult,
    price,
    select_blocks,
    subnetwork_values,
)
from convexnn.formulations.two_layer import TwoLayerProgram
from convexnn.formulations.two_layer import cvxpy_solution as tl_cvxpy_solution
from convexnn.formulations.two_layer import to_cvxpy as tl_to_cvxpy
from convexnn.networks.parallel import ParallelReLUNetwork, load_parallel_network
from convexnn.patterns import PatternSet
from convexnn.pipelines.parallel_cg import fit_parallel_cg

DT = torch.float64


def _data(n=20, d=2, seed=0, c=1):
    rng = np.random.default_rng(seed)
    X = torch.tensor(rng.standard_normal((n, d)), dtype=DT)
    Y = torch.tensor(rng.standard_normal((n, c)), dtype=DT)
    return X, Y


def _random_net(K=4, m=3, d=2, c=1, depth=3, seed=0, single_output=True):
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(K, m if depth == 3 else 1, d, generator=g, dtype=DT)
    b1 = torch.randn(K, W1.shape[1], generator=g, dtype=DT)
    w2 = torch.randn(K, m, generator=g, dtype=DT) if depth == 3 else None
    w3 = torch.randn(K, c, generator=g, dtype=DT)
    if single_output and c > 1:
        w3 = w3 * torch.nn.functional.one_hot(torch.arange(K) % c, c).to(DT)
    return ParallelReLUNetwork(W1, b1, w2, w3)


# --------------------------------------------------------------------------- network
@pytest.mark.parametrize("depth", [2, 3])
def test_torch_export_and_path_norm(depth, tmp_path):
    X, _ = _data(30, 3)
    net = _random_net(d=3, c=2, depth=depth, single_output=False)
    mod = net.to_torch()
    torch.testing.assert_close(mod(X), net.forward(X), rtol=0, atol=1e-12)
    torch.testing.assert_close(mod.path_norm(), net.path_norm(), rtol=0, atol=1e-12)
    # explicit l2 norm over all input→output paths (bias = weight of a constant input)
    Wt = torch.cat([net.first_layer_weights, net.first_layer_bias[..., None]], -1)
    a = net.second_layer_weights if depth == 3 else torch.ones(Wt.shape[:2], dtype=DT)
    paths = Wt[:, :, :, None] * a[:, :, None, None] * net.output_weights[:, None, None, :]
    ref = paths.reshape(paths.shape[0], -1).norm(dim=1).sum()
    torch.testing.assert_close(net.path_norm(), ref)
    net.save(tmp_path / "p.npz")
    back = load_parallel_network(tmp_path / "p.npz")
    torch.testing.assert_close(back.forward(X), net.forward(X), rtol=0, atol=0)


def test_path_norm_rescaling_invariance():
    X, Y = _data(25, 2)
    net = _random_net()
    a = torch.tensor([2.0, 0.5, 3.0], dtype=DT)
    W1 = net.first_layer_weights * a[None, :, None]
    b1 = net.first_layer_bias * a[None, :]
    w2 = net.second_layer_weights / a[None, :] * 7.0
    w3 = net.output_weights / 7.0
    net2 = ParallelReLUNetwork(W1, b1, w2, w3)
    assert abs(net2.objective(X, Y, 0.3) - net.objective(X, Y, 0.3)) < 1e-10


# ------------------------------------------------------------- program identities
@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("c", [1, 3])
def test_reverse_map_identity(depth, c):
    """network → convex variables: convex objective == non-convex path-regularised objective."""
    X, Y = _data(30, 2, c=c)
    net = _random_net(K=5, c=c, depth=depth)
    prog, q = ParallelProgram.from_network(net, add_intercept(X), Y, 0.2, intercept=True)
    assert prog.violation(prog.linear(q)) <= 1e-12
    obj = net.objective(X, Y, 0.2)
    assert abs(prog.objective(q) - obj) <= 1e-10 * max(1.0, abs(obj))
    back = prog.to_network(q)
    torch.testing.assert_close(back.forward(X), net.forward(X))
    assert abs(back.objective(X, Y, 0.2) - obj) <= 1e-10 * max(1.0, abs(obj))


def test_sampled_blocks_have_feasible_witness():
    X, _ = _data(40, 3)
    Xa = add_intercept(X)
    blk = sample_blocks(Xa, 25, width=3, random_state=1, intercept_column=True)
    prog = ParallelProgram(Xa, torch.zeros(40, 1, dtype=DT), blk, 1.0, intercept=True)
    assert prog.B >= 2 and prog.B % 2 == 0
    c1, c2 = prog.constraints(prog.linear(blk.gates.to(DT)))
    assert float(c1.min()) >= 0 and float(c2.min()) >= 0


# ----------------------------------------------------------- against CVXPY
def _small_program(depth=3, loss="squared", c=1, n=16, seed=3, n_blocks=8, reg=0.3):
    X, Y = _data(n, 2, seed=seed, c=c)
    if loss == "logistic":
        Y = torch.sign(Y)
    if loss == "cross_entropy":
        Y = torch.nn.functional.one_hot(Y.argmax(1), c).to(DT)
    Xa = add_intercept(X)
    blk = sample_blocks(Xa, n_blocks, width=2, depth=depth, n_outputs=c, random_state=0,
                        intercept_column=True)
    return X, Y, ParallelProgram(Xa, Y, blk, reg, loss, depth=depth, intercept=True)


CASES = [(3, "squared", 1), (2, "squared", 1), (3, "logistic", 1), (3, "cross_entropy", 3),
         (3, "squared", 2)]


@pytest.mark.parametrize("depth,loss,c", CASES)
def test_cvxpy_reference_and_readback(depth, loss, c):
    X, Y, prog = _small_program(depth, loss, c)
    xc, cert_c, res_c = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    p_ref = res_c.extras["value"]
    # certificate from the solver's multipliers: dual ≤ optimum ≤ primal, and tight
    tol = 1e-6 * max(1.0, abs(p_ref))  # the interior-point value is itself ~1e-8 accurate
    assert cert_c.dual <= p_ref + tol and p_ref <= cert_c.primal + tol
    assert cert_c.relative_gap < 1e-4  # exponential-cone multipliers are ~1e-5 accurate
    # read-back identity at the CVXPY optimum
    net = prog.to_network(xc)
    obj = net.objective(X, Y, 0.3, loss)
    assert abs(obj - prog.objective(xc)) <= 1e-6 * max(1.0, abs(obj))
    assert abs(obj - p_ref) <= 1e-6 * max(1.0, abs(p_ref))


@pytest.mark.parametrize("solver", ["pd", "barrier", "clarabel"])
@pytest.mark.parametrize("depth,loss,c", CASES)
def test_interior_solvers_match_cvxpy(solver, depth, loss, c):
    """Each backend reaches the CVXPY optimum; its certificate brackets it; the read-back
    network's non-convex path-regularised objective equals the convex objective; every
    iterate is feasible (the network has exactly the block patterns)."""
    X, Y, prog = _small_program(depth, loss, c)
    _, _, res_c = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    p_ref = res_c.extras["value"]
    x, cert, res = solve(prog, solver=solver, tol=1e-8)
    scale = max(1.0, abs(p_ref))
    assert cert.dual <= p_ref + 1e-7 * scale <= cert.primal + 2e-7 * scale
    assert cert.relative_gap < 1e-6
    assert abs(cert.primal - p_ref) <= 1e-6 * scale
    assert prog.violation(prog.linear(x)) <= 1e-9
    net = prog.to_network(x)
    assert abs(net.objective(X, Y, 0.3, loss) - prog.objective(x)) <= 1e-9 * scale
    torch.testing.assert_close(net.to_torch()(X), net.forward(X), rtol=0, atol=1e-12)


def test_interior_witness_on_boundary_falls_back():
    """A block whose witness hyperplane passes through a data point has no strictly feasible
    start: the interior solvers refuse it and ``solver="auto"`` hands it to Clarabel."""
    X, Y, prog = _small_program()
    g = prog.blocks.gates.clone()
    x0 = prog.X[0]
    g[0, 0] -= (g[0, 0] @ x0) / (x0 @ x0) * x0  # hyperplane through sample 0
    blk = ParallelBlocks(g, prog.blocks.signs, prog.blocks.outputs, prog.blocks.eps)
    bad = ParallelProgram(prog.X, Y, blk, 0.3, depth=3, intercept=True)
    with pytest.raises(NotStrictlyFeasible):
        solve_pd(bad)
    with pytest.raises(NotStrictlyFeasible):
        solve_barrier(bad)
    _, cert, res = solve(bad, solver="auto")
    _, _, res_c = solve(bad, solver="cvxpy")
    assert abs(cert.primal - res_c.extras["value"]) <= 1e-6 * abs(res_c.extras["value"])


def test_augmented_lagrangian_within_its_certificate():
    """The first-order AL backend (for problems too large to factorise) is honest: its
    certified gap bounds its distance to the CVXPY optimum."""
    X, Y, prog = _small_program()
    _, _, res_c = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    p_ref = res_c.extras["value"]
    _, cert_a, _ = solve(prog, solver="al", tol=1e-3, max_iter=3000)
    assert cert_a.dual <= p_ref + 1e-7
    # the read-back network may use patterns outside the blocks (then it is certified over
    # its own blocks ∪ the sampled ones, whose optimum is ≤ p_ref): primal ≥ dual always
    assert cert_a.dual <= cert_a.primal and cert_a.primal - p_ref <= cert_a.gap + 1e-7
    assert cert_a.constraint_violation <= 1e-10


def test_depth2_equals_two_layer_program():
    """Depth 2 (m = 1) is the two-layer ReLU program of Pilanci & Ergen on the same patterns."""
    X, Y = _data(18, 2, seed=5)
    Xa = add_intercept(X)
    blk = sample_blocks(Xa, 10, depth=2, random_state=2, intercept_column=True)
    prog = ParallelProgram(Xa, Y, blk, 0.4, depth=2, intercept=True)
    _, _, res = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    gates = blk.gates[::2, 0, :].T.contiguous()  # one gate per base block (ε = ±1 pairs)
    tl = TwoLayerProgram(Xa, Y, PatternSet(gates), 0.4, intercept=True)
    problem, V = tl_to_cvxpy(tl)
    problem.solve(solver="CLARABEL")
    assert tl_cvxpy_solution(tl, V) is not None
    assert abs(problem.value - res.extras["value"]) <= 1e-6 * abs(problem.value)


def test_certificate_never_overstates_suboptimal_point():
    X, Y = _data(16, 2, seed=4)
    Xa = add_intercept(X)
    blk = sample_blocks(Xa, 8, random_state=0, intercept_column=True)
    prog = ParallelProgram(Xa, Y, blk, 0.3, intercept=True)
    _, _, res = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    cert = prog.certificate(prog.zeros(), refine=20)  # the zero network
    assert cert.dual <= res.extras["value"] + 1e-9
    assert cert.gap >= cert.primal - res.extras["value"] - 1e-9


# ------------------------------------------------------------- approximation
def test_low_rank_lipschitz_lemma():
    """||f(X) − f(X_r)||_F ≤ σ_{r+1} √m R(θ) for random networks (the approximation's lemma)."""
    X, Y = _data(40, 4, seed=6)
    Xa = add_intercept(X)
    Xr, tail = low_rank(Xa, 2)
    s = torch.linalg.svdvals(Xa)
    assert abs(tail - float(s[2])) < 1e-10
    for seed in range(5):
        net = _random_net(K=6, m=3, d=5, c=2, seed=seed, single_output=False)
        z = torch.zeros(6, 3, dtype=DT)
        flat = ParallelReLUNetwork(torch.cat([net.first_layer_weights[..., :4],
                                              net.first_layer_weights[..., 4:]], -1), z,
                                   net.second_layer_weights, net.output_weights)
        diff = torch.linalg.norm(flat.forward(Xa) - flat.forward(Xr))
        assert float(diff) <= tail * 3 ** 0.5 * float(flat.path_norm()) + 1e-10
    bound = approximation_bound("squared", tail, 3, 0.5, Y)
    assert bound["kappa"] >= 1.0


# ------------------------------------------------------------ column generation
def test_pricing_values_are_exact_subnetwork_outputs():
    """The search reports ⟨−εΛ_t, g_q(X)⟩ for unit-path-norm sub-networks: equal to the output
    of the network with one sub-network built from q (path norm 1) paired with −Λ."""
    X, Y = _data(25, 2, seed=7, c=2)
    Xa = add_intercept(X)
    lam = torch.randn(25, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    cand = price(Xa, lam, n_starts=8, n_steps=20, random_state=0, intercept_column=True)
    assert torch.all(cand.values[:-1] >= cand.values[1:])  # best first
    for i in range(5):
        q, sg = cand.gates[i], cand.signs[i]
        assert abs(float(torch.linalg.norm(q)) - 1) < 1e-12
        net = ParallelReLUNetwork(q[None, :, :-1] , q[None, :, -1], sg[None],
                                  torch.nn.functional.one_hot(cand.outputs[i:i + 1], 2).to(DT)
                                  * cand.eps[i])
        assert abs(float(net.path_norm()) - 1) < 1e-12
        ref = float((-lam * net.forward(X)).sum())
        assert abs(ref - float(cand.values[i])) < 1e-10
        r = -cand.eps[i] * lam[:, cand.outputs[i]]
        assert abs(float(subnetwork_values(Xa, q, sg, r)) - ref) < 1e-10


def test_pricing_finds_a_violation_at_a_non_optimal_network():
    """At the zero network a single sub-network can lower the objective; the search must find
    one (value > β), and adding its block must lower the program's value."""
    X, Y = _data(30, 2, seed=8)
    Xa = add_intercept(X)
    reg = 0.5
    cand = price(Xa, -Y, n_starts=16, n_steps=40, random_state=0, intercept_column=True)
    assert cand.best > reg
    blk = ParallelBlocks(cand.gates[:1], cand.signs[:1], cand.outputs[:1], cand.eps[:1])
    prog = ParallelProgram(Xa, Y, blk, reg, depth=3, intercept=True)
    _, cert, _ = solve(prog)
    assert cert.primal < 0.5 * float((Y**2).sum()) - 1e-6


def test_select_blocks_skips_known_duplicate_and_degenerate_candidates():
    X, _ = _data(20, 2, seed=11)
    Xa = add_intercept(X)
    g = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(1), dtype=DT)
    g[1] = 2.0 * g[0]  # same patterns as candidate 0
    x0 = Xa[0]
    g[2, 0] -= (g[2, 0] @ x0) / (x0 @ x0) * x0  # hyperplane through a data point
    sg = torch.ones(3, 2, dtype=DT)
    cand = PricingResult(g, sg, torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=DT),
                         torch.tensor([3.0, 2.0, 1.5], dtype=DT), 1, 0, 0.0)
    pick, keys = select_blocks(Xa, cand, [], reg=1.0, margin=1e-3, max_new=10)
    assert pick == [0] and len(keys) == 1
    assert select_blocks(Xa, cand, keys, reg=1.0, margin=1e-3, max_new=10)[0] == []
    assert select_blocks(Xa, cand, [], reg=5.0, margin=1e-3, max_new=10)[0] == []


def test_column_generation_improves_on_the_sampled_program():
    """CG starts from the sampled blocks, so its optimum is ≤ the sampled program's; the
    objective is non-increasing over rounds; the final certificate is tight, brackets the CVXPY
    optimum over the final blocks and equals the read-back network's objective."""
    X, Y = _data(30, 2, seed=9)
    Xa = add_intercept(X)
    reg = 0.05
    samp = fit_parallel(Xa, Y, reg=reg, n_patterns=10, method="sampled", random_state=0)
    res = fit_parallel_cg(Xa, Y, reg=reg, n_init_blocks=10, max_rounds=3, max_new=15,
                          n_starts=16, n_steps=40, random_state=0)
    objs = [r["objective"] for r in res.info["rounds"]]
    assert all(b <= a + 1e-6 * abs(a) for a, b in zip(objs, objs[1:]))
    assert res.certificate.primal < samp.certificate.primal - 1e-3
    assert res.certificate.relative_gap < 1e-5
    assert abs(res.network.objective(X, Y, reg) - res.certificate.primal) <= 1e-9
    prog = res.info["_program"]
    _, _, ref = solve(prog, solver="cvxpy")
    v = ref.extras["value"]
    assert res.certificate.dual <= v + 1e-7 and v <= res.certificate.primal + 1e-7
    assert res.info["pricing"]["max_ratio"] > 0
    assert res.certificate.scope == "sampled patterns"


def test_column_generation_depth2_and_vector_targets():
    X, Y = _data(20, 2, seed=10, c=2)
    Xa = add_intercept(X)
    for depth in (2, 3):
        res = fit_parallel_cg(Xa, Y, reg=0.2, depth=depth, n_init_blocks=4, max_rounds=1,
                              max_new=8, n_starts=8, n_steps=30, random_state=1)
        net = res.network
        assert net.depth == depth and net.n_outputs == 2
        assert abs(net.objective(X, Y, 0.2) - res.certificate.primal) <= 1e-9
        assert res.certificate.dual <= res.certificate.primal


# ---------------------------------------------------------------- estimators
def test_regressor_fit_predict_torch():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 2))
    y = np.maximum(X[:, 0], 0) - np.maximum(X[:, 1] - 0.5, 0) + 0.05 * rng.standard_normal(30)
    est = ConvexParallelReLURegressor(depth=3, width=2, reg=1e-2, n_patterns=12,
                                      search_rounds=2, max_new=10, n_starts=16,
                                      random_state=0).fit(X, y)
    assert est.network_.depth == 3
    pred = est.predict(X)
    out = est.to_torch()(torch.as_tensor(X)).detach().numpy()[:, 0]
    np.testing.assert_allclose(pred, out, rtol=0, atol=1e-10)
    obj = est.network_.objective(X, y, 1e-2)
    assert abs(obj - est.certificate_.primal) <= 1e-8 * max(1, obj)
    assert est.certificate_.relative_gap < 1e-5
    assert est.score(X, y) > 0.5
    assert est.fit_info_["method"] == "cg" and est.fit_info_["n_rounds"] == 3


@pytest.mark.parametrize("multiclass", [False, True])
def test_classifier(multiclass):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    if not multiclass:
        X, y = X[y != 2], y[y != 2]
    X, y = X[::3], y[::3]
    est = ConvexParallelReLUClassifier(reg=1e-1, n_patterns=6, search_rounds=1, max_new=8,
                                       n_starts=16, random_state=0).fit(X, y)
    assert est.score(X, y) >= 0.9
    P = est.predict_proba(X)
    np.testing.assert_allclose(P.sum(1), 1.0)
    assert est.certificate_.dual <= est.certificate_.primal
    assert est.certificate_.relative_gap < 1e-5
    Z = est.decision_function(X)
    out = est.to_torch()(torch.as_tensor(X)).detach().numpy()
    np.testing.assert_allclose(Z, out[:, 0] if Z.ndim == 1 else out, rtol=0, atol=1e-10)


def test_float32_agrees_with_float64():
    """A float32 program is solved in float64 and mapped back; the certified objectives agree."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 3))
    y = np.maximum(X @ np.array([1.0, -1.0, 0.5]), 0) + 0.05 * rng.standard_normal(30)
    objs = []
    for dt in ("float64", "float32"):
        est = ConvexParallelReLURegressor(reg=0.05, n_patterns=10, patterns="sample", dtype=dt,
                                          random_state=0).fit(X, y)
        assert est.network_.first_layer_weights.dtype == getattr(torch, dt)
        assert est.certificate_.relative_gap < (1e-6 if dt == "float64" else 1e-3)
        objs.append(est.certificate_.primal)
    assert abs(objs[0] - objs[1]) <= 1e-4 * objs[0]


def test_rank_approximation_reports_guarantee():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((25, 3))
    y = X[:, 0] + 0.1 * rng.standard_normal(25)
    est = ConvexParallelReLURegressor(reg=0.1, n_patterns=8, rank=2, patterns="sample",
                                      random_state=0).fit(X, y)
    ap = est.fit_info_["approximation"]
    assert ap["rank"] == 2 and ap["kappa"] >= 1 and ap["patterns_exhaustive"] is False
    Xa = np.hstack([X, np.ones((25, 1))])
    assert abs(ap["sigma_tail"] - np.linalg.svd(Xa, compute_uv=False)[2]) < 1e-8
    assert abs(est.fit_info_["objective"] - est.network_.objective(X, y, 0.1)) < 1e-8


@pytest.mark.parametrize("kw,msg", [({"reg": 0.0}, "reg"), ({"depth": 1}, "depth"),
                                    ({"width": 0}, "width"), ({"n_patterns": -1}, "n_patterns"),
                                    ({"patterns": "adam"}, "patterns"), ({"solver": "x"}, "solver"),
                                    ({"search_rounds": -1}, "search_rounds"),
                                    ({"max_new": 0}, "max_new"), ({"max_time": 0}, "max_time")])
def test_bad_params(kw, msg):
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match=msg):
        ConvexParallelReLURegressor(**kw).fit(X, X[:, 0])


def test_deprecated_aliases_warn_and_fit_as_the_new_names():
    """method= / max_rounds= (former names of patterns= / search_rounds=) still work: one
    FutureWarning each and the same fit as the current names."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 2))
    y = np.maximum(X[:, 0], 0)
    common = {"reg": 0.1, "n_patterns": 4, "n_starts": 4, "random_state": 0}
    with pytest.warns(FutureWarning) as rec:
        old = ConvexParallelReLURegressor(method="cg", max_rounds=0, **common).fit(X, y)
    warned = " ".join(str(w.message) for w in rec if issubclass(w.category, FutureWarning))
    assert "'method' is deprecated" in warned and "'max_rounds' is deprecated" in warned
    new = ConvexParallelReLURegressor(patterns="search", search_rounds=0, **common).fit(X, y)
    assert old.fit_info_["n_rounds"] == new.fit_info_["n_rounds"] == 1
    assert np.array_equal(old.predict(X), new.predict(X))


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((10, 2))
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ConvexParallelReLURegressor().fit(X, np.zeros(10))


# ------------------------------------------------------------- exhaustive (global) program
def _tiny(n=6, seed=0):
    rng = np.random.default_rng(seed)
    X = torch.tensor(rng.standard_normal((n, 1)), dtype=DT)
    Y = torch.tensor(rng.standard_normal((n, 1)), dtype=DT)
    return add_intercept(X), Y


def _adam_best(Xa, Y, reg, depth, width, K=6, starts=8, steps=1500):
    """Best non-convex objective Adam reaches from random starts (same architecture)."""
    best = float("inf")
    for s in range(starts):
        g = torch.Generator().manual_seed(s)
        W1 = torch.randn(K, width, Xa.shape[1] - 1, generator=g, dtype=DT)
        b1 = torch.randn(K, width, generator=g, dtype=DT)
        w2 = torch.randn(K, width, generator=g, dtype=DT) if depth == 3 else None
        mod = ParallelReLUNetwork(W1, b1, w2, torch.randn(K, 1, generator=g, dtype=DT)).to_torch()
        opt = torch.optim.Adam(mod.parameters(), lr=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            obj = 0.5 * ((mod(Xa[:, :-1]) - Y) ** 2).sum() + reg * mod.path_norm()
            obj.backward()
            opt.step()
        best = min(best, float(obj.detach()))
    return best


@pytest.mark.parametrize("depth,width", [(2, 1), (3, 2)])
def test_exhaustive_program_is_global_and_matches_cvxpy(depth, width):
    """The program over every block: scope "global", its value equals an independent CVXPY
    (Clarabel) solve of the same blocks, CG and Adam never go below it."""
    import cvxpy as cp

    from convexnn.formulations.parallel import cvxpy_solution, to_cvxpy
    from convexnn.formulations.parallel.exhaustive import enumerate_blocks

    Xa, Y = _tiny()
    reg, tol = 0.1, 1e-7
    res = fit_parallel(Xa, Y, reg=reg, depth=depth, width=width, method="exhaustive", tol=tol)
    cert = res.certificate
    assert cert.scope == "global" and cert.relative_gap <= 1e-5
    assert abs(res.info["objective"] - cert.primal) <= 1e-9 * cert.primal
    blk = enumerate_blocks(Xa, width=width, depth=depth)
    prog = ParallelProgram(Xa, Y, blk, reg, depth=depth, intercept=True)
    problem, Q = to_cvxpy(prog)
    problem.solve(solver=cp.CLARABEL)
    assert cvxpy_solution(prog, Q) is not None
    assert abs(problem.value - cert.primal) <= 1e-5 * cert.primal
    assert cert.dual <= problem.value + 1e-7 * cert.primal


@pytest.mark.slow
@pytest.mark.parametrize("depth,width", [(2, 1), (3, 2)])
def test_nothing_goes_below_the_global_lower_bound(depth, width):
    """Column generation and Adam (same architecture, random starts) end at or above the
    exhaustive program's dual bound."""
    Xa, Y = _tiny()
    cert = fit_parallel(Xa, Y, reg=0.1, depth=depth, width=width, method="exhaustive").certificate
    cg = fit_parallel(Xa, Y, reg=0.1, depth=depth, width=width, random_state=0)
    assert cg.info["objective"] >= cert.dual - 1e-9
    assert _adam_best(Xa, Y, 0.1, depth, width, starts=3, steps=800) >= cert.dual - 1e-9


def test_exhaustive_depth2_equals_two_layer_exact_program():
    """Depth 2 over every block = the two-layer program over every arrangement pattern (an
    independent formulation, solved by CVXPY)."""
    from convexnn.patterns.arrangements import enumerate_patterns

    Xa, Y = _tiny(seed=3)
    res = fit_parallel(Xa, Y, reg=0.2, depth=2, width=1, method="exhaustive")
    tl = TwoLayerProgram(Xa, Y, enumerate_patterns(Xa), 0.2, intercept=True)
    problem, _ = tl_to_cvxpy(tl)
    problem.solve(solver="CLARABEL")
    assert abs(problem.value - res.certificate.primal) <= 1e-5 * problem.value


def test_exhaustive_refuses_too_many_blocks():
    from convexnn.formulations.parallel.exhaustive import TooManyBlocks

    Xa, Y = _tiny(n=12)
    with pytest.raises(TooManyBlocks, match="blocks"):
        fit_parallel(Xa, Y, reg=0.1, method="exhaustive", max_blocks=100)


@pytest.mark.parametrize("loss,depth", [("squared", 3), ("logistic", 3), ("squared", 2)])
def test_approximation_bound_against_exhaustive_optima(loss, depth):
    """p*(X_r) ≤ κ p*(X) and p*(X) ≤ κ p*(X_r) with both optima certified globally, and the
    reported ratio bound holds for the rank-r network on the true X."""
    x = np.random.default_rng(1).standard_normal((6, 1))
    Xa = add_intercept(torch.tensor(2.0 + 0.05 * x, dtype=DT))  # [x, 1] nearly rank 1
    Y = torch.tensor(np.tanh(2 * x), dtype=DT)
    if loss == "logistic":
        Y = torch.where(Y > 0, 1.0, -1.0).to(DT)
    reg, width = 0.1, 2
    full = fit_parallel(Xa, Y, reg=reg, depth=depth, width=width, loss=loss,
                        method="exhaustive")
    appr = fit_parallel(Xa, Y, reg=reg, depth=depth, width=width, loss=loss,
                        method="exhaustive", rank=1)
    ap = appr.info["approximation"]
    assert full.certificate.scope == "global" and ap["patterns_exhaustive"] is True
    kappa = ap["kappa"]
    assert 1.0 < kappa < 3.0  # a non-vacuous case
    p_x = (full.certificate.dual, full.certificate.primal)  # p*(X) in [dual, primal]
    Xr, _ = low_rank(Xa, 1)
    on_r = fit_parallel(Xr, Y, reg=reg, depth=depth, width=width, loss=loss,
                        method="exhaustive")
    p_r = (on_r.certificate.dual, on_r.certificate.primal)
    assert p_r[0] <= kappa * p_x[1] and p_x[0] <= kappa * p_r[1]
    true_ratio = appr.info["objective"] / p_x[1]
    assert 1 - 1e-6 <= true_ratio <= ap["ratio_bound"] * (1 + 1e-9)
    assert full.certificate.primal < 0.9 * _zero_objective(Y, loss)  # not the zero network


def _zero_objective(Y, loss):
    from convexnn.losses import get_loss

    return float(get_loss(loss).value(torch.zeros_like(Y), Y))


def test_estimator_default_reg_and_exhaustive_method():
    """reg=None: 0.1 x the searched reg_max; patterns="enumerate": global scope."""
    from convexnn.pipelines.parallel import reg_max

    x = np.linspace(-1, 1, 6)[:, None]
    y = np.sin(3 * x[:, 0])
    est = ConvexParallelReLURegressor(patterns="enumerate", random_state=0).fit(x, y)
    Xa = add_intercept(torch.tensor(x, dtype=DT))
    rmax = reg_max(Xa, torch.tensor(y[:, None], dtype=DT), random_state=0)
    assert abs(est.reg_ - 0.1 * rmax) <= 1e-9 * rmax
    assert est.certificate_.scope == "global" and est.certificate_.relative_gap <= 1e-5
    # below the (searched) reg_max a found sub-network proves the zero network is not optimal
    below = ConvexParallelReLURegressor(patterns="enumerate", reg=0.99 * rmax).fit(x, y)
    assert below.certificate_.primal < 0.5 * float((y**2).sum()) * (1 - 1e-6)
