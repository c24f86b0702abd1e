"""scikit-learn compatible estimators (thin: validate, pick formulation and solver, fit)."""

from .two_layer import ConvexReLUClassifier, ConvexReLURegressor, load_estimator

__all__ = ["ConvexReLURegressor", "ConvexReLUClassifier", "load_estimator"]
