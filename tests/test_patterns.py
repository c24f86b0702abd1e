import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convexnn.patterns import deduplicate_gates, sample_gates


def _mask_set(X, G):
    M = (X @ G >= 0).numpy().T
    return {m.tobytes() for m in M}


def test_dedup_keeps_one_gate_per_distinct_pattern():
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.standard_normal((25, 2)))
    G = torch.tensor(rng.standard_normal((2, 400)))
    Gd = deduplicate_gates(X, G, drop_zero=True, chunk=7)  # several row chunks
    masks = (X @ Gd >= 0).numpy().T
    assert len({m.tobytes() for m in masks}) == Gd.shape[1]  # all distinct
    full = {m.tobytes() for m in (X @ G >= 0).numpy().T if m.any()}
    assert _mask_set(X, Gd) == full  # nothing lost except the zero pattern
    assert not (~masks.any(1)).any()


def test_sampling_is_seeded_and_bounded():
    X = torch.tensor(np.random.default_rng(1).standard_normal((30, 4)))
    a = sample_gates(X, 50, 3).gates
    b = sample_gates(X, 50, 3).gates
    c = sample_gates(X, 50, 4).gates
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape[0] == 4 and a.shape[1] <= 50


def test_data_gates_are_scale_invariant():
    rng = np.random.default_rng(2)
    Xr = rng.standard_normal((40, 3))
    X1 = torch.tensor(np.c_[Xr, np.ones(40)])
    X2 = torch.tensor(np.c_[Xr * np.array([1e-3, 1.0, 1e4]), np.ones(40)])
    g1 = sample_gates(X1, 60, 0, kind="data", intercept_column=True)
    g2 = sample_gates(X2, 60, 0, kind="data", intercept_column=True)
    assert _mask_set(X1, g1.gates) == _mask_set(X2, g2.gates)


def test_bad_arguments():
    X = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="n_patterns"):
        sample_gates(X, 0)
    with pytest.raises(ValueError, match="gate kind"):
        sample_gates(X, 3, kind="uniform")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), d=st.integers(1, 4), c=st.integers(1, 3), P=st.integers(1, 6),
       seed=st.integers(0, 1000))
def test_operator_adjoint_identity(n, d, c, P, seed):
    """<A V, R> = <V, Aᵀ R> for the pattern operator, any shapes, any chunking."""
    from convexnn.formulations.two_layer import TwoLayerProgram
    from convexnn.patterns import PatternSet

    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Y = torch.randn(n, c, generator=g, dtype=torch.float64)
    G = torch.randn(d, P, generator=g, dtype=torch.float64)
    prog = TwoLayerProgram(X, Y, PatternSet(G), 1.0, "squared", "gated", chunk_size=3,
                           mask_cache_limit=0 if seed % 2 else 10**9)
    V = torch.randn(P, d, c, generator=g, dtype=torch.float64)
    R = torch.randn(n, c, generator=g, dtype=torch.float64)
    lhs = float((prog.matvec(V) * R).sum())
    rhs = float((V * prog.rmatvec(R)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)
