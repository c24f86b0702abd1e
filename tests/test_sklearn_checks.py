"""scikit-learn's estimator checks (small, fast settings). No check is skipped."""

from sklearn.utils.estimator_checks import parametrize_with_checks

import convexnn as cn

FAST = {"n_patterns": 8, "random_state": 0, "tol": 1e-4, "max_iter": 2000, "search_rounds": 0}
# 2-D X is read as one-pixel-high images (input_shape=None): kernel_size=1, one window per column
CNN = {"kernel_size": 1, "pooling": "none", "n_patterns": 4, "reg": 1e-2, "tol": 1e-3,
       "max_iter": 300, "random_state": 0}


@parametrize_with_checks([
    cn.ConvexReLURegressor(activation="gated", **{**FAST, "search_rounds": 1}),
    cn.ConvexReLUClassifier(activation="gated", loss="squared", **FAST),
    cn.ConvexReLURegressor(activation="relu", reg=1e-3,
                           **{**FAST, "n_patterns": 4, "solver": "admm"}),
    cn.ConvexReLUClassifier(random_state=0),  # the defaults, as a user meets them
    cn.ConvexReLURegressor(random_state=0),
    cn.ConvexCNNClassifier(activation="gated", **CNN),
    cn.ConvexCNNRegressor(activation="gated", **CNN),
])
def test_sklearn_compatible(estimator, check):
    check(estimator)
