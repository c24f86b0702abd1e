"""Model-file checks (convexnn.model_io), the command line, numpy input to the distributed fit."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import convexnn as cn
from convexnn.networks import TwoLayerNetwork, load_network

FAST = {"n_patterns": 10, "max_iter": 300, "tol": 1e-4, "search_rounds": 0, "random_state": 0}


def _net(activation="relu", frame=True, seed=0, c=2):
    g = torch.Generator().manual_seed(seed)
    m, d = 5, 3

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    gates = {"gate_weights": r(m, d), "gate_bias": r(m)} if activation == "gated" else {}
    extra = {"output_bias": r(c), "input_offset": r(d), "input_scale": r(d).abs() + 0.5} \
        if frame else {}
    return TwoLayerNetwork(r(m, d), r(m), r(c, m), activation, **gates, **extra)


def _rewrite(path, **changes):
    """Rewrite the npz at ``path`` with entries replaced (None deletes one)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k, None)
        else:
            arrays[k] = v
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _meta(**kw):
    meta = {"format": "convexnn.TwoLayerNetwork", "version": 1, "activation": "relu", **kw}
    return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


def _raises_naming(path, match, fn=load_network):
    with pytest.raises(ValueError, match=match) as info:
        fn(path)
    assert str(path) in str(info.value)
    return info.value


# ------------------------------------------------------------------------------ networks
def test_worktree_module_is_tested():
    assert hasattr(__import__("convexnn.model_io").model_io, "read_network_file")


@pytest.mark.parametrize("activation", ["relu", "gated"])
def test_network_roundtrip_with_frame_and_output_bias(tmp_path, activation):
    net = _net(activation)
    path = tmp_path / "net.npz"
    net.save(path)
    back = load_network(path)
    X = torch.randn(20, 3, dtype=torch.float64)
    assert torch.equal(back.forward(X), net.forward(X))
    assert torch.equal(back.penalty(), net.penalty())
    for name in ("output_bias", "input_offset", "input_scale", "gate_weights"):
        a, b = getattr(net, name), getattr(back, name)
        assert (a is None and b is None) or torch.equal(a, b)
    # the frame matters: without it the penalty differs
    assert not torch.equal(_net(activation, frame=False).penalty(), back.penalty())


@pytest.mark.parametrize("cut", [0, 20, 0.5, -40, -1])
def test_truncated_file(tmp_path, cut):
    path = tmp_path / "net.npz"
    _net().save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:cut if isinstance(cut, int) else int(len(raw) * cut)])
    _raises_naming(path, "not a readable convexnn model file")


def test_missing_and_foreign_files(tmp_path):
    err = _raises_naming(tmp_path / "none.npz", "no such model file")
    assert isinstance(err, FileNotFoundError)  # and a ValueError, like every other problem
    np.save(tmp_path / "a.npy", np.ones(3))
    _raises_naming(tmp_path / "a.npy", "not a readable")
    (tmp_path / "p.npz").write_bytes(b"\x80\x04K\x01.")  # a pickle: never unpickled
    _raises_naming(tmp_path / "p.npz", "not a readable")


@pytest.mark.parametrize("changes,match", [
    ({"__meta__": None}, "no __meta__"),
    ({"__meta__": _meta(format="convexnn.ParallelReLUNetwork")}, "format tag"),
    ({"__meta__": _meta(version=99)}, "version"),
    ({"__meta__": _meta(activation="tanh")}, "activation"),
    ({"__meta__": np.frombuffer(b"{not json", dtype=np.uint8)}, "JSON"),
    ({"first_layer_bias": None}, r"missing arrays \['first_layer_bias'\]"),
    ({"extra_weights": np.ones(3)}, "unexpected arrays"),
    ({"first_layer_bias": np.ones(4)}, r"first_layer_bias must have shape \(5,\)"),
    ({"second_layer_weights": np.ones((2, 4))}, r"second_layer_weights must be \(c, 5\)"),
    ({"first_layer_weights": np.ones(15)}, r"first_layer_weights must be \(m, d\)"),
    ({"output_bias": np.ones(3)}, r"output_bias must have shape \(2,\)"),
    ({"input_offset": np.ones(2)}, r"input_offset must have shape \(3,\)"),
    ({"input_scale": np.ones((3, 1))}, r"input_scale must have shape \(3,\)"),
    ({"first_layer_bias": np.ones(5, dtype=np.int64)}, "float32/float64"),
    ({"first_layer_bias": np.ones(5, dtype=np.float32)}, "one float32/float64 dtype"),
])
def test_inconsistent_network_file(tmp_path, changes, match):
    path = tmp_path / "net.npz"
    _net().save(path)
    _rewrite(path, **changes)
    _raises_naming(path, match)


def test_gated_network_needs_gates(tmp_path):
    path = tmp_path / "net.npz"
    _net("gated").save(path)
    _rewrite(path, gate_bias=None)
    _raises_naming(path, r"missing arrays \['gate_bias'\]")
    _net("gated").save(path)
    _rewrite(path, gate_weights=np.ones((5, 2)))
    _raises_naming(path, r"gate_weights must have shape \(5, 3\)")


@pytest.mark.parametrize("name", ["first_layer_weights", "second_layer_weights", "input_scale"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights(tmp_path, name, bad):
    path = tmp_path / "net.npz"
    net = _net()
    net.save(path)
    a = getattr(net, name).numpy().copy()
    a.flat[1] = bad
    _rewrite(path, **{name: a})
    _raises_naming(path, rf"non-finite .* \['{name}'\]")


# ---------------------------------------------------------------------------- estimators
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fitted classifier (3 string classes, gated) and regressor (1-D y), saved."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    labels = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    clf = cn.ConvexReLUClassifier(reg=0.1, activation="gated", **FAST).fit(X, labels)
    reg = cn.ConvexReLURegressor(reg=0.1, activation="gated", **FAST).fit(X, X[:, 0] ** 2)
    d = tmp_path_factory.mktemp("est")
    clf.save(d / "clf.npz")
    reg.save(d / "reg.npz")
    return X, clf, reg, d


def _copy_est(saved, tmp_path, kind, edit=None):
    """Copy a saved estimator into tmp_path, applying ``edit(meta)`` to its JSON."""
    src = saved[3] / f"{kind}.npz"
    dst = tmp_path / f"{kind}.npz"
    dst.write_bytes(src.read_bytes())
    meta = json.loads((saved[3] / f"{kind}.npz.json").read_text())
    if edit is not None:
        edit(meta)
    (tmp_path / f"{kind}.npz.json").write_text(json.dumps(meta))
    return dst


def test_estimator_roundtrip(saved, tmp_path):
    X, clf, reg, _ = saved
    for kind, est in (("clf", clf), ("reg", reg)):
        back = cn.load_estimator(_copy_est(saved, tmp_path, kind))
        assert type(back) is type(est)
        assert np.array_equal(back.predict(X), est.predict(X))
    assert list(cn.load_estimator(_copy_est(saved, tmp_path, "clf")).classes_) == ["a", "b", "c"]


def _set(key, value):
    def edit(meta):
        target = meta
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return edit


def _relabel(cls, drop_loss=False):
    def edit(meta):
        meta["class"] = cls
        if drop_loss:
            meta["params"].pop("loss")
    return edit


@pytest.mark.parametrize("kind,edit,match", [
    ("clf", _set("class", "ConvexCNNClassifier"), "unknown estimator class 'ConvexCNNClassifier'"),
    ("reg", _relabel("ConvexReLUClassifier"), "extra.classes.*regressor's file"),
    ("clf", _relabel("ConvexReLURegressor", drop_loss=True), "extra.y_1d.*classifier's file"),
    ("clf", _relabel("ConvexReLURegressor"), r"params \['loss'\] are not parameters"),
    ("clf", _set("extra.classes", ["a", "b"]), "3 outputs but a 'cross_entropy' classifier "
                                               "over 2 classes needs 2"),
    ("clf", _set("extra.classes", ["a"]), ">= 2 labels"),
    ("clf", _set("extra.classes", ["c", "b", "a"]), "distinct and sorted"),
    ("clf", _set("params.loss", "logistic"), "logistic' is binary"),
    ("clf", _set("extra.classes", None), "extra.classes"),
    ("reg", _set("extra.y_1d", None), "extra.y_1d"),
    ("reg", _set("n_features_in", 4), "n_features_in is 4 but the network has 3"),
    ("reg", _set("n_features_in", "3"), "n_features_in is '3'"),
    ("reg", _set("params.not_a_param", 1), r"params \['not_a_param'\]"),
    ("reg", _set("certificate.primal", None), r"missing \['primal'\]"),
    ("reg", _set("certificate.gap", "small"), "'gap' has the wrong type"),
    ("reg", _set("extra", []), "'extra' must be a JSON object"),
    ("reg", _set("params", None), r"lacks \['params'\]"),
])
def test_inconsistent_estimator_metadata(saved, tmp_path, kind, edit, match):
    path = _copy_est(saved, tmp_path, kind, edit)
    _raises_naming(path, match, cn.load_estimator)


def test_regressor_y_1d_needs_one_output(saved, tmp_path):
    path = _copy_est(saved, tmp_path, "reg")
    W2 = np.load(path)["second_layer_weights"]
    _rewrite(path, second_layer_weights=np.vstack([W2, W2]))
    _raises_naming(path, "y_1d is true but the network has 2 outputs", cn.load_estimator)


def test_missing_or_broken_json(saved, tmp_path):
    path = _copy_est(saved, tmp_path, "reg")
    (tmp_path / "reg.npz.json").unlink()
    err = _raises_naming(path, r"metadata file .*reg\.npz\.json not found", cn.load_estimator)
    assert isinstance(err, FileNotFoundError)
    (tmp_path / "reg.npz.json").write_text('{"class": "ConvexReLURegressor", ')
    _raises_naming(path, "not valid JSON", cn.load_estimator)
    (tmp_path / "reg.npz.json").write_text("[1, 2]")
    _raises_naming(path, "must be a JSON object", cn.load_estimator)


def test_estimator_with_broken_network_file(saved, tmp_path):
    path = _copy_est(saved, tmp_path, "clf")
    path.write_bytes(path.read_bytes()[:100])
    err = _raises_naming(path, "not a readable convexnn model file", cn.load_estimator)
    assert re.search(r"BadZipFile|EOFError", str(err))
