"""Exact enumeration of activation patterns (convexnn.patterns.arrangements)."""

import math

import numpy as np
import pytest
import torch

from convexnn.patterns.arrangements import ArrangementTooLarge, count_patterns, enumerate_patterns


def _mask_set(X, G):
    M = X @ G >= 0
    return {bytes(np.packbits(col)) for col in M.T}


def _sampled(X, n, seed):
    G = np.random.default_rng(seed).standard_normal((X.shape[1], n))
    S = _mask_set(X, G)
    S.discard(bytes(np.packbits(np.zeros(X.shape[0], bool))))
    return S


@pytest.mark.parametrize("n,din", [(12, 1), (12, 2), (9, 3), (30, 2)])
def test_general_position_count_and_superset(n, din):
    rng = np.random.default_rng(n + din)
    X = np.c_[rng.standard_normal((n, din)), np.ones(n)]
    ps = enumerate_patterns(X)
    r = din + 1
    bound = 2 * sum(math.comb(n - 1, k) for k in range(r))
    assert ps.exhaustive
    assert count_patterns(X)["bound"] == bound
    # general position: exactly the bound, minus the dropped all-inactive pattern
    assert ps.n_patterns == bound - 1
    E = _mask_set(X, ps.gates.numpy())
    assert len(E) == ps.n_patterns  # distinct
    assert _sampled(X, 100_000, 0) <= E
    assert ps.info["min_margin"] > 0


def test_one_dimensional_thresholds_independent_count():
    # 1-D data plus bias: the patterns are exactly the 2n threshold sets {x ≥ t}, {x ≤ t}
    x = np.random.default_rng(0).standard_normal(11)
    X = np.c_[x, np.ones_like(x)]
    ps = enumerate_patterns(X)
    xs = np.sort(x)
    expect = set()
    for t in np.r_[xs[0] - 1, (xs[:-1] + xs[1:]) / 2, xs[-1] + 1]:
        for m in (x >= t, x <= t):
            if m.any():
                expect.add(bytes(np.packbits(m)))
    assert _mask_set(X, ps.gates.numpy()) == expect


@pytest.mark.parametrize("case", ["grid", "duplicates", "rank_deficient", "zero_row"])
def test_degenerate_data_matches_dense_sampling(case):
    g = np.array([[i, j] for i in range(3) for j in range(3)], float)
    if case == "grid":
        X = np.c_[g, np.ones(9)]
    elif case == "duplicates":
        X = np.c_[np.r_[g, g[:3], -g[4:5] * 0 + g[4:5]], np.ones(13)]
    elif case == "rank_deficient":
        X = np.c_[g, g[:, 0] - 2 * g[:, 1], np.ones(9)]
    else:
        X = np.r_[np.c_[g, np.ones(9)], np.zeros((1, 3))]
    ps = enumerate_patterns(X)
    assert _mask_set(X, ps.gates.numpy()) == _sampled(X, 300_000, 1)


def test_refusal_reports_count():
    X = np.c_[np.random.default_rng(0).standard_normal((200, 3)), np.ones(200)]
    with pytest.raises(ArrangementTooLarge, match=r"2,6\d\d,\d\d\d"):
        enumerate_patterns(X, max_patterns=10_000)
    assert count_patterns(X)["bound"] == 2 * sum(math.comb(199, k) for k in range(4))


def test_torch_float32_and_shapes():
    rng = np.random.default_rng(3)
    X = torch.as_tensor(np.c_[rng.standard_normal((15, 2)), np.ones(15)], dtype=torch.float32)
    ps = enumerate_patterns(X)
    assert ps.gates.dtype == torch.float32 and ps.gates.shape[0] == 3
    assert len(_mask_set(X.numpy(), ps.gates.numpy())) == ps.n_patterns
    with pytest.raises(ValueError):
        enumerate_patterns(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        enumerate_patterns(np.array([[np.nan, 1.0]]))


@pytest.mark.parametrize("rank", [3, 4])
def test_chunked_enumeration_and_oracle_equal_unchunked(monkeypatch, rank):
    """The enumeration, the cone faces and the exact oracle work in chunks (bounded memory at
    n = 1000); tiny chunks must give the same cells, facets and oracle values as one chunk."""
    from convexnn.formulations.copositive import oracle
    from convexnn.patterns import arrangements

    rng = np.random.default_rng(rank)
    X = rng.standard_normal((14, rank)) @ rng.standard_normal((rank, rank + 1))
    Lam = rng.standard_normal((14, 2))

    def run():
        G = enumerate_patterns(X, max_patterns=None).gates
        f = oracle.ConeFaces(X, G, exhaustive=True, max_faces=None)
        return G, f.n_facets, f.oracle(Lam)[0]

    G1, nf1, h1 = run()
    monkeypatch.setattr(arrangements, "_CHUNK_BYTES", 2048)
    monkeypatch.setattr(oracle, "_CHUNK", 37)
    G2, nf2, h2 = run()
    assert G1.shape == G2.shape and torch.allclose(G1, G2, atol=1e-12)
    assert np.array_equal(nf1, nf2)
    assert np.allclose(h1, h2, rtol=1e-12, atol=1e-12)
