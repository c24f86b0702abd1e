"""Small problem generators shared by the tests."""

import numpy as np
import torch

from convexnn._validation import add_intercept
from convexnn.patterns import sample_gates


def regression_problem(n=30, d=2, c=1, seed=0, P=10, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    Xr = rng.standard_normal((n, d))
    W = rng.standard_normal((d, 3))
    Y = np.maximum(Xr @ W, 0) @ rng.standard_normal((3, c)) + 0.1 * rng.standard_normal((n, c))
    X = add_intercept(torch.as_tensor(Xr, dtype=dtype))
    patterns = sample_gates(X, P, seed, kind="data", intercept_column=True)
    return X, torch.as_tensor(Y, dtype=dtype), patterns


def classification_targets(n, c, loss, seed=0, dtype=torch.float64):
    rng = np.random.default_rng(seed + 100)
    labels = rng.integers(0, c, size=n)
    labels[:c] = np.arange(c)
    if loss == "logistic":
        return torch.as_tensor((2.0 * labels - 1.0)[:, None], dtype=dtype)
    return torch.as_tensor(np.eye(c)[labels], dtype=dtype)


def iris_subsample(n, seed):
    """Standardised iris subsample (numpy): X with a bias column, one-hot targets (the SDP
    paper's use of iris)."""
    from sklearn.datasets import load_iris

    Xa, y = load_iris(return_X_y=True)
    idx = np.random.default_rng(seed).choice(len(y), n, replace=False)
    Xs = (Xa[idx] - Xa[idx].mean(0)) / Xa[idx].std(0)
    return np.hstack([Xs, np.ones((n, 1))]), np.eye(3)[y[idx]]
