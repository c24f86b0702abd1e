"""Exact global optimum of two-layer CNNs with global sum pooling (copositive on patches)."""

import numpy as np
import pytest
import torch

from convexnn.formulations.copositive_cnn import SumPoolCNN, fit_exact_cnn
from convexnn.patterns.arrangements import ArrangementTooLarge, enumerate_patterns

cp = pytest.importorskip("cvxpy")

REG = 0.1


def _signals(n=8, L=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, L))
    y = np.sin(X[:, :2].sum(1)) + 0.1 * rng.standard_normal(n)
    return X, np.c_[y, X[:, -1] ** 2 - 1]


def _stacked(X, k, intercept):
    """Independent patch code: plain loops, rows ordered (sample, position)."""
    rows = []
    for x in X:
        for s in range(len(x) - k + 1):
            rows.append(list(x[s:s + k]) + ([1.0] if intercept else []))
    return np.array(rows)


def _sweep_gates(Xs):
    """All cells of a rank-2 central arrangement in R^2 (angular sweep, written here)."""
    ang = np.arctan2(Xs[:, 1], Xs[:, 0])
    crit = np.unique(np.round(np.r_[ang + np.pi / 2, ang - np.pi / 2] % (2 * np.pi), 12))
    mid = 0.5 * (crit + np.r_[crit[1:], crit[0] + 2 * np.pi])
    return np.stack([np.cos(mid), np.sin(mid)])


def _masks(Xs, G):
    M = Xs @ G >= 0
    _, idx = np.unique(np.packbits(M.T, axis=1), axis=0, return_index=True)
    M = M[:, np.sort(idx)]
    return M[:, M.any(0)]


def _cvxpy_group_lasso(Xs, M, y, K, reg):
    """min ½||Σ_p S D_p X (v_p − w_p) − y||² + β Σ_p (||v_p|| + ||w_p||), v_p, w_p ∈ K_p."""
    n, h, P = len(y), Xs.shape[1], M.shape[1]
    V, W = cp.Variable((P, h)), cp.Variable((P, h))
    pred, cons = 0, []
    for p in range(P):
        DX = M[:, p:p + 1] * Xs
        A = DX.reshape(n, K, h).sum(1)  # S D_p X
        pred = pred + A @ (V[p] - W[p])
        B = (2 * M[:, p:p + 1] - 1) * Xs
        cons += [B @ V[p] >= 0, B @ W[p] >= 0]
    obj = 0.5 * cp.sum_squares(pred - y) + reg * (cp.sum(cp.norm(V, 2, axis=1))
                                                 + cp.sum(cp.norm(W, 2, axis=1)))
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return prob.value


def _train(X, Y, reg, m, seed, steps=300, pooling="sum"):
    torch.manual_seed(seed)
    Xt = torch.as_tensor(X)
    Xt = Xt[:, None] if Xt.ndim == 2 else Xt
    Conv = torch.nn.Conv1d if Xt.ndim == 3 else torch.nn.Conv2d
    net = SumPoolCNN(Conv(Xt.shape[1], m, 2).weight.detach().double(),
                     0.1 * torch.randn(m, dtype=torch.float64),
                     torch.randn(Y.shape[1], m, dtype=torch.float64), pooling=pooling)
    model = net.to_torch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Yt = torch.as_tensor(Y)
    for _ in range(steps):
        opt.zero_grad()
        obj = 0.5 * ((model(Xt) - Yt) ** 2).sum() + 0.5 * reg * sum(
            (p ** 2).sum() for p in model.parameters())
        obj.backward()
        opt.step()
    return SumPoolCNN.from_torch(model)


# ------------------------------------------------------------------ (a) vs CVXPY
@pytest.mark.parametrize("intercept", [False, True])
def test_exact_cnn_matches_exhaustive_cvxpy(intercept):
    X, Y = _signals()
    y = Y[:, 0]
    res = fit_exact_cnn(X, y, REG, kernel_size=2, intercept=intercept, tol=1e-9)
    cert = res.certificate
    assert cert.scope == "global" and res.info["optimal"]
    assert res.info["rank"] == (3 if intercept else 2)
    Xs = _stacked(X, 2, intercept)
    if intercept:  # rank 3: enumerated cells, checked against dense random gates
        G = enumerate_patterns(Xs).gates.numpy()
        Mr = _masks(Xs, np.random.default_rng(1).standard_normal((3, 200_000)))
        keys = {m.tobytes() for m in _masks(Xs, G).T}
        assert all(m.tobytes() in keys for m in Mr.T)
    else:  # rank 2: angular sweep written in this test (independent of the library)
        G = _sweep_gates(Xs)
    M = _masks(Xs, G)
    assert M.shape[1] == res.info["n_patterns"]
    ref = _cvxpy_group_lasso(Xs, M, y, 4, REG)
    assert cert.primal == pytest.approx(ref, rel=1e-6)
    assert cert.dual <= ref * (1 + 1e-7) and cert.primal >= ref * (1 - 1e-7)


# ------------------------------------------- (b) read-back network and torch export
@pytest.mark.parametrize("c", [1, 2])
def test_readback_objective_and_export_1d(c, tmp_path):
    X, Y = _signals()
    Y = Y[:, :c]
    res = fit_exact_cnn(X, Y, REG, kernel_size=2, tol=1e-8)
    net, cert = res.network, res.certificate
    assert cert.scope == "global" and cert.relative_gap <= 1e-8
    assert net.weight.shape[1:] == (1, 2) and net.n_filters == res.info["n_filters"]
    assert net.objective(X, Y, REG) == pytest.approx(cert.primal, rel=1e-9)
    with torch.no_grad():
        out = net.to_torch()(torch.as_tensor(X)[:, None])
    assert torch.allclose(out, net.forward(X), atol=1e-12)
    # balanced read-back: ||u_j|| = ||v_j|| (weight decay at its minimum for this function)
    un = torch.sqrt((net.weight ** 2).sum((1, 2)) + net.bias ** 2)
    assert torch.allclose(un, torch.linalg.vector_norm(net.linear_weight, dim=0))
    net.save(tmp_path / "m.npz")
    back = SumPoolCNN.load(tmp_path / "m.npz")
    assert torch.equal(back.forward(X), net.forward(X))


def test_readback_2d_images_and_padding():
    rng = np.random.default_rng(3)
    img, Y = rng.standard_normal((3, 1, 3, 3)), rng.standard_normal((3, 2))
    res = fit_exact_cnn(img, Y, REG, kernel_size=2, intercept=False)
    assert res.certificate.scope == "global" and res.info["optimal"]
    net = res.network
    assert net.objective(img, Y, REG) == pytest.approx(res.certificate.primal, rel=1e-9)
    with torch.no_grad():
        assert torch.allclose(net.to_torch()(torch.as_tensor(img)), net.forward(img), atol=1e-12)
    # kernel 1 + bias with zero padding: padded positions contribute (b)_+
    img2, y2 = rng.standard_normal((4, 2, 2, 2)), rng.standard_normal(4)
    res2 = fit_exact_cnn(img2, y2, REG, kernel_size=1, padding=1)
    assert res2.info["n_positions"] == 16 and res2.info["optimal"]
    assert res2.network.objective(img2, y2, REG) == pytest.approx(res2.certificate.primal,
                                                                  rel=1e-9)


def test_avg_pooling_equals_sum_pooling_with_scaled_reg():
    # mean pooling over K positions at β is sum pooling at K·β: (u, a) ↦ (u, a)/√K
    X, Y = _signals(seed=5)
    y = Y[:, 0]
    avg = fit_exact_cnn(X, y, REG, kernel_size=2, pooling="avg", tol=1e-9)
    sm = fit_exact_cnn(X, y, 4 * REG, kernel_size=2, pooling="sum", tol=1e-9)
    assert avg.certificate.primal == pytest.approx(sm.certificate.primal, rel=1e-6)
    assert avg.network.objective(X, y, REG) == pytest.approx(avg.certificate.primal, rel=1e-9)


# --------------------------------------------- (c) trained CNNs never beat the bound
@pytest.mark.parametrize("c", [1, 2])
def test_trained_cnns_respect_certified_lower_bound(c):
    X, Y = _signals(seed=2)
    Y = Y[:, :c]
    res = fit_exact_cnn(X, Y, REG, kernel_size=2, tol=1e-7)
    lower = res.certificate.dual
    for seed, m in [(0, 2), (1, 8), (2, 32)]:
        trained = _train(X, Y, REG, m, seed)
        assert trained.objective(X, Y, REG) >= lower - 1e-9


# ------------------------------------------------------------------------ refusal
def test_refuses_large_arrangement_with_count():
    X, Y = _signals(n=30, L=12)
    with pytest.raises(ArrangementTooLarge, match=r"up to [\d,]+ activation patterns"):
        fit_exact_cnn(X, Y, REG, kernel_size=3, max_patterns=1000)
    with pytest.raises(ValueError, match="pooling"):
        fit_exact_cnn(X, Y, REG, kernel_size=2, pooling="max")
