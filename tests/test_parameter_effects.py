"""Every public parameter of every estimator has an observable effect or is rejected (issue 18).

For each estimator a dict ``checks`` maps every name of ``get_params()`` to a check that fits
with that parameter away from its default and observes the effect (other predictions, a fitted
attribute, a warning, printed progress, a ValueError naming it); ``set(checks) ==
set(get_params())`` makes a new parameter without a check fail. Where a parameter is not read
by some configuration, its check also asserts that setting it there raises a ValueError naming
it (never silently ignored). The two-layer regressor's own list is
``tests/test_defaults.py::test_every_parameter_has_an_effect_or_is_rejected``. The CNN and
parallel classifiers' full lists run in the slow profile (their regressors' in the fast one).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import convexnn as cn

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# ------------------------------------------------------------------------------ helpers
def _run(checks: dict, est) -> None:
    """Every check passes (all run; the failures are listed together)."""
    assert set(checks) == set(est.get_params()), set(checks) ^ set(est.get_params())
    failed = []
    for name, check in checks.items():
        try:
            ok = check()
        except (Exception, pytest.fail.Exception) as err:
            ok = f"{type(err).__name__}: {str(err)[:200]}"
        if ok is not True:
            failed.append(f"{name}: {ok}")
    assert not failed, "\n".join(failed)


def _memo(make, base_kw: dict):
    """``fit(**kw)`` = ``make(**{**base_kw, **kw})``, each distinct configuration fitted once
    (the checks share fits: keep the file fast)."""
    cache: dict = {}

    def fit(**kw):
        params = {**base_kw, **kw}
        key = repr(sorted(params.items()))
        if key not in cache:
            cache[key] = make(**params)
        return cache[key]

    return fit


def _outputs(est, X) -> np.ndarray:
    return est.decision_function(X) if hasattr(est, "classes_") else est.predict(X)


def _differs(a, b, X) -> bool:
    return not np.allclose(_outputs(a, X), _outputs(b, X), rtol=1e-9, atol=1e-12)


def _same(a, b, X) -> bool:
    return np.allclose(_outputs(a, X), _outputs(b, X), rtol=1e-12, atol=1e-12)


def _rejects(make, name: str, **kw) -> bool:
    """``make(**kw)`` raises a ValueError whose message names ``name``."""
    with pytest.raises(ValueError, match=name):
        make(**kw)
    return True


def _warned(f, category, text: str):
    """(result of f(), whether a ``category`` warning containing ``text`` was issued)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = f()
    return out, any(issubclass(w.category, category) and text in str(w.message) for w in rec)


def _alias(fit, old: str, old_value, new: str, new_value, X) -> bool:
    """A deprecated alias warns (FutureWarning naming it) and acts as the new name."""
    est, warned = _warned(lambda: fit(**{old: old_value}), FutureWarning, repr(old))
    return warned and _same(est, fit(**{new: new_value}), X)


def _prints(capsys, f, text: str) -> bool:
    capsys.readouterr()
    f()
    return text in capsys.readouterr().out


# ----------------------------------------------------------- two-layer classifier
def test_two_layer_classifier_parameters(capsys):
    """The classifier shares the regressor's fitting code (``_ConvexTwoLayer._fit``), whose
    every parameter test_defaults checks; here: its parameter list is the regressor's plus
    ``loss``, each loss fits a different model, and the classifier path reads ``warn_gap``,
    ``reg``, ``fit_intercept``, ``activation`` and ``random_state``."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    base_kw = {"random_state": 0, "reg": 0.5, "max_time": 5.0, "warn_gap": None}

    def fit(**kw):
        return cn.ConvexReLUClassifier(**{**base_kw, **kw}).fit(X, y)

    base = fit()
    reg_params = set(cn.ConvexReLURegressor().get_params())
    assert set(base.get_params()) == reg_params | {"loss"}
    assert base._loss_name() == "logistic" and base.network_.second_layer_weights.shape[0] == 1
    ce, sq = fit(loss="cross_entropy"), fit(loss="squared")
    assert ce.network_.second_layer_weights.shape[0] == 2
    assert _differs(ce, sq, X) and _same(fit(loss="logistic"), base, X)
    assert not np.allclose(ce.predict_proba(X), base.predict_proba(X))
    assert _rejects(fit, "loss", loss="hinge")
    assert not _warned(fit, ConvergenceWarning, "warn_gap")[1]
    assert _warned(lambda: fit(warn_gap=0.0), ConvergenceWarning, "warn_gap")[1]
    assert _differs(fit(reg=5.0), base, X)
    assert fit(fit_intercept=False).network_.output_bias is None
    assert fit(activation="gated", search_rounds=0).network_.activation == "gated"
    assert _differs(fit(random_state=1), base, X)
    assert _prints(capsys, lambda: fit(verbose=1), "descent")



@pytest.mark.parametrize("params,name", [
    ({"max_iter": 5}, "max_iter"),  # the default ReLU path (dual-guided descent)
    ({"method": "relaxation", "tol": 1e-3}, "tol"),
    ({"method": "relaxation", "max_iter": 5}, "max_iter"),
    ({"method": "relaxation", "max_time": 5.0}, "max_time"),
    ({"method": "svd", "verbose": 1}, "verbose"),
])
def test_two_layer_rejects_parameters_its_path_ignores(params, name):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 2))
    with pytest.raises(ValueError, match=f"{name}=.* is not used"):
        cn.ConvexReLURegressor(reg=0.1, **params).fit(X, X[:, 0])

# ------------------------------------------------------------------------------- CNN
def _digits(n: int = 16):
    d = load_digits()
    X = d.images[:n] / 16.0
    y_reg = X.reshape(n, -1) @ np.random.default_rng(0).standard_normal(64) * 0.1
    return X, y_reg, d.target[:n] % 3


# the classifier's list is the same code path plus ``loss``; it costs twice the regressor's
@pytest.mark.parametrize("kind", ["regressor", pytest.param("classifier", marks=pytest.mark.slow)])
def test_cnn_parameters(kind, capsys):
    X, y_reg, y_cls = _digits()
    cls, y = ((cn.ConvexCNNRegressor, y_reg) if kind == "regressor"
              else (cn.ConvexCNNClassifier, y_cls))
    base_kw = {"kernel_size": 3, "reg": 0.1, "n_patterns": 4, "random_state": 0,
               "max_iter": 60, "tol": 1e-8}

    fit = _memo(lambda **kw: cls(**kw).fit(X, y), base_kw)

    base = fit()
    assert base.n_iter_ > 10  # so that tol and max_iter can show
    enum = {"patterns": "enumerate", "kernel_size": 1, "n_patterns": 100}  # its default
    circ = fit(method="circular")
    three = {"method": "three_layer", "n_outer": 2, "max_iter": 3, "n_patterns": 2}
    flat = X.reshape(len(X), -1)
    if kind == "regressor":
        loss_check = _rejects(fit, "loss", loss="cross_entropy")
    else:
        loss_check = (_differs(fit(loss="squared"), base, X)
                      and _rejects(fit, "loss", loss="logistic"))
    checks = {
        "activation": lambda: fit(activation="gated").network_.activation == "gated"
        and _rejects(fit, "activation", activation="gated", method="shared"),
        "device": lambda: fit(device="cpu").network_.weight.device.type == "cpu"
        and _rejects(fit, "device", device="gpu"),
        # squared loss: float32 with cross-entropy crashes (test_cnn_float32_cross_entropy)
        "dtype": lambda: fit(dtype="float32", loss="squared").network_.weight.dtype
        == torch.float32,
        "fit_intercept": lambda: _differs(fit(fit_intercept=False), base, X)
        and _rejects(fit, "fit_intercept", fit_intercept=False, method="circular"),
        "gate_kind": lambda: _differs(fit(gate_kind="data"), base, X)
        and _rejects(fit, "gate_kind", gate_kind="data", **enum),
        # 2-D X with input_shape=(8, 8) is the same model as the images; images must match it
        "input_shape": lambda: _same(cls(**base_kw, input_shape=(8, 8)).fit(flat, y), base, X)
        and _rejects(fit, "input_shape", input_shape=(4, 16)),
        "intercept": lambda: _alias(fit, "intercept", False, "fit_intercept", False, X),
        "kernel_size": lambda: fit(kernel_size=2).network_.kernel_size == 2
        and _rejects(fit, "kernel_size", kernel_size=2, method="circular"),
        "loss": lambda: loss_check,
        "max_iter": lambda: fit(max_iter=7).n_iter_ == 7
        and _rejects(fit, "max_iter", solver="cvxpy"),
        "max_time": lambda: fit(max_time=1e-4).stop_reason_ == "max_time"
        and _rejects(fit, "max_time", solver="cvxpy", max_iter=2000, max_time=5.0),
        "method": lambda: "circular" in circ.certificate_.problem
        and "circular" not in base.certificate_.problem,
        "n_circular": lambda: "(2 circular layer(s))" in fit(
            method="circular", n_circular=2).certificate_.problem
        and _rejects(fit, "n_circular", n_circular=2),
        "n_outer": lambda: _differs(fit(**{**three, "n_outer": 3}), fit(**three), X)
        and _rejects(fit, "n_outer", n_outer=3),
        "n_patterns": lambda: fit(n_patterns=2).n_patterns_ < base.n_patterns_
        and _rejects(fit, "n_patterns", **{**enum, "n_patterns": 2}),
        "padding": lambda: fit(padding=1).network_.padding == 1
        and _differs(fit(padding=1), base, X)
        and _rejects(fit, "padding", padding=1, method="circular"),
        "patterns": lambda: fit(**enum).n_patterns_
        != fit(kernel_size=1).n_patterns_,
        "pool_size": lambda: _differs(fit(pool_size=2), base, X)
        and _rejects(fit, "pool_size", pool_size=2, pooling="none")
        and _rejects(fit, "pool_size", **three, pool_size=2),
        "pooling": lambda: _differs(fit(pooling="max"), base, X)
        and _rejects(fit, "pooling", pooling="max", method="circular"),
        "program": lambda: _alias(fit, "program", "shared", "method", "shared", X),
        "random_state": lambda: _differs(fit(random_state=1), base, X),
        "reg": lambda: _differs(fit(reg=10.0), base, X),
        # gated: CVXPY's Clarabel fails on the ReLU cone program with cross-entropy (reported)
        "solver": lambda: fit(solver="cvxpy", activation="gated", max_iter=2000).stop_reason_
        == "converged" and fit(activation="gated").stop_reason_ != "converged"
        and _rejects(fit, "solver", solver="fista"),
        "stride": lambda: fit(stride=2).network_.stride == 2
        and _differs(fit(stride=2), base, X)
        and _rejects(fit, "stride", stride=2, method="circular"),
        "tol": lambda: fit(tol=0.5).n_iter_ < base.n_iter_,
        "verbose": lambda: _prints(capsys, lambda: fit(verbose=1), "it"),
    }
    _run(checks, base)


def test_cnn_float32_cross_entropy():
    """float32 cross-entropy: the dual candidates stay in the conjugate's domain (the domain
    test allows float32 rounding), so the fit certifies instead of crashing."""
    X, _, y = _digits()
    est = cn.ConvexCNNClassifier(kernel_size=3, reg=0.1, n_patterns=2, random_state=0,
                                 max_iter=10, dtype="float32").fit(X, y)
    assert est.network_.weight.dtype == torch.float32
    cert = est.certificate_
    assert np.isfinite(cert.dual) and cert.dual <= cert.primal * (1 + 1e-5)


# -------------------------------------------------------------------------- parallel
def _parallel_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y_reg = np.maximum(X @ np.array([1.0, -1.0, 0.5]), 0) + 0.05 * rng.standard_normal(30)
    return X, y_reg, (X[:, 0] * X[:, 1] > 0).astype(int)


# the classifier's list is the same code path plus ``loss``; it costs twice the regressor's
@pytest.mark.parametrize("kind", ["regressor", pytest.param("classifier", marks=pytest.mark.slow)])
def test_parallel_parameters(kind, capsys):
    X, y_reg, y_cls = _parallel_data()
    cls, y = ((cn.ConvexParallelReLURegressor, y_reg) if kind == "regressor"
              else (cn.ConvexParallelReLUClassifier, y_cls))
    base_kw = {"reg": 0.1, "n_patterns": 4, "random_state": 0, "patterns": "sample"}
    search = {"patterns": "search", "search_rounds": 1, "n_starts": 4, "max_new": 4}
    enum = {"patterns": "enumerate", "rank": 1, "depth": 2, "n_patterns": 8}  # its default

    fit = _memo(lambda **kw: cls(**kw).fit(X, y), base_kw)
    base, searched = fit(), fit(**search)
    if kind == "regressor":
        loss_check = _rejects(fit, "loss", loss="logistic")
    else:
        ce, sq = fit(loss="cross_entropy"), fit(loss="squared")
        loss_check = (base.loss_ == "logistic" and ce.network_.output_weights.shape[1] == 2
                      and _differs(ce, sq, X) and _rejects(fit, "loss", loss="hinge"))
    checks = {
        "depth": lambda: fit(depth=2).network_.depth == 2,
        "device": lambda: fit(device="cpu").network_.first_layer_weights.device.type == "cpu"
        and _rejects(fit, "device", device="gpu"),
        "dtype": lambda: fit(dtype="float32").network_.first_layer_weights.dtype
        == torch.float32,
        "fit_intercept": lambda: _differs(fit(fit_intercept=False), base, X),
        "gate_kind": lambda: _differs(fit(gate_kind="data"), base, X)
        and _rejects(fit, "gate_kind", gate_kind="data", **enum),
        "loss": lambda: loss_check,
        "max_blocks": lambda: _rejects(fit, "max_blocks", max_blocks=2, **enum)
        and _rejects(fit, "max_blocks", max_blocks=2),
        "max_iter": lambda: fit(solver="al", max_iter=5).n_iter_ == 5
        and fit(solver="al", max_iter=9).n_iter_ == 9
        and _rejects(fit, "max_iter", max_iter=5),
        "max_new": lambda: fit(**{**search, "max_new": 1}).fit_info_["rounds"][1]["n_blocks"]
        < searched.fit_info_["rounds"][1]["n_blocks"]
        and _rejects(fit, "max_new", max_new=1),
        "max_rounds": lambda: _alias(lambda **kw: fit(**{**search, "search_rounds": 4, **kw}),
                                     "max_rounds", 0, "search_rounds", 0, X),
        "max_time": lambda: fit(max_time=1e-4).stop_reason_ == "max_time"
        and _rejects(fit, "max_time", solver="cvxpy", max_time=5.0),
        "method": lambda: _alias(lambda **kw: fit(**{**base_kw, "patterns": "search", **kw}),
                                 "method", "sampled", "patterns", "sample", X),
        "n_patterns": lambda: fit(n_patterns=2).fit_info_["n_sampled_blocks"]
        < base.fit_info_["n_sampled_blocks"]
        and _rejects(fit, "n_patterns", **{**enum, "n_patterns": 2}),
        "n_starts": lambda: fit(**{**search, "n_starts": 1}).fit_info_["pricing"][
            "n_starts_per_direction"] == 1
        and fit(reg=None, n_starts=1).reg_ != fit(reg=None).reg_
        and _rejects(fit, "n_starts", n_starts=1),
        "patterns": lambda: fit(**enum).certificate_.scope == "global"
        and base.certificate_.scope != "global",
        "random_state": lambda: _differs(fit(random_state=1), base, X),
        "rank": lambda: fit(rank=2).fit_info_["approximation"]["rank"] == 2
        and "approximation" not in base.fit_info_,
        "reg": lambda: _differs(fit(reg=1.0), base, X) and fit(reg=None).reg_ != 0.1,
        "search_rounds": lambda: fit(**{**search, "search_rounds": 0}).fit_info_["n_rounds"]
        < searched.fit_info_["n_rounds"]
        and _rejects(fit, "search_rounds", search_rounds=1),
        "solver": lambda: fit(solver="cvxpy").stop_reason_ == "converged"
        and base.stop_reason_ != "converged",
        "tol": lambda: fit(tol=1e-2).n_iter_ < base.n_iter_
        and _rejects(fit, "tol", solver="cvxpy", tol=1e-2),
        "verbose": lambda: _prints(capsys, lambda: fit(verbose=1), "objective"),
        "width": lambda: fit(width=3).network_.first_layer_weights.shape[1] == 3
        and _rejects(fit, "width", width=3, depth=2),
    }
    _run(checks, base)


# ------------------------------------------------- parameters their configuration ignores
_CNN_UNUSED = [
    ({"method": "circular", "kernel_size": 2}, "kernel_size"),
    ({"method": "circular", "stride": 2}, "stride"),
    ({"method": "circular", "padding": 1}, "padding"),
    ({"method": "circular", "pooling": "max"}, "pooling"),
    ({"method": "circular", "fit_intercept": False}, "fit_intercept"),
    ({"method": "circular", "intercept": False}, "fit_intercept .given as 'intercept'"),
    ({"method": "three_layer", "pool_size": 2}, "pool_size"),
    ({"n_circular": 2}, "n_circular"), ({"n_outer": 3}, "n_outer"),
    ({"pooling": "none", "pool_size": 2}, "pool_size"),
    ({"patterns": "enumerate", "n_patterns": 5}, "n_patterns"),
    ({"patterns": "enumerate", "gate_kind": "data"}, "gate_kind"),
    ({"solver": "cvxpy", "max_iter": 5}, "max_iter"),
    ({"solver": "cvxpy", "max_time": 5.0}, "max_time"),
    ({"input_shape": (4, 16)}, "input_shape"),
]
_PARALLEL_UNUSED = [
    ({"patterns": "sample", "search_rounds": 1}, "search_rounds"),
    ({"patterns": "sample", "max_rounds": 1}, "search_rounds .given as 'max_rounds'"),
    ({"patterns": "sample", "max_new": 2}, "max_new"),
    ({"patterns": "sample", "reg": 0.1, "n_starts": 2}, "n_starts"),
    ({"max_blocks": 5}, "max_blocks"),
    ({"patterns": "enumerate", "n_patterns": 5}, "n_patterns"),
    ({"patterns": "enumerate", "gate_kind": "data"}, "gate_kind"),
    ({"max_iter": 5}, "max_iter"), ({"patterns": "sample", "max_iter": 5}, "max_iter"),
    ({"depth": 2, "width": 3}, "width"),
    ({"solver": "cvxpy", "tol": 1e-3}, "tol"),
    ({"solver": "cvxpy", "patterns": "sample", "max_time": 5.0}, "max_time"),
]


@pytest.mark.parametrize("params,name", _CNN_UNUSED)
def test_cnn_rejects_parameters_its_configuration_ignores(params, name):
    X, y, _ = _digits(4)
    with pytest.raises(ValueError, match=f"{name}.*(not used|does not match)"):
        cn.ConvexCNNRegressor(reg=0.1, **params).fit(X, y)


@pytest.mark.parametrize("params,name", _PARALLEL_UNUSED)
def test_parallel_rejects_parameters_its_configuration_ignores(params, name):
    X, y, _ = _parallel_data()
    with pytest.raises(ValueError, match=f"{name}.*not used"):
        cn.ConvexParallelReLURegressor(**params).fit(X, y)


def test_cv_estimators_every_parameter_has_an_effect(capsys):
    """ConvexReLU*CV: each parameter, set away from its default, changes the fit."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = np.maximum(X @ [1.0, -1.0], 0) + 0.1 * rng.standard_normal(40)
    base_kw = {"n_regs": 2, "cv": 2, "random_state": 0}

    def fit(**kw):
        return cn.ConvexReLURegressorCV(**{**base_kw, **kw}).fit(X, y)

    base = fit()
    checks = {
        "regs": lambda: np.allclose(np.sort(fit(regs=[2.0, 0.5]).regs_), [0.5, 2.0]),
        "n_regs": lambda: fit(n_regs=3).regs_.shape == (3,),
        "reg_ratio": lambda: fit(reg_ratio=0.5).regs_.min() / fit(reg_ratio=0.5).regs_.max()
        == pytest.approx(0.5),
        "cv": lambda: fit(cv=3).cv_scores_.shape[0] == 3,
        "fit_intercept": lambda: fit(fit_intercept=False).network_.output_bias is None,
        "n_patterns": lambda: fit(n_patterns=3).best_estimator_.n_patterns == 3,
        "max_time": lambda: fit(max_time=1e-3).stop_reason_ == "max_time",
        "random_state": lambda: not np.allclose(fit(random_state=1).predict(X), base.predict(X)),
        "verbose": lambda: (fit(verbose=1), len(capsys.readouterr().out) > 0)[1],
    }
    assert set(checks) == set(base.get_params())
    failed = [name for name, check in checks.items() if not check()]
    assert failed == []
    clf_kw = {"n_regs": 2, "cv": 2, "random_state": 0}
    yc = (y > np.median(y)).astype(int)
    ce = cn.ConvexReLUClassifierCV(loss="cross_entropy", **clf_kw).fit(X, yc)
    lg = cn.ConvexReLUClassifierCV(**clf_kw).fit(X, yc)
    assert set(lg.get_params()) == set(base.get_params()) | {"loss"}
    assert ce.network_.second_layer_weights.shape[0] == 2
    assert lg.network_.second_layer_weights.shape[0] == 1


class _ThirdPartyError(Exception):
    """Stands for a backend's own exception type (e.g. cvxpy's SolverError)."""


@pytest.mark.parametrize("module,name,make", [
    ("two_layer", "fit_two_layer", lambda: cn.ConvexReLURegressor(solver="cvxpy", reg=0.1)),
    ("cnn", "solve", lambda: cn.ConvexCNNRegressor(kernel_size=3, reg=0.1, n_patterns=2,
                                                   solver="cvxpy", input_shape=(3, 3))),
    ("parallel", "fit_parallel", lambda: cn.ConvexParallelReLURegressor(
        reg=0.1, n_patterns=4, patterns="sample", solver="cvxpy")),
])
def test_a_backend_failure_is_one_clear_error(monkeypatch, module, name, make):
    """Every estimator turns a backend's own exception into one RuntimeError naming the solver
    and what to change, never the third-party exception itself."""
    import importlib

    def boom(*a, **k):
        raise _ThirdPartyError("Solver 'CLARABEL' failed")

    monkeypatch.setattr(importlib.import_module(f"convexnn.estimators.{module}"), name, boom)
    X = np.random.default_rng(0).standard_normal((20, 9)) if module == "cnn" else \
        np.random.default_rng(0).standard_normal((20, 3))
    y = X[:, 0]
    with pytest.raises(RuntimeError, match="'cvxpy' solver failed on this problem.*auto") as e:
        make().fit(X, y)
    assert isinstance(e.value.__cause__, _ThirdPartyError)
