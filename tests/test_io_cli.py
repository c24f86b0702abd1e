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
    ("clf", _set("extra.classes", ["a", "b"]), "3 outputs but a 'logistic' classifier "
                                               "over 2 classes needs 1"),
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
    W2, b = np.load(path)["second_layer_weights"], np.load(path)["output_bias"]
    _rewrite(path, second_layer_weights=np.vstack([W2, W2]), output_bias=np.r_[b, b])
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


# ---------------------------------------------------------------------------------- CLI
def _write_csv(path, n=40, seed=0, labels=("cat", "dog", "emu")):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = np.array(labels)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    lines = ["x1,x2,x3,species"] + [f"{a:.6f},{b:.6f},{c:.6f},{s}" for (a, b, c), s in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return X, y


def _run_error(capsys, argv):
    """Run the CLI expecting a user error: exit 2, one stderr line, nothing on stdout."""
    from convexnn.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert out == "" and err.startswith("convexnn: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    return err


def test_cli_string_labels_with_test_split(tmp_path, capsys):
    from convexnn.cli import main

    data = tmp_path / "d.csv"
    _write_csv(data)
    model = tmp_path / "model.npz"
    rc = main(["fit", str(data), "--target", "species", "--task", "classification",
               "--test-size", "0.25", "--activation", "gated", "--max-time", "5", "--reg", "0.1",
               "--n-patterns", "20", "--tol", "1e-3", "--seed", "1", "--save", str(model)])
    out, err = capsys.readouterr()
    res = json.loads(out)  # stdout is one JSON object (the "saved to" note goes to stderr)
    assert rc == 0 and "saved to" in err
    assert res["metric"] == "accuracy" and res["n_train"] == 30 and res["n_test"] == 10
    assert 0.0 <= res["test_score"] <= 1.0 and res["train_score"] >= 0.8
    assert res["test_score"] * 10 == pytest.approx(round(res["test_score"] * 10))
    assert "score" not in res and res["scope"] == "sampled patterns"
    est = cn.load_estimator(model)
    assert list(est.classes_) == ["cat", "dog", "emu"]  # stratified: every class trained on
    assert est.reg == 0.1 and est.n_patterns == 20 and est.activation == "gated"


def test_cli_defaults_reg_and_patterns_to_the_estimator(tmp_path, capsys, monkeypatch):
    import inspect

    import convexnn.estimators as est_mod

    seen = {}

    class Spy(est_mod.ConvexReLURegressor):
        def fit(self, X, y):
            seen.update(reg=self.reg, n_patterns=self.n_patterns, shape=X.shape)
            raise ValueError("spy: not fitting")

    monkeypatch.setattr(est_mod, "ConvexReLURegressor", Spy)
    data = tmp_path / "r.csv"
    data.write_text("a,b,y\n1,2,3.5\n4,5,6\n7,8,9.25\n")
    err = _run_error(capsys, ["fit", str(data), "--target", "y"])
    assert "spy: not fitting" in err and str(data) in err  # a fit ValueError: one line
    defaults = inspect.signature(est_mod.ConvexReLURegressor).parameters
    assert seen == {"reg": defaults["reg"].default,
                    "n_patterns": defaults["n_patterns"].default, "shape": (3, 2)}
    _run_error(capsys, ["fit", str(data), "--target", "y", "--reg", "0.5", "--n-patterns", "7"])
    assert seen["reg"] == 0.5 and seen["n_patterns"] == 7


@pytest.mark.parametrize("content,argv,match", [
    (None, ["--target", "species"], "no such file"),
    ("x1,x2,species\n1,2,a\n", ["--target", "label"], "target column 'label' not found"),
    ("x1,x2,species\n1,oops,a\n3,4,b\n", ["--target", "species", "--task", "classification"],
     "feature column 'x2' has a non-numeric value 'oops' at line 2"),
    ("x1,x2,species\n1,,a\n", ["--target", "species"], "feature column 'x2' has a missing"),
    ("x1,x2,species\n1,nan,a\n", ["--target", "species"], "non-finite value 'nan'"),
    ("x1,x2,species\n1,2,a\n3,4\n", ["--target", "species"], "line 3 has 2 fields"),
    ("x1,x2,species\n1,2,a\n", ["--target", "species"], "target column 'species' has a non-num"),
    ("", ["--target", "species"], "empty file"),
    ("x1,x1,species\n1,2,a\n", ["--target", "species"], "duplicate column names"),
    ("x1,x2,species\n", ["--target", "species"], "no data rows"),
    ("x1,x2,species\n1,2,a\n3,4,b\n", ["--target", "species", "--task", "classification",
                                       "--test-size", "0.5"], "cannot split"),
    ("x1,species\n1,2\n", ["--target", "species", "--test-size", "1"], "fraction in"),
    ("x1,species\n1,2\n", ["--target", "species", "--loss", "logistic"], "needs --task class"),
    ("x1,species\n1,2\n", ["--target", "species", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_cli_user_errors_are_one_line(tmp_path, capsys, content, argv, match):
    data = tmp_path / "bad.csv"
    if content is not None:
        data.write_text(content)
    err = _run_error(capsys, ["fit", str(data), *argv])
    assert re.search(match, err), err
    if "line" in match or "file" in match or "column" in match:
        assert str(data) in err


def test_cli_help_lists_every_option(capsys):
    from convexnn.cli import build_parser, main

    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    actions = [a for a in fit._actions if a.dest != "help"]
    assert {a.dest for a in actions} >= {"data", "target", "task", "loss", "reg", "n_patterns",
                                         "activation", "tol", "max_time", "test_size", "seed",
                                         "save"}
    for a in actions:
        assert a.help and " ".join(a.help.split()[:3]) in text, a.dest
        assert all(opt in text for opt in a.option_strings)


# -------------------------------------------------------------------------- distributed
@pytest.fixture
def one_rank_group(tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable or already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_distributed_accepts_numpy(one_rank_group):
    from convexnn.distributed import fit_gated_distributed

    rng = np.random.default_rng(0)
    X = rng.standard_normal((25, 3))
    y = np.sin(X[:, 0]) + 0.2 * X[:, 1]
    G = rng.standard_normal((4, 8))
    kw = {"gates": G, "tol": 1e-6, "max_iter": 3000}
    net, cert, _ = fit_gated_distributed(X, y, 0.1, **kw)
    ref, cert_t, _ = fit_gated_distributed(torch.tensor(X), torch.tensor(y), 0.1, **kw)
    assert net.first_layer_weights.dtype == torch.float64
    assert torch.equal(net.first_layer_weights, ref.first_layer_weights)
    assert cert.primal == cert_t.primal and cert.relative_gap <= 1e-6
    # a float32 tensor keeps its dtype, the numpy Y follows it
    net32, _, _ = fit_gated_distributed(torch.tensor(X, dtype=torch.float32), y[:, None], 0.1,
                                        **{**kw, "tol": 1e-4})
    assert net32.first_layer_weights.dtype == torch.float32


@pytest.mark.parametrize("X,y,match", [
    (np.ones(5), np.ones(5), r"X must be a non-empty \(n, d\)"),
    (np.ones((5, 2)), np.ones(4), "X has 5 rows but Y has 4"),
    (np.ones((5, 2)), np.ones((5, 1, 1)), r"Y must be \(n,\) or \(n, c\)"),
    (np.array([["a", "b"]] * 5), np.ones(5), "X must be a numeric array"),
    (np.full((5, 2), np.nan), np.ones(5), "NaN or infinity"),
])
def test_distributed_input_errors(one_rank_group, X, y, match):
    from convexnn.distributed import fit_gated_distributed

    with pytest.raises(ValueError, match=match):
        fit_gated_distributed(X, y, 0.1, max_iter=10)
