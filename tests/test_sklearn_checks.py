"""scikit-learn's estimator checks on every public estimator class (small, fast settings). No
check is skipped."""

from sklearn.utils.estimator_checks import parametrize_with_checks

import convexnn as cn

FAST = {"n_patterns": 8, "random_state": 0, "tol": 1e-4, "max_iter": 2000, "search_rounds": 0}
# 2-D X is read as one-pixel-high images (input_shape=None): kernel_size=1, one window per column
CNN = {"kernel_size": 1, "pooling": "none", "n_patterns": 4, "reg": 1e-2, "tol": 1e-3,
       "max_iter": 300, "random_state": 0}
# depth-2, one neuron per sub-network, 4 sampled blocks. The classifier solves through CVXPY:
# the default interior-point solver takes ~1 s per fit on the checks' 300-sample, 3-class data
PAR = {"depth": 2, "width": 1, "n_patterns": 4, "patterns": "sample", "reg": 0.1, "tol": 1e-2,
       "random_state": 0}


@parametrize_with_checks([
    cn.ConvexReLURegressor(activation="gated", **{**FAST, "search_rounds": 1}),
    cn.ConvexReLUClassifier(activation="gated", loss="squared", **FAST),
    cn.ConvexReLURegressor(activation="relu", reg=1e-3,
                           **{**FAST, "n_patterns": 4, "solver": "admm"}),
    cn.ConvexReLUClassifier(random_state=0),  # the defaults, as a user meets them
    cn.ConvexReLURegressor(random_state=0),
    cn.ConvexCNNClassifier(activation="gated", **CNN),
    cn.ConvexCNNRegressor(activation="gated", **CNN),
    cn.ConvexParallelReLURegressor(**PAR),
    # CVXPY runs to its own stopping rule: tol is not used (and rejected) with it
    cn.ConvexParallelReLUClassifier(**{k: v for k, v in PAR.items() if k != "tol"},
                                    solver="cvxpy"),
])
def test_sklearn_compatible(estimator, check):
    check(estimator)
