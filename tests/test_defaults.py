"""The two-layer estimators as a user meets them: defaults, offset, scale, honest certificates."""

import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, make_blobs
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import convexnn as cn
from convexnn.certificates import SCOPE_SAMPLED
from convexnn.formulations.two_layer import TwoLayerProgram, solve
from convexnn.losses import OffsetLoss, get_loss
from convexnn.pipelines.descent import certify_network


def _planted(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, 3))
    y = np.maximum(X @ W, 0) @ np.array([1.0, -1.0, 0.5]) + 0.1 * rng.standard_normal(n)
    return X, y


def test_default_classifier_on_blobs_and_pipeline():
    """The crash cases of the usability issue: make_blobs and breast_cancer in a Pipeline."""
    X, y = make_blobs(300, random_state=0)
    clf = cn.ConvexReLUClassifier(random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.9
    Xb, yb = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), cn.ConvexReLUClassifier(random_state=0))
    pipe.fit(Xb[:300], yb[:300])
    assert pipe.score(Xb[300:], yb[300:]) > 0.9
    assert pipe[-1].solver_ == "descent"


def test_default_regressor_on_diabetes_is_fast_and_has_an_offset():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    t = time.perf_counter()
    est = cn.ConvexReLURegressor(random_state=0, max_time=20).fit(X[:300], y[:300])
    assert time.perf_counter() - t < 20 * 1.1 + 1
    assert est.score(X[300:], y[300:]) > 0.2
    # a huge weight decay gives the zero network: the prediction is the mean, not 0
    big = cn.ConvexReLURegressor(reg=1e9, random_state=0).fit(X[:300], y[:300])
    assert np.allclose(big.predict(X[300:]), y[:300].mean(), rtol=1e-6)
    assert big.network_.output_bias is not None


@pytest.mark.parametrize("activation", ["relu", "gated"])
def test_max_time_is_honoured(activation):
    X, y = _planted(n=400, d=8)
    t = time.perf_counter()
    est = cn.ConvexReLURegressor(activation=activation, max_time=0.5, random_state=0,
                                 reg=1e-3, warn_gap=None).fit(X, y)
    elapsed = time.perf_counter() - t
    assert elapsed < 0.5 * 1.1 + 0.6, elapsed  # the budget plus the final certificate
    assert np.isfinite(est.certificate_.primal)


@pytest.mark.parametrize("activation", ["relu", "gated"])
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-6), ("float32", 1e-3)])
def test_scale_invariance(activation, dtype, rtol):
    """X, 1e6·X and 1e-6·X (and y scaled) give the same predictions (standardisation is
    mapped back exactly)."""
    X, y = _planted(n=80, d=3)
    kw = {"activation": activation, "random_state": 0, "dtype": dtype, "n_patterns": 20,
          "warn_gap": None}
    base = cn.ConvexReLURegressor(**kw).fit(X, y)
    p0 = base.predict(X)
    for s in (1e6, 1e-6):
        est = cn.ConvexReLURegressor(**kw).fit(s * X, y)
        assert np.allclose(est.predict(s * X), p0, rtol=rtol, atol=rtol * np.abs(p0).max())
    est = cn.ConvexReLURegressor(**kw).fit(X, 1e6 * y)
    assert np.allclose(est.predict(X), 1e6 * p0, rtol=rtol, atol=1e6 * rtol * np.abs(p0).max())
    assert est.reg_ == pytest.approx(1e6 * base.reg_, rel=1e-6)


@pytest.mark.parametrize("loss,c", [("squared", 1), ("logistic", 1), ("cross_entropy", 3)])
def test_descent_certificate_is_honest(loss, c):
    """primal = the network's objective ≥ (i) dual ≥ (ii) search estimate; the dual lower-bounds
    the convex program over the network's own patterns (solved independently by CVXPY)."""
    rng = np.random.default_rng(3)
    # standardised data: the estimator's internal frame is then the identity, so the program
    # in raw units below is the one it solved
    X = StandardScaler().fit_transform(rng.standard_normal((40, 2)))
    if loss == "squared":
        y = np.abs(X[:, 0]) - X[:, 1]
        y = (y - y.mean()) / y.std()
        est = cn.ConvexReLURegressor(reg=0.3, random_state=0, n_patterns=6).fit(X, y)
        Y = y[:, None]
    else:
        y = (X[:, 0] * X[:, 1] > 0).astype(int) + (c == 3) * (X[:, 0] > 1)
        est = cn.ConvexReLUClassifier(reg=0.3, loss=loss, random_state=0,
                                      n_patterns=6).fit(X, y)
        Y = (2.0 * y - 1)[:, None] if loss == "logistic" else np.eye(c)[y]
    cert = est.certificate_
    assert est.objective(X, y) == pytest.approx(cert.primal, rel=1e-9)
    assert cert.primal >= cert.dual - 1e-9 and cert.primal >= cert.search_bound - 1e-9
    assert not cert.left_program and cert.global_bound is None
    if c == 1:  # the program over the network's own patterns, by CVXPY + Clarabel
        net = est.network_
        Xt = torch.as_tensor(X)
        Xa = torch.cat([Xt, torch.ones(40, 1, dtype=Xt.dtype)], 1)
        plain = cn.TwoLayerNetwork(net.first_layer_weights, net.first_layer_bias,
                                   net.second_layer_weights)
        prog, _ = TwoLayerProgram.from_network(plain, Xa, torch.as_tensor(Y), est.reg_,
                                               OffsetLoss(get_loss(loss)), intercept=True)
        _, ref, _ = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
        # dual ≤ optimum over those patterns ≤ primal (up to the reference's accuracy)
        assert cert.dual <= ref.primal * (1 + 1e-6) + 1e-9
        assert ref.primal <= cert.primal * (1 + 1e-6) + 1e-9


def test_certify_network_flags_nothing_for_an_optimal_network_of_its_own_patterns():
    X, y = _planted(n=60, d=2)
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(y)[:, None]
    est = cn.ConvexReLURegressor(reg=0.5, random_state=0).fit(X, y)
    # the network certified on raw data with the frame penalty equals the fit's certificate
    net = est.network_
    assert net.objective(X, y, est.reg_) == pytest.approx(est.certificate_.primal, rel=1e-9)
    c2 = certify_network(cn.TwoLayerNetwork(net.first_layer_weights, net.first_layer_bias,
                                            net.second_layer_weights, output_bias=net.output_bias),
                         Xt, Yt, est.reg_, get_loss("squared"))
    assert c2.primal >= c2.dual


def test_relu_default_no_worse_than_adam_small_problems():
    """The default ReLU fit reaches an objective no higher than a full-batch Adam run of the
    same width on two small problems (same objective: loss + reg/2 ||weights||², free offset)."""
    for X, y, loss in [(*_planted(n=150, d=3, seed=1), "squared"),
                       (*make_blobs(150, centers=2, random_state=2), "logistic")]:
        X = StandardScaler().fit_transform(X)
        reg = 0.5
        if loss == "squared":
            est = cn.ConvexReLURegressor(reg=reg, random_state=0).fit(X, y)
            Y = torch.as_tensor(y)[:, None]
        else:
            est = cn.ConvexReLUClassifier(reg=reg, random_state=0).fit(X, y)
            Y = torch.as_tensor(2.0 * y - 1)[:, None]
        m = est.network_.n_neurons
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], m), torch.nn.ReLU(),
                                    torch.nn.Linear(m, 1)).double()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        Xt, lo = torch.as_tensor(X), get_loss(loss)
        for _ in range(3000):
            opt.zero_grad()
            W1, b1, W2 = model[0].weight, model[0].bias, model[2].weight
            f = lo.value(model(Xt), Y) + 0.5 * reg * ((W1 ** 2).sum() + (b1 ** 2).sum()
                                                      + (W2 ** 2).sum())
            f.backward()
            opt.step()
        adam = cn.TwoLayerNetwork.from_torch(model).objective(X, Y, reg, loss)
        cert = est.certificate_
        assert cert.primal <= adam * (1 + 1e-6), (loss, cert.primal, adam)
        assert cert.primal >= cert.dual and cert.primal >= cert.search_bound


@pytest.mark.parametrize("params,match", [
    ({"max_time": 0}, "max_time"), ({"max_time": float("nan")}, "max_time"),
    ({"verbose": -1}, "verbose"), ({"fit_intercept": "no"}, "fit_intercept"),
    ({"device": "gpu"}, "device"), ({"tol": float("nan")}, "tol"),
    ({"gate_kind": "gaussian"}, "gate_kind=.* is not used"),
    ({"cvxpy_solver": "SCS"}, "cvxpy_solver=.* is not used"),
    ({"method_options": {"a": 1}}, "method_options"),
    ({"solver": "descent", "activation": "gated"}, "descent"),
    ({"warn_gap": -1}, "warn_gap"),
])
def test_parameters_are_validated_or_rejected_when_unused(params, match):
    X, y = _planted(n=30, d=2)
    with pytest.raises(ValueError, match=match):
        cn.ConvexReLURegressor(**params).fit(X, y)


def test_every_parameter_has_an_effect_or_is_rejected(capsys):
    """Each public parameter, set away from its default, changes the fit (or raises)."""
    X, y = _planted(n=30, d=2)
    base_kw = {"random_state": 0, "reg": 0.5, "max_time": 5.0, "warn_gap": None}
    base = cn.ConvexReLURegressor(**base_kw).fit(X, y)
    p0 = base.predict(X)

    def fit(**kw):
        return cn.ConvexReLURegressor(**{**base_kw, **kw}).fit(X, y)

    def differs(est):
        return not np.allclose(est.predict(X), p0, rtol=1e-9, atol=1e-12)

    # the program fits skip the pattern search (search_rounds=0) and the copositive relaxation
    # samples its patterns: each check still fails if its parameter is ignored
    prog = {"n_patterns": 8, "search_rounds": 0}
    relax = fit(method="relaxation", n_patterns=8, method_options={"patterns": "sample"},
                max_time=None)  # the relaxation has no time limit (max_time is rejected)
    checks = {
        "reg": lambda: differs(fit(reg=5.0)),
        "n_patterns": lambda: fit(n_patterns=3, search_rounds=0).network_.n_neurons <= 3,
        "activation": lambda: fit(activation="gated", search_rounds=0).network_.activation
        == "gated",
        "method": lambda: relax.certificate_.problem != base.certificate_.problem,
        "fit_intercept": lambda: fit(fit_intercept=False).network_.output_bias is None,
        "gate_kind": lambda: not np.array_equal(
            fit(solver="admm", gate_kind="gaussian", **prog).patterns_,
            fit(solver="admm", **prog).patterns_),
        "gates": lambda: fit(gates=np.r_[np.eye(2), np.zeros((1, 2))]).patterns_.shape
        == (3, 2),
        "solver": lambda: fit(solver="admm", **prog).solver_ == "admm",
        "tol": lambda: fit(solver="admm", tol=1e-1, **prog).n_iter_
        < fit(solver="admm", **prog).n_iter_,
        "max_iter": lambda: fit(solver="admm", max_iter=3, search_rounds=0).n_iter_ <= 3,
        "max_time": lambda: fit(max_time=1e-3).stop_reason_ == "max_time",
        "device": lambda: fit(device="cpu").network_.first_layer_weights.device.type == "cpu",
        "dtype": lambda: fit(dtype="float32").network_.first_layer_weights.dtype
        == torch.float32,
        "random_state": lambda: differs(fit(random_state=1)),
        "verbose": lambda: (fit(verbose=1), "descent" in capsys.readouterr().out)[1],
        "cvxpy_solver": lambda: fit(solver="cvxpy", cvxpy_solver="CLARABEL", **prog).solver_
        == "cvxpy",
        # the default ("auto") enumerates every pattern of these 2-d data: scope "all patterns"
        "method_options": lambda: relax.certificate_.scope == SCOPE_SAMPLED,
        "search_rounds": lambda: len(fit(search_rounds=0).search_) == 0,
        "warn_gap": lambda: _warns(lambda: fit(warn_gap=0.0)),
    }
    assert set(checks) == set(base.get_params()), set(base.get_params()) ^ set(checks)
    for name, check in checks.items():
        assert check(), name


def _warns(f) -> bool:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        f()
    return any("warn_gap" in str(w.message) for w in rec)


def test_certify_refuses_bad_label_encodings_and_flags_vacuous_bounds():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 10))
    net = cn.TwoLayerNetwork(torch.as_tensor(rng.standard_normal((4, 10))),
                             torch.zeros(4, dtype=torch.float64),
                             torch.as_tensor(rng.standard_normal((2, 4))))
    with pytest.raises(ValueError, match="one-hot"):
        cn.certify(net, X, rng.integers(0, 2, size=(30, 2)) * 2.0, 0.1, "cross_entropy")
    y = X[:, :1] @ np.ones((1, 2))
    with pytest.warns(RuntimeWarning, match="vacuous"):
        cert = cn.certify(net, X, y, 1e-4, "squared")
    assert cert.dual <= cert.primal


def test_classifier_scale_invariance_and_verbose_progress(capsys):
    X, y = make_blobs(120, centers=3, random_state=4)
    p0 = cn.ConvexReLUClassifier(random_state=0, verbose=1).fit(X, y).predict_proba(X)
    out = capsys.readouterr().out
    assert "round 0" in out and "s]" in out and "objective" in out
    for s in (1e6, 1e-6):
        p = cn.ConvexReLUClassifier(random_state=0).fit(s * X, y).predict_proba(s * X)
        assert np.allclose(p, p0, rtol=1e-6, atol=1e-9)
