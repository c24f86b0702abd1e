"""Row-sharded fitting over a 2-process gloo group equals the single-process fit."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from convexnn.distributed import fit_gated_distributed, fit_relu_distributed
from convexnn.formulations.two_layer import TwoLayerProgram, solve
from convexnn.losses import OffsetLoss, get_loss
from convexnn.patterns import PatternSet
from convexnn.pipelines import descent

RELU_REG = 0.05


def _data(loss):
    rng = np.random.default_rng(3)
    X = torch.tensor(rng.standard_normal((37, 4)))
    if loss == "squared":
        Y = torch.tensor(np.sin(X[:, :1].numpy()) + 0.3 * X[:, 1:2].numpy() ** 2)
    else:  # cross-entropy on one-hot labels of 3 classes
        lab = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()
        Y = torch.nn.functional.one_hot(lab, 3).double()
    G = torch.tensor(rng.standard_normal((5, 12)))  # gates on [X, 1]
    return X, Y, G


def _worker(rank, world, init_file, loss, out, relu=False):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        X, Y, G = _data(loss)
        rows = np.array_split(np.arange(X.shape[0]), world)[rank]  # uneven blocks
        net, cert, res = fit_gated_distributed(X[rows], Y[rows], 0.1, loss=loss, gates=G,
                                               tol=1e-6, max_iter=20000)
        np.savez(f"{out}_{rank}.npz", W=net.first_layer_weights.numpy(),
                 W2=net.second_layer_weights.numpy(), primal=cert.primal, dual=cert.dual,
                 gap=cert.relative_gap)
        if relu:  # the ReLU descent in the same processes (one spawn for both tests)
            net, cert, info = fit_relu_distributed(X[rows], Y[rows], RELU_REG, loss=loss,
                                                   n_neurons=6, random_state=0,
                                                   search_rounds=1)
            np.savez(f"{out}_relu_{rank}.npz", W=net.first_layer_weights.numpy(),
                     b=net.first_layer_bias.numpy(), W2=net.second_layer_weights.numpy(),
                     b2=net.output_bias.numpy(), primal=cert.primal, dual=cert.dual,
                     search_bound=cert.search_bound)
    finally:
        dist.destroy_process_group()


def _spawn(loss, out, relu=False):
    init = os.path.join(tempfile.mkdtemp(), "init")
    mp.spawn(_worker, args=(2, init, loss, out, relu), nprocs=2, join=True)


@pytest.fixture(scope="module")
def squared_runs(tmp_path_factory):
    """One 2-rank gloo run of the gated and the ReLU fits on squared loss."""
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    out = str(tmp_path_factory.mktemp("dist") / "res")
    _spawn("squared", out, relu=True)
    return out


# cross-entropy (vector outputs) in the slow profile: the same all-reduce path, 16 s more
@pytest.mark.parametrize("loss", ["squared", pytest.param("cross_entropy",
                                                          marks=pytest.mark.slow)])
def test_two_ranks_match_single_process(loss, tmp_path, request):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    if loss == "squared":
        out = request.getfixturevalue("squared_runs")
    else:
        out = str(tmp_path / "res")
        _spawn(loss, out)
    r0, r1 = np.load(f"{out}_0.npz"), np.load(f"{out}_1.npz")
    # every rank returns the same network and certificate
    assert np.array_equal(r0["W"], r1["W"]) and float(r0["primal"]) == float(r1["primal"])
    assert float(r0["gap"]) <= 1e-6
    # the single-process program over all samples, solved independently (CVXPY)
    X, Y, G = _data(loss)
    Xa = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
    prog = TwoLayerProgram(Xa, Y, PatternSet(G), 0.1, loss, "gated", intercept=True)
    _, cert, res = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    p_ref = res.extras["value"]
    assert float(r0["primal"]) == pytest.approx(p_ref, rel=2e-6)  # gap 1e-6 + Clarabel's
    assert float(r0["dual"]) <= p_ref + 1e-7 * abs(p_ref)  # a valid bound for the whole program


def test_needs_a_process_group():
    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is already initialised")
    X, Y, G = _data("squared")
    with pytest.raises(RuntimeError, match="process group"):
        fit_gated_distributed(X, Y, 0.1, gates=G)


def test_relu_two_ranks_agree_and_certify_the_whole_data(squared_runs):
    """The ReLU descent over 2 ranks: both return the same network; its certificate's primal is
    the network's objective on all samples, and its dual is a valid lower bound: below the
    optimum of the gated relaxation over the network's own patterns (CVXPY + Clarabel), which
    is below the ReLU program over those patterns; and the fit is as good as one process's."""
    out = squared_runs
    r0, r1 = np.load(f"{out}_relu_0.npz"), np.load(f"{out}_relu_1.npz")
    for k in ("W", "b", "W2", "b2", "primal", "dual", "search_bound"):
        assert np.array_equal(r0[k], r1[k]), k
    X, Y, _ = _data("squared")
    W, b, W2, b2 = (torch.tensor(r0[k]) for k in ("W", "b", "W2", "b2"))
    Z = torch.relu(X @ W.T + b) @ W2.T + b2
    f = float(0.5 * ((Z - Y) ** 2).sum()
              + 0.5 * RELU_REG * ((W ** 2).sum() + (b ** 2).sum() + (W2 ** 2).sum()))
    primal, dual = float(r0["primal"]), float(r0["dual"])
    assert primal == pytest.approx(f, rel=1e-10)
    Xa = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
    gates = torch.cat([W, b[:, None]], 1).T.contiguous()
    prog = TwoLayerProgram(Xa, Y, PatternSet(gates), RELU_REG, OffsetLoss(get_loss("squared")),
                           "gated", intercept=True)
    _, _, res = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    p_gated = res.extras["value"]
    assert dual <= p_gated + 1e-7 * abs(p_gated) and p_gated <= primal * (1 + 1e-7)
    assert dual > 0 and float(r0["search_bound"]) >= dual - 1e-9 * abs(dual)
    _, cert1, _, _ = descent.fit_relu_descent(X, Y, RELU_REG, get_loss("squared"), n_neurons=6,
                                              random_state=0, max_rounds=1)
    assert primal <= cert1.primal * 1.05  # another local optimum, not a worse kind of fit
