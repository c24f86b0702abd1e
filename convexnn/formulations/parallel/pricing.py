r"""Pricing for the path-regularised parallel program: blocks found by the dual (the column
generation loop is :func:`convexnn.pipelines.parallel_cg.fit_parallel_cg`).

The exact convex program of :mod:`convexnn.formulations.parallel` has one block per index
s = (D_{1,1..m}, σ, D_2, t, ε) — far too many to write down (O(n^{m r}) second-layer patterns).
Over any subset S of blocks it is a *restriction* with value p_S ≥ p*. Instead of sampling S
blindly, this module grows S where the dual says the restriction is binding.

**Dual constraint (pricing problem).** Write g_q(X) = (Σ_j σ_j (X q_j)_+)_+ ∈ R^n for the output of
a single-output sub-network with path-norm variables q ∈ R^{m x d} (||q||_F = its path norm).
For Λ = ∇L(f(X)) at the current network, the dual of the *full* program is feasible at Λ iff

    h(Λ) = max_{t, ε, σ, ||q||_F ≤ 1}  ⟨ −ε Λ_{:,t},  g_q(X) ⟩  ≤  β.

Every q is a feasible point of its own block (its patterns are D_1j = 1[X q_j ≥ 0] and
D_2 = 1[Σ_j σ_j (X q_j)_+ ≥ 0]), so a q with value > β names a block whose dual constraint is
violated; adding it to S lowers p_S (moving a small amount η of path norm onto that
sub-network changes the objective by −η(value − β) + o(η)). Conversely, any q found with
value > β is a *proof* that the current network is not globally optimal.

**Search.** The pricing problem is non-convex (it is the training problem of one sub-network
against the residual direction). We maximise the ratio ⟨r, g_q(X)⟩ / ||q||_F (scale-invariant,
positively homogeneous) by projected gradient ascent on the unit sphere (Adam steps, cosine
step decay, renormalisation after each step), batched over many starts and over the 2c
directions r = −ε Λ_{:,t}: random Gaussian and data-aware starts (hyperplanes through midpoints
of data pairs, :func:`convexnn.patterns.sample_gates`), the current network's sub-networks and
the previous round's best candidates. The values reported are exact evaluations at the found q
(lower bounds on h(Λ)).

The loop that uses it, and what its certificate proves: :mod:`convexnn.pipelines.parallel_cg`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...patterns import sample_gates
from .blocks import ParallelBlocks, block_keys
from .tree import Tree, TreeBlocks, random_signs, tree_block_keys, tree_forward, tree_values

__all__ = ["PricingResult", "subnetwork_values", "direction_index", "price", "candidate_keys",
           "select_blocks"]


@dataclass
class PricingResult:
    """Candidates of a pricing search, best first.

    ``gates`` (P, m, d) unit Frobenius norm q, ``signs`` (P, m) σ, ``outputs`` (P,) t,
    ``eps`` (P,) ε, ``values`` (P,) the exact ⟨−ε Λ_{:,t}, g_q(X)⟩ (||q||_F = 1).
    """

    gates: Tensor
    signs: Tensor
    outputs: Tensor
    eps: Tensor
    values: Tensor
    n_starts: int
    n_steps: int
    seconds: float

    @property
    def best(self) -> float:
        return float(self.values.max()) if self.values.numel() else -math.inf


def subnetwork_values(X: Tensor, q: Tensor, signs: Tensor, r: Tensor) -> Tensor:
    """⟨r_k, g_q(X)⟩ / ||q||_F for a batch: q (..., m, d), signs (..., m), r (..., n) → (...)."""
    H = torch.einsum("nd,...md->...nm", X, q).clamp_min(0)
    g = (signs[..., None, :] * H).sum(-1).clamp_min(0)
    nrm = torch.linalg.vector_norm(q.flatten(-2), dim=-1).clamp_min(1e-300)
    return (g * r).sum(-1) / nrm


def _directions(Lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The 2c residual directions r = −ε Λ_{:,t}: (2c, n), outputs t, signs ε."""
    c = Lam.shape[1]
    R = torch.cat([-Lam, Lam], 1).T.contiguous()
    t = torch.arange(c, device=Lam.device).repeat(2)
    e = torch.cat([torch.ones(c), -torch.ones(c)]).to(Lam)
    return R, t, e


def direction_index(outputs: Tensor, eps: Tensor, c: int) -> Tensor:
    """Index k of direction (t, ε) in :func:`_directions`."""
    return outputs.long() + c * (eps < 0).long()


def price(X: Tensor, Lam: Tensor, *, width: int = 2, depth: int = 3, n_starts: int = 128,
          n_steps: int = 100, lr: float | None = None, init: tuple[Tensor, Tensor, Tensor] | None
          = None, random_state=None, intercept_column: bool = False,
          max_elements: int = 2 ** 24) -> PricingResult:
    r"""Search for sub-networks with large ⟨−ε Λ_{:,t}, g_q(X)⟩ / ||q||_F (see module docstring).

    ``n_starts`` starts per direction (2c directions), ``n_steps`` ascent steps each.
    ``init = (q (k, m, d), signs (k, m), direction (k,))`` adds warm starts (at most
    ``n_starts`` per direction are used). Returns every start's final point, best first.
    Depth ≥ 4: tree sub-networks of branching ``width`` (:mod:`.tree`); q (…, M, d) holds the
    M = width^(depth−2) leaves and the signs (…, S) every edge.
    """
    t0 = time.perf_counter()
    if depth < 2:
        raise ValueError(f"depth must be >= 2, got {depth}")
    if n_starts < 1 or n_steps < 0:
        raise ValueError("n_starts must be >= 1 and n_steps >= 0")
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    tree = Tree(depth, int(width)) if depth >= 4 else None
    m = 1 if depth == 2 else (int(width) if tree is None else tree.n_leaves)
    n, d = X.shape
    R, tt, ee = _directions(Lam.to(X))
    D = R.shape[0]
    S = int(n_starts)
    kw = {"dtype": X.dtype, "device": X.device}
    q, sig = _starts(X, D, S, m, rng, init, intercept_column, tree)
    step0 = lr if lr is not None else 0.4 / math.sqrt(m * d)
    # chunk the starts so that (chunk · n · m) stays bounded
    per = max(1, int(max_elements // max(n * m, 1)))
    best_q = q.clone()
    best_v = torch.full((D, S), -math.inf, **kw)
    flat_q = q.reshape(D * S, m, d)
    flat_s = sig.reshape(D * S, sig.shape[-1])
    flat_r = R.repeat_interleave(S, 0)
    out_q = best_q.reshape(D * S, m, d)
    out_v = best_v.reshape(D * S)
    for a in range(0, D * S, per):
        b = min(a + per, D * S)
        out_q[a:b], out_v[a:b] = _ascend(X, flat_q[a:b], flat_s[a:b], flat_r[a:b], n_steps,
                                         step0, tree)
    # exact values at the returned points
    vals = _values(X, out_q, flat_s, flat_r, tree).detach()
    order = torch.argsort(vals, descending=True)
    k = torch.arange(D, device=X.device).repeat_interleave(S)[order]
    return PricingResult(gates=out_q.detach()[order], signs=flat_s[order], outputs=tt[k],
                         eps=ee[k], values=vals[order], n_starts=S, n_steps=n_steps,
                         seconds=time.perf_counter() - t0)


def _values(X: Tensor, q: Tensor, signs: Tensor, r: Tensor, tree: Tree | None) -> Tensor:
    return subnetwork_values(X, q, signs, r) if tree is None else tree_values(X, q, signs, r,
                                                                               tree)


def _starts(X: Tensor, D: int, S: int, m: int, rng: np.random.Generator,
            init: tuple[Tensor, Tensor, Tensor] | None, intercept_column: bool,
            tree: Tree | None = None) -> tuple[Tensor, Tensor]:
    """Unit starting points (D, S, m, d) and signs (D, S, m): half Gaussian, half data-aware
    hyperplanes, the warm starts ``init`` first in their direction."""
    d = X.shape[1]
    kw = {"dtype": X.dtype, "device": X.device}
    q = torch.as_tensor(rng.standard_normal((D, S, m, d)), **kw)
    n_data = (D * S * m) // 2
    if n_data:
        G = sample_gates(X, n_data, rng, kind="data", intercept_column=intercept_column,
                         deduplicate=False).gates.T  # (n_data, d)
        q.view(-1, d)[:G.shape[0]] = G.to(**kw)
    sig = torch.ones(D, S, m, **kw)
    if tree is not None:
        sig = torch.as_tensor(random_signs(rng, (D * S, tree.n_signs), tree), **kw)
        sig = sig.reshape(D, S, tree.n_signs)
    elif m > 1:
        sg = np.where(rng.random((D, S, m)) < 0.5, 1.0, -1.0)
        sg[:, :, 0] = 1.0
        sig = torch.as_tensor(sg, **kw)
    if init is not None:
        qi, si, ki = init
        for k in range(D):
            sel = torch.nonzero(ki == k).flatten()[:S]
            if sel.numel():
                q[k, :sel.numel()] = qi[sel].to(**kw)
                sig[k, :sel.numel()] = si[sel].to(**kw)
    q = q / torch.linalg.vector_norm(q.flatten(2), dim=-1).clamp_min(1e-300)[..., None, None]
    return q, sig


def _ascend(X: Tensor, q0: Tensor, sc: Tensor, rc: Tensor, n_steps: int, step0: float,
            tree: Tree | None = None) -> tuple[Tensor, Tensor]:
    """Projected Adam ascent (cosine step schedule) on the sphere from the starts q0 (k, m, d);
    returns the best point met by each start (unit norm) and its value."""
    kw = {"dtype": X.dtype, "device": X.device}
    qc = q0.clone().requires_grad_(True)
    bq = qc.detach().clone()
    bv = torch.full((q0.shape[0],), -math.inf, **kw)
    m1, m2 = torch.zeros_like(bq), torch.zeros_like(bq)  # Adam moments (β = 0.9, 0.999)
    for it in range(n_steps + 1):
        v = _values(X, qc, sc, rc, tree)
        with torch.no_grad():
            better = v > bv
            bv = torch.where(better, v.detach(), bv)
            bq[better] = qc.detach()[better]
        if it == n_steps:
            break
        (gq,) = torch.autograd.grad(v.sum(), qc)
        with torch.no_grad():
            lr = step0 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * it / n_steps)))
            m1.mul_(0.9).add_(gq, alpha=0.1)
            m2.mul_(0.999).addcmul_(gq, gq, value=0.001)
            mh = m1 / (1 - 0.9 ** (it + 1))
            vh = m2 / (1 - 0.999 ** (it + 1))
            qc += lr * mh / (vh.sqrt() + 1e-8)  # ascent
            qc /= torch.linalg.vector_norm(qc.flatten(1), dim=-1).clamp_min(1e-300)[:, None,
                                                                                   None]
    return bq / torch.linalg.vector_norm(bq.flatten(1), dim=-1).clamp_min(1e-300)[:, None,
                                                                                  None], bv


def candidate_keys(X: Tensor, gates: Tensor, signs: Tensor, outputs: Tensor,
                   eps: Tensor, tree: Tree | None = None) -> list[bytes]:
    """Exact keys of candidate blocks (patterns, signs, output, ε)."""
    if tree is None:
        M1, M2 = ParallelBlocks(gates, signs, outputs, eps).masks(X)
        base = block_keys(M1, signs, M2)
    else:
        base = tree_block_keys(TreeBlocks(gates, signs, outputs, eps, tree).masks(X), signs)
    tail = [bytes([int(t), int(e > 0)]) for t, e in zip(outputs.tolist(), eps.tolist())]
    return [b + b"@" + t for b, t in zip(base, tail)]


def _strictly_inside(X: Tensor, gates: Tensor, signs: Tensor, rel: float = 1e-8,
                     tree: Tree | None = None) -> Tensor:
    """Candidates whose witness is not within round-off of a cone boundary (a local maximum of
    the piecewise-linear pricing function can sit on a kink): (P,) bool. Such a witness would
    not give the interior-point solvers a strictly feasible start."""
    H = torch.einsum("nd,pmd->npm", X, gates)
    scale = torch.linalg.vector_norm(X, dim=1)[:, None, None] \
        * torch.linalg.vector_norm(gates, dim=2)[None]
    if tree is not None:  # every level: off its hyperplane, or no active child (h = 0)
        ok = torch.ones(gates.shape[0], dtype=torch.bool, device=X.device)
        hs = tree_forward(H, signs[None], tree)
        sc = scale.sum(-1, keepdim=True)
        for lev, h in enumerate(hs):
            dead = torch.zeros_like(h, dtype=torch.bool) if lev == 0 else \
                (tree.group((hs[lev - 1] > 0).to(h.dtype)) == 0)
            ok &= ((h.abs() > rel * sc) | dead | (sc == 0)).all(-1).all(0)
        return ok
    ok1 = (H.abs() > rel * scale) | (scale == 0)
    h = (signs[None] * H.clamp_min(0)).sum(-1)
    ok2 = (h.abs() > rel * scale.sum(-1)) | ((H > 0).sum(-1) == 0)
    return ok1.all(-1).all(0) & ok2.all(0)


def select_blocks(X: Tensor, cand: PricingResult, existing: list[bytes], reg: float,
                  margin: float, max_new: int, tree: Tree | None = None):
    """Up to ``max_new`` distinct candidates with value > reg (1 + margin), best first, whose
    index is not in ``existing``. Returns (indices into ``cand``, their keys)."""
    viol = torch.nonzero((cand.values > reg * (1 + margin))
                         & _strictly_inside(X, cand.gates, cand.signs, tree=tree)).flatten()
    if viol.numel() == 0:
        return [], []
    keys = candidate_keys(X, cand.gates[viol], cand.signs[viol], cand.outputs[viol],
                          cand.eps[viol], tree)
    seen = set(existing)
    pick, pk = [], []
    for i, k in zip(viol.tolist(), keys):
        if k in seen:
            continue
        seen.add(k)
        pick.append(i)
        pk.append(k)
        if len(pick) >= max_new:
            break
    return pick, pk
