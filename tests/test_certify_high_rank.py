"""certify() where the arrangement is too large to enumerate: the neuron-SDP bound on the dual
constraint, the refit multiplier and the scaled dual, each checked against the exact oracle
and the exact global optimum on small low-rank cases (the high-rank path is forced by
``max_patterns``)."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convexnn.certificates.certificate import scaled_dual
from convexnn.certificates.global_ import certify
from convexnn.certificates.high_rank import (
    SCOPE_NORM_BOUND,
    SCOPE_SDP_BOUND,
    best_scaled_dual,
    norm_h_bound,
    sdp_h_bound,
)
from convexnn.formulations.copositive import ConeFaces, fit_exact
from convexnn.losses import get_loss
from convexnn.networks import TwoLayerNetwork
from convexnn.patterns.arrangements import enumerate_patterns


def _data(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    y = np.sin(2 * X[:, :1]) + X[:, 1:] ** 2 + 0.1 * rng.standard_normal((n, 1))
    return X, y


def _exact_h(Xa, lam):
    pats = enumerate_patterns(Xa)
    return float(ConeFaces(Xa, pats.gates, exhaustive=True).oracle(lam)[0].max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sdp_bound_on_h_is_above_the_exact_oracle_and_below_the_norm_bound(seed):
    X, _ = _data(12, seed)
    Xa = np.c_[X, np.ones(12)]
    lam = np.random.default_rng(10 + seed).standard_normal((12, 1 + seed % 2))
    h = _exact_h(Xa, lam)
    Xt, lt = torch.as_tensor(Xa), torch.as_tensor(lam)
    h_sdp, info = sdp_h_bound(Xt, lt, tol=1e-4, max_iter=20000)
    h_norm = norm_h_bound(Xt, lt)
    # proven: never below the true value (the oracle is exact up to round-off)
    assert h_sdp >= h * (1 - 1e-9)
    assert h_sdp <= h_norm * (1 + 1e-9)
    assert info["iterations"] > 0


def test_best_scaled_dual_is_the_closed_form_for_the_squared_loss():
    rng = np.random.default_rng(3)
    lam = torch.as_tensor(rng.standard_normal((20, 2)))
    Y = torch.as_tensor(rng.standard_normal((20, 2))) - 0.5 * lam
    sq = get_loss("squared")
    for h in (0.1, 1.0, 10.0, 100.0):
        v, s = best_scaled_dual(sq, lam, Y, h, 1.0)
        top = min(1.0, 1.0 / h)
        s_star = min(max(-float((lam * Y).sum()) / float((lam * lam).sum()), 0.0), top)
        assert s == pytest.approx(s_star, abs=1e-6)
        assert v == pytest.approx(float(-sq.conjugate(s_star * lam, Y)), rel=1e-10, abs=1e-12)
        assert v >= scaled_dual(sq, lam, Y, h, 1.0)[0] - 1e-12


@settings(max_examples=30, deadline=None)
@given(h=st.floats(1e-6, 1e6), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 10))
def test_best_scaled_dual_logistic_is_finite_and_monotone_in_h(h, scale, seed):
    rng = np.random.default_rng(seed)
    y = torch.as_tensor(np.sign(rng.standard_normal((15, 1))) + 0.0)
    F = torch.as_tensor(scale * rng.standard_normal((15, 1)))
    lo = get_loss("logistic")
    lam = lo.grad(F, y)
    v1, s1 = best_scaled_dual(lo, lam, y, h, 1.0)
    v2, _ = best_scaled_dual(lo, lam, y, 2 * h, 1.0)
    assert math.isfinite(v1) and 0.0 <= s1 <= min(1.0, 1.0 / h) + 1e-12
    assert v2 <= v1 + 1e-9 * (1 + abs(v1))      # a larger bound on h proves less


def _bad_network(X, seed, m=3):
    g = torch.Generator().manual_seed(seed)
    return TwoLayerNetwork(*(0.5 * torch.randn(*s, generator=g, dtype=torch.float64)
                             for s in [(m, X.shape[1]), (m,), (1, m)]))


def test_high_rank_certificate_is_below_the_exact_optimum_and_beats_the_norm_bound():
    X, y = _data(14, 4)
    reg = 0.2
    p_star = fit_exact(np.c_[X, np.ones(14)], y, reg, intercept=True, tol=1e-9).certificate
    net = _bad_network(X, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        norm = certify(net, X, y, reg, max_patterns=5, solve=False, relaxation=False)
        sdp = certify(net, X, y, reg, max_patterns=5, solve=False)
        full = certify(net, X, y, reg, max_patterns=5)
    assert norm.scope == SCOPE_NORM_BOUND and sdp.scope == SCOPE_SDP_BOUND
    for c in (norm, sdp, full):
        assert c.dual <= p_star.dual * (1 + 1e-9) + 1e-12      # a proven lower bound on p*
    assert sdp.dual >= norm.dual and full.dual >= sdp.dual * (1 - 1e-9)
    assert full.dual > 0.2 * p_star.primal                   # not vacuous here
    # the refit finds a better network: proven sub-optimal, the witness attached
    assert full.is_optimal is False
    assert full.optimum_upper_bound < full.primal
    assert full.better_network.objective(X, y, reg) == pytest.approx(full.optimum_upper_bound)
    assert full.optimum_upper_bound >= p_star.dual * (1 - 1e-9)


def test_high_rank_certificate_logistic_and_offset_networks():
    X, y = _data(12, 5)
    yb = np.sign(y - np.median(y))
    reg = 0.1
    ex = fit_exact(np.c_[X, np.ones(12)], yb, reg, "logistic", intercept=True, tol=1e-7)
    net = _bad_network(X, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        c = certify(net, X, yb, reg, "logistic", max_patterns=5)
    assert c.scope in (SCOPE_SDP_BOUND, SCOPE_NORM_BOUND)
    assert c.dual <= ex.certificate.primal * (1 + 1e-7) and c.dual <= c.primal
    # a network with an output bias is compared with every network that has one
    net.output_bias = torch.tensor([0.3], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        c2 = certify(net, X, y, reg, max_patterns=5)
        exact = certify(net, X, y, reg)
    assert exact.scope == "global"
    assert c2.dual <= exact.optimum_upper_bound * (1 + 1e-9)    # p* (with offset) <= upper
