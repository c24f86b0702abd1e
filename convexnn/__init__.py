"""convexnn: train ReLU networks to the global optimum of their convex programs, with certificates."""

from .certificates import Certificate
from .losses import get_loss
from .networks import TwoLayerNetwork, load_network
from .patterns import PatternSet, sample_gates

__all__ = ["Certificate", "TwoLayerNetwork", "load_network", "PatternSet", "sample_gates",
           "get_loss"]
__version__ = "0.1.0"
