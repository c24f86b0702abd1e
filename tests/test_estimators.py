"""Estimator behaviour: sklearn conventions, errors, export, persistence."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import convexnn as cn

# solver="admm": the convex program over sampled patterns (these tests check that path; the
# ReLU default, dual-guided descent, is tested in tests/test_defaults.py)
FAST = {"n_patterns": 10, "random_state": 0, "tol": 1e-5, "search_rounds": 0, "solver": "admm"}


@pytest.fixture
def reg_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2
    return X, y


@pytest.fixture
def clf_data():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((45, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, "a", "b")
    y[X[:, 0] > 1.2] = "c"
    return X, y


@pytest.mark.parametrize("activation", ["relu", "gated"])
def test_regressor_fit_predict_certificate(reg_data, activation):
    X, y = reg_data
    est = cn.ConvexReLURegressor(reg=0.1, activation=activation, **FAST).fit(X, y)
    assert est.predict(X).shape == (40,)
    assert est.score(X, y) > 0.8
    cert = est.certificate_
    assert 0 <= cert.gap <= 1e-4 * cert.primal and cert.scope == "sampled patterns"
    # the identity: the network's non-convex objective is the certified convex optimum
    assert est.objective(X, y) == pytest.approx(cert.primal, rel=1e-7)
    assert len(est.history_.objective) >= 1
    assert est.stop_reason_ in ("gap_tolerance", "converged")


def test_vector_output_regression(reg_data):
    X, y = reg_data
    Y = np.c_[y, -y, X[:, 2]]
    est = cn.ConvexReLURegressor(reg=0.1, activation="gated", **FAST).fit(X, Y)
    assert est.predict(X).shape == (40, 3)
    assert est.network_.second_layer_weights.shape[0] == 3


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_classifier(clf_data, loss):
    X, y = clf_data
    clf = cn.ConvexReLUClassifier(reg=0.5, loss=loss, activation="gated", **FAST).fit(X, y)
    assert set(clf.classes_) == {"a", "b", "c"}
    P = clf.predict_proba(X)
    assert P.shape == (45, 3) and np.allclose(P.sum(1), 1)
    assert clf.score(X, y) > 0.7
    assert set(clf.predict(X)) <= set(clf.classes_)


def test_binary_logistic_relu(clf_data):
    X, y = clf_data
    yb = (y == "a").astype(int)
    clf = cn.ConvexReLUClassifier(reg=0.1, loss="logistic", **{**FAST, "solver": "cvxpy"},
                                  cvxpy_solver="CLARABEL").fit(X, yb)
    assert clf.predict_proba(X).shape == (45, 2)
    assert clf.score(X, yb) > 0.7
    assert clf.certificate_.relative_gap <= 1e-4  # exponential-cone accuracy of Clarabel


@pytest.mark.parametrize("activation", ["relu", "gated"])
def test_torch_export_matches_predict(reg_data, activation):
    X, y = reg_data
    est = cn.ConvexReLURegressor(reg=0.1, activation=activation, **FAST).fit(X, y)
    model = est.to_torch()
    if activation == "relu":
        assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    out = model(torch.as_tensor(X)).detach().numpy()[:, 0]
    assert np.allclose(out, est.predict(X), atol=1e-12)


def test_float32_and_float64_agree(reg_data):
    X, y = reg_data
    e64 = cn.ConvexReLURegressor(reg=0.1, activation="gated", **FAST).fit(X, y)
    e32 = cn.ConvexReLURegressor(reg=0.1, activation="gated", dtype="float32",
                                 **{**FAST, "tol": 1e-4}).fit(X, y)
    assert e32.network_.first_layer_weights.dtype == torch.float32
    obj32 = e32.network_.to(dtype=torch.float64).objective(X, y, 0.1)
    assert obj32 == pytest.approx(e64.objective(X, y), rel=1e-3)
    assert np.allclose(e32.predict(X), e64.predict(X), atol=5e-2)


def test_badly_scaled_features_roundtrip():
    """Predictions of the returned network reproduce the fit on badly scaled data."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3)) * np.array([1e-3, 1.0, 1e3])
    y = np.maximum(X[:, 0] * 1e3 + X[:, 2] * 1e-3, 0)
    est = cn.ConvexReLURegressor(reg=0.01, **FAST).fit(X, y)
    assert est.objective(X, y) == pytest.approx(est.certificate_.primal, rel=1e-7)
    out = est.to_torch()(torch.as_tensor(X)).detach().numpy()[:, 0]
    assert np.allclose(out, est.predict(X), rtol=1e-10, atol=1e-10)


def test_user_gates(reg_data):
    X, y = reg_data
    G = np.random.default_rng(0).standard_normal((4, 6))
    est = cn.ConvexReLURegressor(reg=0.1, gates=G).fit(X, y)
    assert est.patterns_.shape[0] == 4 and est.patterns_.shape[1] <= 6
    with pytest.raises(ValueError, match="gates must have shape"):
        cn.ConvexReLURegressor(gates=np.ones((3, 2))).fit(X, y)


def test_save_load_roundtrip(tmp_path, clf_data):
    X, y = clf_data
    clf = cn.ConvexReLUClassifier(reg=0.5, loss="squared", activation="gated", **FAST).fit(X, y)
    path = tmp_path / "model.npz"
    clf.save(path)
    loaded = cn.load_estimator(path)
    assert np.array_equal(loaded.predict(X), clf.predict(X))
    assert loaded.certificate_.gap == clf.certificate_.gap
    with np.load(path, allow_pickle=False) as data:  # plain arrays, no pickle
        assert "first_layer_weights" in data.files


@pytest.mark.parametrize("bad,match", [
    (lambda X, y: (np.where(X > 1, np.nan, X), y), "NaN"),
    (lambda X, y: (np.where(X > 1, np.inf, X), y), "NaN or infinity"),
    (lambda X, y: (X[:, 0], y), "2-D"),
    (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples"),
    (lambda X, y: (X[:0], y[:0]), "empty"),
    (lambda X, y: (X.astype(str), y), "numeric"),
    (lambda X, y: (X, np.where(y > 0, np.nan, y)), "y contains NaN"),
])
def test_bad_input_errors(reg_data, bad, match):
    X, y = reg_data
    Xb, yb = bad(X, y)
    with pytest.raises(ValueError, match=match):
        cn.ConvexReLURegressor(**FAST).fit(Xb, yb)


@pytest.mark.parametrize("params,match", [
    ({"reg": 0.0}, "reg must be > 0"), ({"reg": -1.0}, "reg must be > 0"),
    ({"reg": "big"}, "reg must be a positive number"), ({"n_patterns": 0}, "n_patterns"),
    ({"activation": "tanh"}, "activation"), ({"solver": "sgd"}, "solver"),
    ({"method": "magic"}, "unknown method"), ({"dtype": "float16"}, "dtype"),
    ({"tol": 0}, "tol"), ({"gate_kind": "uniform"}, "gate_kind"),
])
def test_bad_hyperparameters(reg_data, params, match):
    X, y = reg_data
    with pytest.raises(ValueError, match=match):
        cn.ConvexReLURegressor(**{**FAST, **params}).fit(X, y)


def test_classifier_errors(clf_data):
    X, y = clf_data
    with pytest.raises(ValueError, match="only one class"):
        cn.ConvexReLUClassifier(**FAST).fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="unknown loss"):
        cn.ConvexReLUClassifier(loss="hinge", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="binary"):
        cn.ConvexReLUClassifier(loss="logistic", **FAST).fit(X, y)


def test_predict_errors(reg_data):
    X, y = reg_data
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        cn.ConvexReLURegressor().predict(X)
    est = cn.ConvexReLURegressor(reg=0.1, activation="gated", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :2])


def test_clone_pipeline_gridsearch(reg_data):
    X, y = reg_data
    est = cn.ConvexReLURegressor(reg=0.1, activation="gated", **FAST)
    c = clone(est)
    assert c.get_params() == est.get_params()
    c.set_params(reg=0.5)
    assert c.reg == 0.5 and est.reg == 0.1
    pipe = make_pipeline(StandardScaler(), est).fit(X, y)
    assert pipe.score(X, y) > 0.5
    gs = GridSearchCV(est, {"reg": [0.05, 0.5]}, cv=2).fit(X, y)
    assert gs.best_params_["reg"] in (0.05, 0.5)


def test_random_state_reproducible(reg_data):
    X, y = reg_data
    a = cn.ConvexReLURegressor(reg=0.1, activation="gated", **FAST).fit(X, y).predict(X)
    b = cn.ConvexReLURegressor(reg=0.1, activation="gated", **FAST).fit(X, y).predict(X)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("activation", ["relu", "gated"])
def test_pattern_search_lowers_the_objective(reg_data, activation):
    """search_rounds > 0 grows the pattern set; each round's optimum is certified and the
    final fit is no worse than the fit over the sampled patterns alone."""
    X, y = reg_data
    base = cn.ConvexReLURegressor(reg=0.1, activation=activation, **FAST).fit(X, y)
    est = cn.ConvexReLURegressor(reg=0.1, activation=activation,
                                 **{**FAST, "search_rounds": 3}).fit(X, y)
    rounds = est.search_["rounds"]
    assert rounds[0]["patterns"] == base.patterns_.shape[1]
    assert est.patterns_.shape[1] > base.patterns_.shape[1]
    assert est.objective(X, y) < 0.9 * base.objective(X, y)
    assert est.certificate_.relative_gap <= 1e-4
    assert est.objective(X, y) == pytest.approx(est.certificate_.primal, rel=1e-7)
    assert all(r["dual"] <= r["objective"] + 1e-12 for r in rounds)
