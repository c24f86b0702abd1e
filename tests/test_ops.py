"""Shared kernels of convexnn.ops against their definitions (closed forms, CVXPY prox)."""

import numpy as np
import pytest
import torch

from convexnn.ops.linalg import as_numpy, power_iteration, row_space
from convexnn.ops.prox import group_soft_threshold, singular_value_threshold


def test_group_soft_threshold_is_the_prox_of_the_group_norm():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 3))
    X[1] *= 0.1  # a group below the threshold is set to zero
    t = 0.6
    Z = cp.Variable(X.shape)
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(Z - X) + t * cp.sum(cp.norm(Z, 2, axis=1)))
               ).solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10)
    out = group_soft_threshold(torch.as_tensor(X), t, dim=1).numpy()
    assert np.allclose(out, Z.value, atol=1e-6)
    assert np.all(out[1] == 0)
    # a per-group threshold and precomputed norms give the same map
    Xt = torch.as_tensor(X)
    nrm = torch.linalg.vector_norm(Xt, dim=1, keepdim=True)
    thr = torch.full((5, 1), t, dtype=Xt.dtype)
    assert torch.allclose(group_soft_threshold(Xt, thr, norms=nrm), torch.as_tensor(out),
                          rtol=1e-14, atol=0)


def test_singular_value_threshold_shrinks_the_spectrum():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    t = 0.8
    out, s = singular_value_threshold(M, t, return_values=True)
    s0 = torch.linalg.svdvals(M)
    assert torch.allclose(s, (s0 - t).clamp_min(0))
    assert torch.allclose(torch.linalg.svdvals(out), s, atol=1e-12)
    # the prox optimality: M − out ∈ t ∂||out||_*, so ||M − out||₂ ≤ t
    assert float(torch.linalg.matrix_norm(M - out, ord=2).max()) <= t + 1e-12
    assert torch.equal(singular_value_threshold(M, t), out)


def test_power_iteration_estimates_the_squared_spectral_norm():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(7, 4, generator=g, dtype=torch.float64)
    lam = power_iteration(lambda v: A @ v, lambda r: A.T @ r, (4,), dtype=A.dtype, iters=200)
    assert lam == pytest.approx(float(torch.linalg.matrix_norm(A, ord=2)) ** 2, rel=1e-10)
    zero = power_iteration(lambda v: 0 * v, lambda r: r, (3,), dtype=A.dtype)
    assert zero == 0.0


def test_row_space_and_as_numpy():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 4))  # rank 2 in R^4
    B, Vr = row_space(X)
    assert Vr.shape == (4, 2) and np.allclose(Vr.T @ Vr, np.eye(2))
    assert np.allclose(B @ Vr.T, X)
    B0, V0 = row_space(np.zeros((0, 3)))
    assert B0.shape == (0, 0) and V0.shape == (3, 0)
    a = as_numpy(torch.ones(2, dtype=torch.float32))
    assert a.dtype == np.float64 and np.all(a == 1)
