"""The depth-L (tree) path-regularised program: operators, solvers against CVXPY, read-back,
exhaustive enumeration (global), column generation and the estimators at depth >= 4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convexnn import ConvexParallelReLUClassifier, ConvexParallelReLURegressor, load_estimator
from convexnn._validation import add_intercept
from convexnn.formulations.parallel import ParallelBlocks, ParallelProgram, fit_parallel, solve
from convexnn.formulations.parallel.exhaustive import TooManyBlocks
from convexnn.formulations.parallel.pricing import price
from convexnn.formulations.parallel.tree import Tree, sample_tree_blocks, tree_values
from convexnn.formulations.parallel.tree_exhaustive import enumerate_tree_blocks
from convexnn.formulations.parallel.tree_program import TreeProgram
from convexnn.networks.parallel_tree import TreeParallelReLUNetwork

DT = torch.float64
TOL = 1e-8


def _data(n=14, d=2, seed=0, c=1):
    rng = np.random.default_rng(seed)
    X = add_intercept(torch.tensor(rng.standard_normal((n, d)), dtype=DT))
    Y = torch.tensor(rng.standard_normal((n, c)), dtype=DT)
    return X, Y


def _program(depth=4, width=2, n_blocks=6, loss="squared", c=1, seed=0):
    X, Y = _data(c=c, seed=seed)
    if loss == "logistic":
        Y = torch.where(Y > 0, 1.0, -1.0).to(DT)
    blk = sample_tree_blocks(X, n_blocks, Tree(depth, width), n_outputs=c, random_state=seed,
                             intercept_column=True)
    return TreeProgram(X, Y, blk, 0.1, loss, intercept=True)


@pytest.mark.parametrize("depth,width", [(4, 2), (5, 2), (4, 3)])
def test_adjoint_and_witness_feasibility(depth, width):
    """⟨A q, G⟩ = ⟨q, Aᵀ G⟩ over every level, and each block's witness lies in its own cone
    with the read-back network computing the convex model there."""
    prog = _program(depth, width)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(prog.shape, generator=g, dtype=DT)
    gs = [torch.randn(prog.n, prog.B, u, generator=g, dtype=DT) for u in prog.tree.units]
    gh = torch.randn(prog.n, prog.B, generator=g, dtype=DT)
    hs = prog.levels(prog.linear(q))
    lhs = (prog.pre2(prog.linear(q)) * gh).sum() + sum((a * b).sum() for a, b in zip(hs, gs))
    assert torch.allclose(lhs, (prog.adjoint(gh, gs) * q).sum(), rtol=1e-12)
    w = prog.blocks.gates
    assert prog.violation(prog.linear(w)) <= 1e-12
    XW = prog.linear(w)
    assert torch.allclose(prog.predict(XW), prog.network_predict(XW), atol=1e-12)


@pytest.mark.parametrize("loss,c", [("squared", 1), ("logistic", 1), ("squared", 2)])
def test_clarabel_matches_independent_cvxpy_model(loss, c):
    """Depth 4 over sampled blocks: our sparse Clarabel form and the level-by-level CVXPY model
    reach the same optimum; the read-back network's objective equals the convex one."""
    prog = _program(loss=loss, c=c)
    x, cert, _ = solve(prog, solver="clarabel", tol=TOL)
    _, cref, _ = solve(prog, solver="cvxpy")
    assert abs(cert.primal - cref.primal) <= 1e-6 * cref.primal
    assert cert.dual <= cref.primal + 1e-9 and cert.relative_gap <= 1e-4
    net = prog.to_network(x)
    assert isinstance(net, TreeParallelReLUNetwork) and net.depth == 4
    assert abs(net.objective(prog.X[:, :-1], prog.Y, prog.reg, loss) - cert.primal) \
        <= 1e-9 * cert.primal


def test_depth3_tree_program_equals_the_depth3_program():
    """The tree program at depth 3 is the program of :class:`ParallelProgram` (same blocks)."""
    prog = _program(depth=3, width=2)
    b = prog.blocks
    ref = ParallelProgram(prog.X, prog.Y, ParallelBlocks(b.gates, b.signs, b.outputs, b.eps),
                          prog.reg, depth=3, intercept=True)
    _, c1, _ = solve(prog, tol=TOL)
    _, c2, _ = solve(ref, tol=TOL)
    assert abs(c1.primal - c2.primal) <= 1e-6 * c2.primal


def test_from_network_round_trip_and_infeasible_iterates_are_certified():
    """A network maps to its own blocks with the same objective; an infeasible point (an AL
    iterate) is certified after re-mapping, never below the optimum."""
    prog = _program()
    x, cert, _ = solve(prog, tol=TOL)
    net = prog.to_network(x)
    big, q = TreeProgram.from_network(net, prog.X, prog.Y, prog.reg, intercept=True)
    assert abs(big.objective(q) - cert.primal) <= 1e-9 * cert.primal
    assert big.violation(big.linear(q)) <= 1e-10
    xa, ca, _ = solve(prog, solver="al", tol=1e-6, max_iter=300)
    assert ca.primal >= cert.dual - 1e-9 and ca.dual <= cert.primal + 1e-9


def test_pricing_values_are_exact_tree_outputs():
    X, Y = _data()
    tree = Tree(4, 2)
    cand = price(X, -Y, depth=4, width=2, n_starts=8, n_steps=10, random_state=0,
                 intercept_column=True)
    assert cand.gates.shape[1:] == (4, 3) and cand.signs.shape[1] == tree.n_signs
    net = TreeParallelReLUNetwork(cand.gates[:1, :, :-1], cand.gates[:1, :, -1],
                                  cand.signs[:1], torch.ones(1, 1, dtype=DT), 4, 2)
    r = cand.eps[0] * Y[:, int(cand.outputs[0])]  # r = −ε Λ_t with Λ = −Y
    assert torch.allclose((net(X[:, :-1])[:, 0] * r).sum(), cand.values[0], rtol=1e-10)
    assert torch.allclose(tree_values(X, cand.gates[:1], cand.signs[:1], r[None], tree),
                          cand.values[:1], rtol=1e-12)


def _tiny3():
    x = torch.tensor([[-1.0], [0.2], [1.0]], dtype=DT)
    return add_intercept(x), torch.tensor([[0.5], [-0.4], [0.8]], dtype=DT)


def _adam_best_tree(Xa, Y, reg, K=4, starts=4, steps=1200):
    best = float("inf")
    for s in range(starts):
        g = torch.Generator().manual_seed(s)
        net = TreeParallelReLUNetwork(torch.randn(K, 4, 1, generator=g, dtype=DT),
                                      torch.randn(K, 4, generator=g, dtype=DT),
                                      torch.randn(K, 6, generator=g, dtype=DT),
                                      torch.randn(K, 1, generator=g, dtype=DT), 4, 2)
        mod = net.to_torch()
        opt = torch.optim.Adam(mod.parameters(), lr=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            obj = 0.5 * ((mod(Xa[:, :-1]) - Y) ** 2).sum() + reg * mod.path_norm()
            obj.backward()
            opt.step()
        best = min(best, float(obj.detach()))
    return best


@pytest.mark.slow
def test_exhaustive_depth4_is_global():
    """Every block of a 3-point problem (21,516 blocks): scope "global"; column generation and
    Adam from random starts (same architecture) never go below its dual bound, and the
    program's optimum matches an independent CVXPY solve of the same blocks."""
    Xa, Y = _tiny3()
    res = fit_parallel(Xa, Y, reg=0.1, depth=4, width=2, method="exhaustive", tol=TOL,
                       max_blocks=50000)
    cert = res.certificate  # Clarabel's multipliers over 21,516 blocks: a 1e-5-level bound
    assert cert.scope == "global" and cert.relative_gap <= 1e-4
    assert abs(res.info["objective"] - cert.primal) <= 1e-9 * cert.primal
    cg = fit_parallel(Xa, Y, reg=0.1, depth=4, width=2, random_state=0)
    assert cg.info["objective"] >= cert.dual - 1e-9
    assert _adam_best_tree(Xa, Y, 0.1) >= cert.dual - 1e-9


def test_exhaustive_depth4_two_points_matches_cvxpy_and_bounds_adam():
    """Two points (fast): the exhaustive program's value equals the CVXPY model of the same
    blocks, and Adam on the non-convex depth-4 network does not go below it."""
    Xa, Y = _tiny3()
    Xa, Y = Xa[:2], Y[:2]
    res = fit_parallel(Xa, Y, reg=0.1, depth=4, width=2, method="exhaustive", tol=TOL)
    cert = res.certificate
    assert cert.scope == "global" and "all" in cert.problem
    blk = enumerate_tree_blocks(Xa, Tree(4, 2))
    prog = TreeProgram(Xa, Y, blk, 0.1, intercept=True)
    _, cref, _ = solve(prog, solver="cvxpy")
    assert abs(cref.primal - cert.primal) <= 1e-6 * cert.primal
    assert _adam_best_tree(Xa, Y, 0.1, starts=2, steps=600) >= cert.dual - 1e-9


def test_exhaustive_refuses_beyond_max_blocks():
    Xa, Y = _tiny3()
    with pytest.raises(TooManyBlocks, match="max_blocks"):
        enumerate_tree_blocks(Xa, Tree(4, 2), max_blocks=1000)


def test_estimators_at_depth4_fit_save_load(tmp_path):
    """Regressor and classifier at depth 4 with their defaults (column generation): a tree
    network, a certificate over the blocks found, save/load round trip."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = np.maximum(X[:, 0], 0) - np.abs(X[:, 1])
    est = ConvexParallelReLURegressor(depth=4, random_state=0, search_rounds=1).fit(X, y)
    assert est.network_.depth == 4 and "depth-4" in est.certificate_.problem
    assert est.certificate_.relative_gap <= 1e-4 and est.score(X, y) > 0.5
    assert abs(est.fit_info_["objective"] - est.network_.objective(X, y, est.reg_)) \
        <= 1e-8 * est.fit_info_["objective"]
    est.save(tmp_path / "m.npz")
    assert np.allclose(load_estimator(tmp_path / "m.npz").predict(X), est.predict(X))
    clf = ConvexParallelReLUClassifier(depth=4, random_state=0, search_rounds=1)
    assert clf.fit(X, y > 0).score(X, y > 0) > 0.8


@pytest.mark.parametrize("depth", [1, 0, 2.5, True])
def test_bad_depth(depth):
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match="depth"):
        ConvexParallelReLURegressor(depth=depth).fit(X, X[:, 0])


@pytest.mark.parametrize("solver", ["pd", "barrier"])
def test_structured_interior_point_matches_clarabel_at_depth4(solver):
    """The structured interior-point solvers (the default) on tree programs: the optimum of the
    sparse Clarabel form, every iterate feasible."""
    prog = _program(n_blocks=8)
    x, cert, _ = solve(prog, solver=solver, tol=TOL)
    _, cref, _ = solve(prog, solver="clarabel", tol=TOL)
    assert abs(cert.primal - cref.primal) <= 1e-6 * cref.primal
    assert cert.relative_gap <= 1e-6 and prog.violation(prog.linear(x)) <= 1e-10


@pytest.mark.parametrize("depth,width", [(4, 2), (5, 2), (4, 3)])
def test_low_rank_lemma_with_the_number_of_leaves(depth, width):
    """||f(X) − f(X_r)||_F ≤ σ_{r+1} √M R(θ) for random tree networks (M leaves): the lemma
    behind the rank-r approximation's factor at depth ≥ 4; and a rank-r fit reports it."""
    from convexnn.formulations.parallel import low_rank

    X, Y = _data(n=30, d=4, seed=3)
    Xr, tail = low_rank(X, 2)
    tree = Tree(depth, width)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        K = 5
        net = TreeParallelReLUNetwork(torch.randn(K, tree.n_leaves, 5, generator=g, dtype=DT),
                                      torch.zeros(K, tree.n_leaves, dtype=DT),
                                      torch.randn(K, tree.n_signs, generator=g, dtype=DT),
                                      torch.randn(K, 2, generator=g, dtype=DT), depth, width)
        diff = float(torch.linalg.norm(net(X) - net(Xr)))
        assert diff <= tail * tree.n_leaves ** 0.5 * float(net.path_norm()) + 1e-10
    res = fit_parallel(X, Y, reg=0.5, depth=depth, width=width, rank=2, method="sampled",
                       n_patterns=4, random_state=0)
    assert res.info["approximation"]["kappa"] > 1 and res.network.depth == depth
