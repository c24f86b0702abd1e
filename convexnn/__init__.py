"""convexnn: train ReLU networks to the global optimum of their convex programs, with certificates.

Quick start::

    import convexnn as cn
    est = cn.ConvexReLURegressor(reg=1e-3, n_patterns=200, random_state=0).fit(X, y)
    est.certificate_   # primal, dual, gap, relative_gap, scope
    est.to_torch()     # nn.Sequential(Linear, ReLU, Linear)
"""

from .certificates import Certificate
from .estimators import ConvexReLUClassifier, ConvexReLURegressor, load_estimator
from .losses import get_loss
from .networks import TwoLayerNetwork, load_network
from .patterns import PatternSet, sample_gates

__all__ = ["Certificate", "ConvexReLURegressor", "ConvexReLUClassifier", "load_estimator",
           "TwoLayerNetwork", "load_network", "PatternSet", "sample_gates", "get_loss"]
__version__ = "0.1.0"
