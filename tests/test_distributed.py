"""Row-sharded fitting over a 2-process gloo group equals the single-process fit."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from convexnn.distributed import fit_gated_distributed
from convexnn.formulations.two_layer import TwoLayerProgram, solve
from convexnn.patterns import PatternSet


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


def _worker(rank, world, init_file, loss, out):
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
    finally:
        dist.destroy_process_group()


# cross-entropy (vector outputs) in the slow profile: the same all-reduce path, 16 s more
@pytest.mark.parametrize("loss", ["squared", pytest.param("cross_entropy",
                                                          marks=pytest.mark.slow)])
def test_two_ranks_match_single_process(loss, tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    init = os.path.join(tempfile.mkdtemp(), "init")
    out = str(tmp_path / "res")
    mp.spawn(_worker, args=(2, init, loss, out), nprocs=2, join=True)
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
