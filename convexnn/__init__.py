"""convexnn: train ReLU networks to the global optimum of their convex programs, with certificates.

Quick start::

    import convexnn as cn
    est = cn.ConvexReLURegressor(reg=1e-3, n_patterns=200, random_state=0).fit(X, y)
    est.certificate_   # primal, dual, gap, relative_gap, scope
    est.to_torch()     # nn.Sequential(Linear, ReLU, Linear)
    cn.certify(network, X, y, reg)   # prove (or refute) global optimality of any network
"""

from .certificates import Certificate
from .certificates.global_ import GlobalCertificate, certify
from .estimators import (
    ConvexCNNClassifier,
    ConvexCNNRegressor,
    ConvexParallelReLUClassifier,
    ConvexParallelReLURegressor,
    ConvexReLUClassifier,
    ConvexReLURegressor,
    load_estimator,
)
from .estimators.cv import ConvexReLUClassifierCV, ConvexReLURegressorCV
from .formulations.copositive_cnn import fit_exact_cnn
from .losses import get_loss
from .networks import ParallelReLUNetwork, TwoLayerNetwork, load_network, load_parallel_network
from .networks.pooled_cnn import SumPoolCNN
from .patterns import PatternSet, sample_gates
from .patterns.arrangements import ArrangementTooLarge, count_patterns, enumerate_patterns

__all__ = [
    "ConvexReLURegressor", "ConvexReLUClassifier", "ConvexCNNClassifier", "ConvexCNNRegressor",
    "ConvexParallelReLURegressor", "ConvexParallelReLUClassifier", "load_estimator",
    "certify", "Certificate", "GlobalCertificate", "TwoLayerNetwork", "load_network",
    "ParallelReLUNetwork", "load_parallel_network", "PatternSet", "sample_gates",
    "enumerate_patterns", "count_patterns", "ArrangementTooLarge", "get_loss",
    "fit_exact_cnn", "SumPoolCNN", "ConvexReLURegressorCV", "ConvexReLUClassifierCV",
]
__version__ = "0.1.0"
