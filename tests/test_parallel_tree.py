"""Tests of the deep tree-structured parallel ReLU network container (depth L >= 3)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from convexnn.networks import (
    ParallelReLUNetwork,
    TreeParallelReLUModule,
    TreeParallelReLUNetwork,
    load_tree_parallel_network,
    tree_level_sizes,
)
from convexnn.networks.base import save_npz

DT = torch.float64
SHAPES = [(3, 2), (4, 2), (5, 2), (4, 3)]


def _random_tree(depth, width, K=3, d=2, c=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = tree_level_sizes(depth, width)
    M, S = sizes[0], sum(sizes[:-1])
    return TreeParallelReLUNetwork(torch.randn(K, M, d, generator=g, dtype=DT),
                                   torch.randn(K, M, generator=g, dtype=DT),
                                   torch.randn(K, S, generator=g, dtype=DT),
                                   torch.randn(K, c, generator=g, dtype=DT), depth, width)


def _X(n=17, d=2, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _edge_index(depth, width, level, unit):
    """Column of ``edge_weights`` holding the edge from unit ``unit`` of ``level`` (1-based)."""
    return sum(tree_level_sizes(depth, width)[:level - 1]) + unit


def _naive_forward(net, X):
    """Per-sub-network, per-unit python loops straight from the spec."""
    L, w = net.depth, net.width
    sizes = tree_level_sizes(L, w)
    out = torch.zeros(X.shape[0], net.n_outputs, dtype=DT)
    for k in range(net.n_subnetworks):
        for i in range(X.shape[0]):
            z = [max(0.0, float(net.first_layer_weights[k, j] @ X[i] + net.first_layer_bias[k, j]))
                 for j in range(sizes[0])]
            for level in range(1, L - 1):
                z = [max(0.0, sum(float(net.edge_weights[k, _edge_index(L, w, level, c)]) * z[c]
                                  for c in range(u * w, u * w + w)))
                     for u in range(sizes[level])]
            assert len(z) == 1
            out[i] += z[0] * net.output_weights[k]
    return out


def _brute_path_norm(net):
    """l2 norm over every input→output path (bias = weight of a constant input), summed over k."""
    L, w = net.depth, net.width
    Wt = torch.cat([net.first_layer_weights, net.first_layer_bias[..., None]], -1)
    total = 0.0
    for k in range(net.n_subnetworks):
        sq = 0.0
        for j, i, t in itertools.product(range(net.n_leaves), range(Wt.shape[2]),
                                         range(net.n_outputs)):
            p, anc = float(Wt[k, j, i]), j
            for level in range(1, L - 1):
                p *= float(net.edge_weights[k, _edge_index(L, w, level, anc)])
                anc //= w
            p *= float(net.output_weights[k, t])
            sq += p * p
        total += math.sqrt(sq)
    return total


@pytest.mark.parametrize("depth,width", SHAPES)
def test_forward_matches_naive_loops(depth, width):
    net, X = _random_tree(depth, width), _X()
    # make the deeper ReLUs active on some samples: positive top-level edges, some positive first
    # layer; otherwise random signs would often leave the whole tree dead
    net.edge_weights.abs_()
    out = net.forward(X)
    assert out.shape == (17, 2)
    assert float(out.abs().max()) > 0
    torch.testing.assert_close(out, _naive_forward(net, X), rtol=1e-12, atol=1e-12)
    # random signs too (dead units included)
    net2 = _random_tree(depth, width, seed=5)
    torch.testing.assert_close(net2.forward(X), _naive_forward(net2, X), rtol=1e-12, atol=1e-12)
    assert net.subnetwork_outputs(X).shape == (17, 3)


@pytest.mark.parametrize("depth,width", SHAPES + [(4, 1)])
def test_path_norm_matches_path_enumeration(depth, width):
    net = _random_tree(depth, width)
    assert abs(float(net.path_norm()) - _brute_path_norm(net)) < 1e-10
    assert net.path_norms().shape == (3,)
    assert abs(float(net.path_norms().sum() - net.path_norm())) < 1e-14


@pytest.mark.parametrize("depth,width", SHAPES)
def test_positive_rescaling_invariance(depth, width):
    net, X = _random_tree(depth, width), _X()
    Y = _X(17, 2, seed=9)
    f0, R0, obj0 = net.forward(X), float(net.path_norm()), net.objective(X, Y, 0.3)
    sizes = tree_level_sizes(depth, width)
    k = 1
    for level in range(1, depth):  # one unit per level, the last unit of the level
        u, s = sizes[level - 1] - 1, 2.5 + level
        W1, b1, a, w3 = (t.clone() for t in (net.first_layer_weights, net.first_layer_bias,
                                             net.edge_weights, net.output_weights))
        if level == 1:  # incoming: the first-layer row and bias
            W1[k, u] *= s
            b1[k, u] *= s
        else:  # incoming: the edges from its children
            lo = _edge_index(depth, width, level - 1, u * width)
            a[k, lo:lo + width] *= s
        if level < depth - 1:  # outgoing: its edge to the parent
            a[k, _edge_index(depth, width, level, u)] /= s
        else:  # the top unit's outgoing weights are the output weights
            w3[k] /= s
        net2 = TreeParallelReLUNetwork(W1, b1, a, w3, depth, width)
        torch.testing.assert_close(net2.forward(X), f0, rtol=1e-12, atol=1e-12)
        assert abs(float(net2.path_norm()) - R0) < 1e-12 * max(1.0, R0)
        assert abs(net2.objective(X, Y, 0.3) - obj0) < 1e-10 * max(1.0, abs(obj0))
    # a rescaling that is not balanced does change R
    a = net.edge_weights.clone()
    a[k, 0] *= 3.0
    net3 = TreeParallelReLUNetwork(net.first_layer_weights, net.first_layer_bias, a,
                                   net.output_weights, depth, width)
    assert abs(float(net3.path_norm()) - R0) > 1e-6


def test_depth3_agrees_with_parallel_network():
    net, X = _random_tree(3, 4, K=5, d=3, c=2), _X(20, 3)
    par = net.to_parallel()
    assert isinstance(par, ParallelReLUNetwork) and par.depth == 3 and par.width == 4
    torch.testing.assert_close(par.forward(X), net.forward(X), rtol=0, atol=1e-13)
    torch.testing.assert_close(par.path_norms(), net.path_norms(), rtol=0, atol=1e-13)
    back = TreeParallelReLUNetwork.from_parallel(par)
    assert (back.depth, back.width) == (3, 4)
    torch.testing.assert_close(back.forward(X), net.forward(X), rtol=0, atol=0)
    torch.testing.assert_close(back.path_norm(), par.path_norm(), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="depth 3"):
        _random_tree(4, 2).to_parallel()
    depth2 = ParallelReLUNetwork(torch.ones(2, 1, 3, dtype=DT), torch.ones(2, 1, dtype=DT), None,
                                 torch.ones(2, 1, dtype=DT))
    with pytest.raises(ValueError, match="depth-3"):
        TreeParallelReLUNetwork.from_parallel(depth2)


def test_save_load_round_trip(tmp_path):
    net, X = _random_tree(5, 2), _X()
    net.save(tmp_path / "t.npz")
    back = load_tree_parallel_network(tmp_path / "t.npz")
    assert (back.depth, back.width) == (5, 2)
    assert isinstance(back.depth, int) and isinstance(back.width, int)
    for name in ("first_layer_weights", "first_layer_bias", "edge_weights", "output_weights"):
        assert torch.equal(getattr(back, name), getattr(net, name))
    torch.testing.assert_close(back.forward(X), net.forward(X), rtol=0, atol=0)
    # a parallel-network file is refused
    _random_tree(3, 2).to_parallel().save(tmp_path / "p.npz")
    with pytest.raises(ValueError, match="not a convexnn TreeParallelReLUNetwork"):
        load_tree_parallel_network(tmp_path / "p.npz")
    save_npz(tmp_path / "v.npz", {"x": torch.zeros(1)},
             {"format": "convexnn.TreeParallelReLUNetwork", "version": 2})
    with pytest.raises(ValueError, match="version"):
        load_tree_parallel_network(tmp_path / "v.npz")


def test_torch_round_trip_and_autograd():
    net, X = _random_tree(4, 3), _X()
    mod = net.to_torch()
    assert isinstance(mod, TreeParallelReLUModule)
    assert {n for n, _ in mod.named_parameters()} == {"W1", "b1", "a", "w3"}
    torch.testing.assert_close(mod(X), net.forward(X), rtol=0, atol=0)
    torch.testing.assert_close(mod.path_norm(), net.path_norm(), rtol=0, atol=0)
    loss = ((mod(X) - 1.0) ** 2).sum() + 0.1 * mod.path_norm()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mod.parameters())
    # gradient of R against central finite differences on one edge weight
    mod.zero_grad()
    mod.path_norm().backward()
    g, eps = float(mod.a.grad[0, 2]), 1e-6
    with torch.no_grad():
        mod.a[0, 2] += eps
        up = float(mod.path_norm())
        mod.a[0, 2] -= 2 * eps
        down = float(mod.path_norm())
        mod.a[0, 2] += eps
    assert abs(g - (up - down) / (2 * eps)) < 1e-6
    back = TreeParallelReLUNetwork.from_torch(mod)
    assert (back.depth, back.width) == (4, 3)
    torch.testing.assert_close(back.forward(X), net.forward(X), rtol=0, atol=0)
    assert not back.edge_weights.requires_grad


def test_prune_to_and_shapes():
    net = _random_tree(4, 2, K=4)
    a = net.edge_weights.clone()
    a[1, 0:2] = 0.0  # zero the level-1 edges of leaves 0, 1 of sub-network 1 ...
    a[1, 2:4] = 0.0  # ... and of leaves 2, 3: all of its paths are zero
    net = TreeParallelReLUNetwork(net.first_layer_weights, net.first_layer_bias, a,
                                  net.output_weights, 4, 2)
    pruned = net.prune()
    assert pruned.n_subnetworks == 3 and (pruned.depth, pruned.width) == (4, 2)
    X = _X()
    torch.testing.assert_close(pruned.forward(X), net.forward(X), rtol=0, atol=1e-13)
    empty = net.prune(tol=1e9)
    assert empty.n_subnetworks == 0 and empty.forward(X).shape == (17, 2)
    assert float(empty.path_norm()) == 0.0
    f32 = net.to(dtype=torch.float32)
    assert f32.edge_weights.dtype == torch.float32 and (f32.depth, f32.width) == (4, 2)
    assert (net.n_subnetworks, net.n_leaves, net.n_features, net.n_outputs) == (4, 4, 2, 2)
    assert net.level_sizes() == [4, 2, 1]
    assert tree_level_sizes(5, 3) == [27, 9, 3, 1]
    assert net.leaf_path_products().shape == (4, 4)


def test_bad_shapes_raise():
    K, d, c = 2, 3, 1
    W1, b1 = torch.zeros(K, 4, d), torch.zeros(K, 4)  # depth 4, width 2: M = 4, S = 6
    a, w3 = torch.zeros(K, 6), torch.zeros(K, c)
    TreeParallelReLUNetwork(W1, b1, a, w3, 4, 2)  # consistent
    cases = [
        ((torch.zeros(K, 3, d), b1, a, w3, 4, 2), r"first_layer_weights must be \(K, 4, d\).*"
                                                  r"\(2, 3, 3\)"),
        ((torch.zeros(K, 4), b1, a, w3, 4, 2), r"first_layer_weights.*\(2, 4\)"),
        ((W1, torch.zeros(K, 3), a, w3, 4, 2), r"first_layer_bias must be \(2, 4\).*\(2, 3\)"),
        ((W1, b1, torch.zeros(K, 4), w3, 4, 2), r"edge_weights must be \(2, 6\).*\(2, 4\)"),
        ((W1, b1, a, torch.zeros(3, c), 4, 2), r"output_weights must be \(2, c\).*\(3, 1\)"),
        ((W1, b1, a, torch.zeros(K), 4, 2), r"output_weights.*\(2,\)"),
        ((W1, b1, a, w3, 2, 2), "depth L >= 3"),
        ((W1, b1, a, w3, 4, 0), "width"),
        ((W1, b1, a, w3, 4.0, 2), "integers"),
        ((W1, b1, a, w3, True, 2), "integers"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            TreeParallelReLUNetwork(*args)
    with pytest.raises(ValueError, match="depth L >= 3"):
        TreeParallelReLUModule(W1, b1, a, w3, 2, 2)
