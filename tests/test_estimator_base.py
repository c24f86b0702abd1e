"""The estimators' shared base (convexnn/estimators/_base.py): one set of fitted attributes and
one history type for every family, save / load_estimator for all, predict_proba through
Loss.link, and the deprecated parameter aliases (FutureWarning, same fit as the new name)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

import convexnn as cn
from convexnn.estimators._base import FitHistory
from convexnn.losses import get_loss

CNN = {"kernel_size": 1, "pooling": "none", "n_patterns": 4, "reg": 1e-2, "tol": 1e-3,
       "max_iter": 100, "random_state": 0, "activation": "gated"}
PAR = {"depth": 2, "width": 1, "n_patterns": 4, "patterns": "sample", "reg": 0.1,
       "random_state": 0}
TWO = {"reg": 0.1, "activation": "gated", "n_patterns": 8, "random_state": 0,
       "search_rounds": 0, "tol": 1e-5}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 3))
    labels = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    return X, np.sin(X[:, 0]) + X[:, 1], labels


ESTIMATORS = [
    (cn.ConvexReLURegressor, TWO), (cn.ConvexReLUClassifier, TWO),
    (cn.ConvexCNNRegressor, CNN), (cn.ConvexCNNClassifier, CNN),
    (cn.ConvexParallelReLURegressor, PAR), (cn.ConvexParallelReLUClassifier, PAR),
]


@pytest.mark.parametrize("cls,params", ESTIMATORS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_estimator_shares_fitted_attributes_and_io(cls, params, data, tmp_path):
    X, y, labels = data
    target = labels if cls.__name__.endswith("Classifier") else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = cls(**params).fit(X, target)
    assert type(est.history_) is FitHistory and len(est.history_) >= 1
    assert len(est.history_.objective) == len(est.history_.seconds)
    assert isinstance(est.n_iter_, int) and est.n_iter_ >= 1
    assert isinstance(est.stop_reason_, str) and est.fit_time_ >= 0
    assert est.reg_ == params["reg"] and est.n_features_in_ == 3
    assert isinstance(est.fit_info_, dict)
    assert est.certificate_.dual <= est.certificate_.primal * (1 + 1e-12)
    est.save(tmp_path / "m.npz")
    back = cn.load_estimator(tmp_path / "m.npz")
    assert type(back) is cls and back.get_params() == est.get_params()
    assert np.array_equal(back.predict(X), est.predict(X))
    assert back.certificate_ == est.certificate_ and back.reg_ == est.reg_
    if hasattr(est, "classes_"):
        # probabilities are the loss's link of the raw outputs (softmax: one output per class)
        Z = torch.as_tensor(est._outputs(X))
        link = get_loss("cross_entropy").link(Z).numpy()
        assert np.allclose(est.predict_proba(X), link, rtol=0, atol=1e-12)
        assert np.array_equal(est.classes_[est.predict_proba(X).argmax(1)], est.predict(X))


def test_binary_classifiers_agree_on_encoding(data):
    """Two classes: logistic by default (one output, ±1 targets, sigmoid probabilities);
    loss="squared" regresses one-hot targets (two outputs) in every family."""
    X, _, labels = data
    yb = labels == "a"
    for cls, params in ESTIMATORS[1::2]:
        if cls is cn.ConvexCNNClassifier:  # CNN programs: cross-entropy or squared only
            continue
        est = cls(**params).fit(X, yb)
        assert est.network_.forward(torch.as_tensor(X)).shape[1] == 1
        z = est.decision_function(X)
        p = get_loss("logistic").link(torch.as_tensor(z)).numpy()
        assert np.allclose(est.predict_proba(X)[:, 1], p, rtol=0, atol=1e-12)
        assert np.array_equal(est.predict(X), est.classes_[(z > 0).astype(int)])
        sq = cls(**params, loss="squared").fit(X, yb)
        assert sq.network_.forward(torch.as_tensor(X)).shape[1] == 2


def test_history_dict_access_is_deprecated(data):
    X, y, _ = data
    est = cn.ConvexReLURegressor(**TWO).fit(X, y)
    with pytest.warns(FutureWarning, match=r"history_\.objective"):
        assert est.history_["objective"] == est.history_.objective
    with pytest.warns(FutureWarning), pytest.raises(KeyError):
        est.history_["nothing"]


@pytest.mark.parametrize("cls,params,old,new", [
    (cn.ConvexCNNRegressor, CNN, {"intercept": False}, {"fit_intercept": False}),
    (cn.ConvexCNNRegressor, {**CNN, "activation": "relu"}, {"program": "shared"},
     {"method": "shared"}),
    (cn.ConvexParallelReLURegressor, {**PAR, "patterns": "search", "n_starts": 8},
     {"method": "cg", "max_rounds": 1}, {"patterns": "search", "search_rounds": 1}),
    (cn.ConvexParallelReLURegressor, PAR, {"method": "sampled"}, {"patterns": "sample"}),
])
def test_deprecated_aliases_warn_and_fit_as_the_new_name(cls, params, old, new, data):
    X, y, _ = data
    base = {k: v for k, v in params.items() if k not in new}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = cls(**base, **new).fit(X, y)
        with pytest.warns(FutureWarning, match="deprecated") as rec:
            est = cls(**base, **old).fit(X, y)
    assert {str(w.message).split("'")[1] for w in rec if w.category is FutureWarning} == set(old)
    assert np.array_equal(est.predict(X), ref.predict(X))
    assert est.certificate_.primal == ref.certificate_.primal
    changed = dict(zip(old, new))  # old name -> new name, the alias and the new name together
    o, n = next(iter(changed.items()))
    other = {"fit_intercept": False, "method": "circular", "patterns": "enumerate"}[n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        with pytest.raises(ValueError, match=f"pass '{n}' only"):
            cls(**{**base, n: other, o: old[o]}).fit(X, y)


def test_old_files_with_renamed_parameters_load_without_warning(data, tmp_path):
    X, y, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = cn.ConvexCNNRegressor(**CNN).fit(X, y)
    est.save(tmp_path / "m.npz")
    jpath = tmp_path / "m.npz.json"
    meta = json.loads(jpath.read_text())
    meta["params"]["intercept"] = meta["params"].pop("fit_intercept")  # as version 0.1 wrote
    meta["params"]["program"] = meta["params"].pop("method")
    jpath.write_text(json.dumps(meta))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        back = cn.load_estimator(tmp_path / "m.npz")
        assert back.fit_intercept is True and back.method == "cone"
        assert np.array_equal(back.predict(X), est.predict(X))


def test_parallel_fit_intercept_false_and_bad_files(data, tmp_path):
    """fit_intercept=False: no first-layer bias; the certified primal is still the network's
    objective. A broken parallel file gives one ValueError naming it."""
    X, y, _ = data
    est = cn.ConvexParallelReLURegressor(**PAR, fit_intercept=False).fit(X, y)
    assert float(est.network_.first_layer_bias.abs().max()) == 0.0
    obj = est.network_.objective(X, y, PAR["reg"])
    assert obj == pytest.approx(est.certificate_.primal, rel=1e-8)
    est.save(tmp_path / "p.npz")
    jpath = tmp_path / "p.npz.json"
    meta = json.loads(jpath.read_text())
    jpath.write_text(json.dumps({**meta, "n_features_in": 5}))
    with pytest.raises(ValueError, match="p.npz.json.*n_features_in is 5"):
        cn.load_estimator(tmp_path / "p.npz")
    jpath.write_text(json.dumps({**meta, "extra": {"reg": 0.1}}))
    with pytest.raises(ValueError, match="y_1d"):
        cn.load_estimator(tmp_path / "p.npz")
