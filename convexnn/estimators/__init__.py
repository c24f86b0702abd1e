"""scikit-learn compatible estimators (thin: validate, pick formulation and solver, fit)."""

from .cnn import ConvexCNNClassifier, ConvexCNNRegressor
from .io import load_estimator
from .parallel import ConvexParallelReLUClassifier, ConvexParallelReLURegressor
from .two_layer import ConvexReLUClassifier, ConvexReLURegressor

__all__ = ["ConvexReLURegressor", "ConvexReLUClassifier", "ConvexCNNClassifier",
           "ConvexCNNRegressor", "ConvexParallelReLURegressor", "ConvexParallelReLUClassifier",
           "load_estimator"]
