"""Plain network containers read back from convex solutions: forward pass, training objective,
torch export and ``.npz`` + JSON files (no pickle). :mod:`.two_layer` (fully connected ReLU and
gated ReLU), :mod:`.cnn` (convolutional), :mod:`.parallel` (deep parallel, path-regularised),
:mod:`.parallel_tree` (deep tree-structured parallel, depth L >= 3), :mod:`.pooled_cnn` (the
globally pooled CNN of the exact CNN program).

A new model's container goes here; it holds weights and evaluates them, never solves."""

from .cnn import CircularCNN, ConvNetwork, GatedConvModule, ThreeLayerCNN, load_cnn
from .parallel import ParallelReLUModule, ParallelReLUNetwork, load_parallel_network
from .parallel_tree import (
    TreeParallelReLUModule,
    TreeParallelReLUNetwork,
    load_tree_parallel_network,
    tree_level_sizes,
)
from .pooled_cnn import GlobalPool, SumPoolCNN
from .two_layer import GatedReLULayer, TwoLayerNetwork, load_network

__all__ = [
    "TwoLayerNetwork", "GatedReLULayer", "load_network", "ConvNetwork", "CircularCNN",
    "ThreeLayerCNN", "GatedConvModule", "load_cnn", "ParallelReLUNetwork", "ParallelReLUModule",
    "load_parallel_network", "TreeParallelReLUNetwork", "TreeParallelReLUModule",
    "load_tree_parallel_network", "tree_level_sizes", "SumPoolCNN", "GlobalPool",
]
