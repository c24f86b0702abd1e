"""The dual-guided descent's parts: the line search, the smoothing, the annealed polish and the
mixed-precision fit (pipelines/descent.py, pipelines/local.py)."""

import math
import time

import numpy as np
import pytest
import torch

from convexnn.losses import get_loss
from convexnn.pipelines import descent
from convexnn.pipelines.local import anneal_polish, neuron_scales, value_and_grad


def _data(n=80, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.relu(X @ torch.randn(d, 4, generator=g, dtype=torch.float64)).sum(1, keepdim=True)
    return X, y - y.mean()


@pytest.mark.parametrize("tstar", [1e-7, 1e-3, 1.0, 1e4])
def test_line_search_finds_the_minimiser_at_every_scale(tstar):
    """argmin_t ½||Z + tF - Y||² + reg·t for a known t*: found to the bisection's 0.5 %, and
    never past it (the step must lower the objective), however small or large t* is."""
    n = 20
    F = torch.ones(n, 1, dtype=torch.float64)
    Z = torch.zeros(n, 1, dtype=torch.float64)
    reg = 1.0
    Y = torch.full((n, 1), tstar + reg / n, dtype=torch.float64)  # stationary at t*
    t = descent._line_search(Z, F, Y, get_loss("squared"), reg)
    assert 0 < t <= tstar and t == pytest.approx(tstar, rel=5e-3)


def test_line_search_returns_zero_without_descent():
    Z = torch.zeros(5, 1, dtype=torch.float64)
    F = torch.ones(5, 1, dtype=torch.float64)
    assert descent._line_search(Z, F, Z.clone(), get_loss("squared"), 0.1) == 0.0


def test_softplus_smoothing_tends_to_the_relu():
    """The smoothed objective is within τ·log 2 per unit output weight of the ReLU's, and
    the gap closes as τ → 0."""
    X, Y = _data()
    g = torch.Generator().manual_seed(1)
    p = [torch.randn(s, generator=g, dtype=torch.float64) for s in [(5, 3), (5,), (1, 5), (1,)]]
    loss = get_loss("squared")
    f0 = value_and_grad(p, X, Y, loss, 0.1)[0]
    gaps = [abs(value_and_grad(p, X, Y, loss, 0.1, t * neuron_scales(p))[0] - f0)
            for t in (1e-1, 1e-2, 1e-3, 1e-4)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1e-3 * gaps[0] * 10


@pytest.mark.parametrize("name", ["squared", "logistic"])
def test_anneal_polish_never_raises_the_objective(name):
    X, Y = _data()
    if name == "logistic":
        Y = torch.sign(Y)
    g = torch.Generator().manual_seed(2)
    p = [torch.randn(s, generator=g, dtype=torch.float64) for s in [(8, 3), (8,), (1, 8), (1,)]]
    loss, reg = get_loss(name), 0.05
    f0 = value_and_grad(p, X, Y, loss, reg)[0]
    q, f, its = anneal_polish(p, X, Y, loss, reg, intercept=True, offset=True,
                              deadline=time.perf_counter() + 30)
    assert its > 0 and f < f0
    assert f == pytest.approx(value_and_grad(q, X, Y, loss, reg)[0], rel=1e-12)


def test_mixed_precision_fit_returns_the_data_precision_and_a_valid_certificate():
    """work_dtype=float32: the network and certificate come back in float64, and the last
    float64 stage keeps the objective at least as low as the same fit run in float64 within
    the windowed stop's tolerance (both runs converge to a local optimum of one program)."""
    X, Y = _data(n=120)
    loss, reg = get_loss("squared"), 0.5
    out = {}
    for wd in (torch.float32, None):
        net, cert, _, info = descent.fit_relu_descent(X, Y, reg, loss, n_neurons=20,
                                                      random_state=0, work_dtype=wd)
        assert net.first_layer_weights.dtype == torch.float64
        assert math.isfinite(cert.primal) and cert.dual <= cert.primal
        out[wd] = cert.primal
    assert out[torch.float32] <= out[None] * (1 + 1e-2)


def test_unknown_polish_is_rejected():
    X, Y = _data(n=20)
    with pytest.raises(ValueError, match="polish"):
        descent.fit_relu_descent(X, Y, 0.1, get_loss("squared"), polish="sgd")


@pytest.mark.parametrize("polish", ["anneal", "adam", "none"])
def test_every_polish_lowers_or_keeps_the_rounds_objective(polish):
    X, Y = _data(n=60)
    loss, reg = get_loss("squared"), 0.5
    net, cert, hist, info = descent.fit_relu_descent(X, Y, reg, loss, n_neurons=10,
                                                     random_state=0, polish=polish,
                                                     polish_steps=200)
    rounds = [r["objective"] for r in info["rounds"]]
    assert cert.primal <= min(rounds) * (1 + 1e-6)
    assert np.isfinite(cert.relative_gap)


def test_estimator_tol_scales_the_descent_stops():
    """tol reaches the default descent: a loose tol stops much sooner at a (slightly) higher
    objective; a tight one is not worse than the loose one (beyond the default the non-convex
    path, not the tolerance, decides where it stops)."""
    import convexnn as cn

    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = np.maximum(X @ [1.0, -1.0, 0.5], 0) + 0.05 * rng.standard_normal(80)
    fits = {t: cn.ConvexReLURegressor(reg=0.1, tol=t, random_state=0, warn_gap=None).fit(X, y)
            for t in (1e-3, 1e-6, 1e-8)}
    assert fits[1e-3].n_iter_ < 0.5 * fits[1e-6].n_iter_
    loose = fits[1e-3].certificate_.primal
    assert fits[1e-6].certificate_.primal < loose and fits[1e-8].certificate_.primal < loose


def test_reg_max_is_the_same_whatever_the_start_chunk(monkeypatch):
    """reg_max searches its starts in column chunks (each start's ascent is independent): the
    chunk size changes the memory, not the value; at n = 10^6 the default chunk holds 64 of
    the 256 starts (4 passes over X per ascent step, not 64)."""
    X, y = _data(n=200, d=4)
    loss = get_loss("squared")
    ref = descent.reg_max(X, y, loss, random_state=0)
    monkeypatch.setattr(descent, "_REG_MAX_ENTRIES", 200 * 3)  # chunks of 3 starts
    monkeypatch.setattr(descent, "_REG_MAX_MIN_CHUNK", 1)
    assert descent._start_chunk(200, 256) == 3
    assert descent.reg_max(X, y, loss, random_state=0) == pytest.approx(ref, rel=1e-12)
    monkeypatch.undo()
    assert descent._start_chunk(10 ** 6, 256) == 64
