"""scikit-learn compatible estimators (thin: validate, pick formulation and solver, fit)."""

from .cnn import ConvexCNNClassifier, ConvexCNNRegressor
from .parallel import ConvexParallelReLUClassifier, ConvexParallelReLURegressor
from .two_layer import ConvexReLUClassifier, ConvexReLURegressor, load_estimator

__all__ = ["ConvexReLURegressor", "ConvexReLUClassifier", "ConvexCNNClassifier",
           "ConvexCNNRegressor", "ConvexParallelReLURegressor", "ConvexParallelReLUClassifier",
           "load_estimator"]
