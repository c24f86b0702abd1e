"""Convex CNN estimators: every program reachable through ``method=``, 2-D input with
``input_shape``, label validation, export to torch, save / load_estimator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from convexnn.networks.cnn import load_cnn

DT = torch.float64


def _data(N=6, C=1, H=4, W=4, c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(N, C, H, W, generator=g, dtype=DT)
    Y = torch.randn(N, c, generator=g, dtype=DT)
    return imgs, Y


def _digits(n=60):
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images[:n] / 16.0, d.target[:n]


def test_classifier_fit_predict_export(tmp_path):
    from convexnn.estimators.cnn import ConvexCNNClassifier

    X, y = _digits(80)
    clf = ConvexCNNClassifier(kernel_size=3, pooling="avg", pool_size=2, reg=1e-2,
                              n_patterns=8, activation="gated", random_state=0, max_iter=300,
                              tol=1e-6).fit(X, y)
    assert clf.score(X, y) > 0.8
    Xt = torch.as_tensor(X[:, None])
    with torch.no_grad():
        out = clf.to_torch()(Xt).numpy()
    assert np.allclose(out, clf.decision_function(X), atol=1e-10)
    Yenc = np.eye(len(clf.classes_))[np.searchsorted(clf.classes_, y)]
    obj = clf.network_.objective(X, Yenc, 1e-2, "cross_entropy")
    assert obj == pytest.approx(clf.certificate_.primal, rel=1e-8)
    assert clf.certificate_.dual <= clf.certificate_.primal
    path = tmp_path / "cnn.npz"
    clf.network_.save(path)
    net2 = load_cnn(path)
    assert np.allclose(net2.forward(X).numpy(), clf.decision_function(X))
    proba = clf.predict_proba(X)
    assert np.allclose(proba.sum(1), 1)


def test_relu_classifier_export_matches():
    from convexnn.estimators.cnn import ConvexCNNClassifier

    X, y = _digits(40)
    clf = ConvexCNNClassifier(kernel_size=3, pooling="max", pool_size=3, reg=1e-1,
                              n_patterns=3, random_state=0, max_iter=100).fit(X, y)
    model = clf.to_torch()
    assert isinstance(model[0], torch.nn.Conv2d) and isinstance(model[2], torch.nn.MaxPool2d)
    with torch.no_grad():
        out = model(torch.as_tensor(X[:, None])).numpy()
    assert np.allclose(out, clf.decision_function(X), atol=1e-10)


def test_regressor_and_errors():
    from convexnn.estimators.cnn import ConvexCNNRegressor

    X, _ = _digits(30)
    y = X.mean((1, 2))
    reg = ConvexCNNRegressor(kernel_size=2, reg=1e-2, n_patterns=4, activation="gated",
                             random_state=0, max_iter=200).fit(X, y)
    assert reg.predict(X).shape == (30,)
    with pytest.raises(ValueError, match="NaN"):
        ConvexCNNRegressor().fit(np.full((3, 4, 4), np.nan), np.zeros(3))
    with pytest.raises(ValueError, match="input_shape"):  # 2-D X needs a matching shape
        ConvexCNNRegressor(input_shape=(3, 3)).fit(np.zeros((3, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="reg"):
        ConvexCNNRegressor(reg=0).fit(X, y)
    with pytest.raises(ValueError, match="pooling"):
        ConvexCNNRegressor(pooling="median").fit(X, y)
    with pytest.raises(ValueError, match="does not fit"):
        ConvexCNNRegressor(kernel_size=9).fit(X, y)
    with pytest.raises(ValueError, match="fitted on"):
        reg.predict(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="method"):
        ConvexCNNRegressor(method="dense").fit(X, y)
    with pytest.raises(ValueError, match="activation='relu'"):
        ConvexCNNRegressor(method="shared", activation="gated").fit(X, y)
    sh = ConvexCNNRegressor(kernel_size=3, reg=1e-2, n_patterns=12, method="shared",
                            pooling="max", pool_size=2, random_state=0, tol=1e-6,
                            max_iter=5000).fit(X, y)
    assert sh.stop_reason_ == "gap_tolerance"
    assert "shared" in sh.certificate_.problem
    with torch.no_grad():
        out = sh.to_torch()(torch.as_tensor(X[:, None])).numpy()[:, 0]
    assert np.allclose(out, sh.predict(X), atol=1e-10)


@pytest.mark.parametrize("program,kw", [
    # enumerate: n_patterns at its default; circular: kernel_size at its default (both unused)
    ("cone", {"pooling": "max", "patterns": "enumerate", "kernel_size": 1, "n_patterns": 100}),
    ("shared", {"pool_size": 2}),
    ("circular", {"n_circular": 2, "kernel_size": 3}),
    ("three_layer", {"n_outer": 2, "n_patterns": 2, "kernel_size": 3}),
])
def test_every_program_reachable_with_flat_input_and_io(program, kw, tmp_path):
    from convexnn import ConvexCNNRegressor, load_estimator

    imgs, Y = _data(N=8, H=4, W=4, seed=2)
    X = imgs.numpy().reshape(8, -1)
    y = Y.numpy()[:, 0]
    args = {"kernel_size": 2, "n_patterns": 4, "reg": 0.1, "random_state": 0, "max_iter": 200,
            "tol": 1e-2, "input_shape": (4, 4), "method": program, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = ConvexCNNRegressor(**args).fit(X, y)
        est_img = ConvexCNNRegressor(**args).fit(imgs.numpy(), y)
    assert np.allclose(est.predict(X), est_img.predict(imgs.numpy()), atol=1e-12)
    assert est.n_features_in_ == 16
    net = est.network_
    obj = net.objective(imgs, Y, 0.1, "squared")
    assert obj == pytest.approx(est.certificate_.primal, rel=1e-8)
    with torch.no_grad():
        out = est.to_torch()(imgs).numpy()[:, 0]
    assert np.allclose(out, est.predict(X), atol=1e-10)
    est.save(tmp_path / "m.npz")
    back = load_estimator(tmp_path / "m.npz")
    assert type(back) is ConvexCNNRegressor and back.get_params() == est.get_params()
    assert np.array_equal(back.predict(X), est.predict(X))
    assert back.certificate_ == est.certificate_
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :5])


def test_classifier_labels_unfitted_and_io(tmp_path):
    from sklearn.exceptions import NotFittedError

    from convexnn import ConvexCNNClassifier, load_estimator

    X, y = _digits(30)
    clf = ConvexCNNClassifier(kernel_size=3, n_patterns=4, reg=0.1, random_state=0,
                              max_iter=50)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    for bad, match in ((np.where(y == 0, np.nan, y.astype(float)), "NaN"),
                       (y + 0.5, "Unknown label type"), (y + 1j, "Complex")):
        with pytest.raises(ValueError, match=match):
            clf.fit(X, bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, np.array(["a", "b", "c"])[y % 3])
    clf.save(tmp_path / "c.npz")
    back = load_estimator(tmp_path / "c.npz")
    assert list(back.classes_) == ["a", "b", "c"]
    assert np.array_equal(back.predict(X), clf.predict(X))
    assert np.allclose(back.predict_proba(X), clf.predict_proba(X))
    (tmp_path / "c.npz.json").write_text('{"class": "ConvexCNNClassifier", "params": {}}')
    with pytest.raises(ValueError, match="c.npz"):
        load_estimator(tmp_path / "c.npz")
