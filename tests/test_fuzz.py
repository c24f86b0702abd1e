"""Property-based fuzzing of the two-layer estimators on small, badly scaled and extreme inputs.

Every fit either succeeds with a finite certificate obeying primal ≥ dual (and ≥ the search
estimate), or raises a clean ValueError / TypeError. ``make test`` runs a short profile; the
slow marker runs a longer one.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convexnn as cn

_VALUES = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False,
                    width=64)


@st.composite
def problems(draw):
    n = draw(st.integers(2, 12))
    d = draw(st.integers(1, 3))
    X = np.array(draw(st.lists(_VALUES, min_size=n * d, max_size=n * d))).reshape(n, d)
    kind = draw(st.sampled_from(["squared", "logistic", "cross_entropy"]))
    if kind == "squared":
        y = np.array(draw(st.lists(_VALUES, min_size=n, max_size=n)))
    else:
        k = 2 if kind == "logistic" else 3
        y = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    activation = draw(st.sampled_from(["relu", "gated"]))
    return X, y, kind, activation


def _check(X, y, kind, activation):
    kw = {"activation": activation, "random_state": 0, "max_time": 2.0, "n_patterns": 5,
          "warn_gap": None}
    est = (cn.ConvexReLURegressor(**kw) if kind == "squared"
           else cn.ConvexReLUClassifier(loss=kind, **kw))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    except (ValueError, TypeError):
        return  # a clean, named refusal (e.g. a single class)
    cert = est.certificate_
    assert math.isfinite(cert.primal) and math.isfinite(cert.dual), cert
    tol = 1e-7 * max(1.0, abs(cert.primal))
    assert cert.primal >= cert.dual - tol
    if cert.search_bound is not None:
        assert cert.primal >= cert.search_bound - tol
    assert np.isfinite(est.predict(X)).all()


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(problems())
def test_fuzz_fast(problem):
    _check(*problem)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(problems())
def test_fuzz_long(problem):
    _check(*problem)
