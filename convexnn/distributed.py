r"""Data-parallel fitting with ``torch.distributed``: each process holds a block of samples.

Every loss here is a sum over samples, so for row blocks (X_r, Y_r), r = 1..R (one per rank)
and the gated program over shared gates G,

    f(x)  = Σ_r L(A_r x, Y_r),        A_r x = Σ_p D_p^{(r)} X_r u_p,  D_p^{(r)} = 1[X_r g_p ≥ 0],
    ∇f(x) = Σ_r A_rᵀ ∇L(A_r x, Y_r),

and a dual point is the concatenation of the blocks' λ_r = ∇L(A_r x, Y_r): its group values
h_p = ||Σ_r X_rᵀ D_p^{(r)} λ_r|| and the dual −Σ_r L*(s λ_r, Y_r), s = min(1, β / max_p h_p),
are again sums of per-block terms. So accelerated proximal gradient (:func:`convexnn.solvers.
fista`) and its certificate run unchanged on every rank with the iterate x replicated: only
d·P·c-sized gradients and scalars are all-reduced (communication independent of n), and the
masks, predictions and duals stay where the data is. Line-search and stopping decisions use
all-reduced scalars, hence agree on every rank; x is re-broadcast from rank 0 at every
certificate check so round-off cannot make the replicas drift.

The ReLU network (:func:`fit_relu_distributed`) runs the dual-guided descent of
:mod:`convexnn.pipelines.descent` the same way: the network's objective and gradient, the neuron
search's ||Λᵀ(Xu)_+|| and Xᵀ D(u) Λ w, the line searches and the output offset's Newton steps
are sums over samples, all-reduced (d·m-sized messages); random starts come from rank 0; every
stopping decision is taken on reduced values. Its certificate bounds the program over the
network's own patterns through their gated relaxation (the cone constraints are per sample and
would need distributed multipliers). The process group must be initialised by the caller
(any backend; ``gloo`` on CPU, ``nccl`` on GPUs), e.g. by ``torchrun``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ._validation import add_intercept
from .certificates import SCOPE_SAMPLED, Certificate, relative
from .formulations.two_layer import TwoLayerProgram
from .networks import TwoLayerNetwork
from .patterns import PatternSet, sample_gates
from .solvers import fista
from .solvers.base import SolverResult

__all__ = ["ShardedGatedProgram", "fit_gated_distributed", "fit_relu_distributed"]


def _sum(t: Tensor, group=None) -> Tensor:
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


class ShardedGatedProgram:
    """The gated program of the union of all ranks' samples, seen from one rank.

    Implements FISTA's protocol (``linear``, ``smooth_value``, ``smooth_grad``, ``penalty``,
    ``prox``): ``linear`` maps to this rank's predictions, values and gradients are summed
    over the ranks. ``local`` is the rank's own :class:`TwoLayerProgram`.
    """

    def __init__(self, X: Tensor, Y: Tensor, gates: Tensor, reg: float, loss="squared", *,
                 intercept: bool = False, group=None):
        self.local = TwoLayerProgram(X, Y, PatternSet(gates), reg, loss, "gated",
                                     intercept=intercept)
        self.group = group
        self.reg = self.local.reg
        self.loss = self.local.loss
        self.n = int(_sum(torch.tensor([self.local.n], dtype=torch.float64), group).item())

    def zeros(self) -> Tensor:
        return self.local.zeros()

    def linear(self, x: Tensor) -> Tensor:
        return self.local.linear(x)

    def smooth_value(self, Z: Tensor) -> Tensor:
        return _sum(self.local.smooth_value(Z).reshape(1), self.group)[0]

    def smooth_grad(self, Z: Tensor) -> Tensor:
        return _sum(self.local.smooth_grad(Z), self.group)

    def penalty(self, x: Tensor) -> Tensor:
        return self.local.penalty(x)

    def prox(self, x: Tensor, step: float) -> Tensor:
        return self.local.prox(x, step)

    def lipschitz(self, iters: int = 20) -> float:
        """Power iteration on Σ_r A_rᵀ A_r (same seed on every rank) times the loss smoothness."""
        prog = self.local
        g = torch.Generator(device="cpu").manual_seed(0)
        v = torch.randn((prog.P, prog.d, prog.c), generator=g, dtype=prog.X.dtype)
        v = v.to(prog.X.device)
        v /= torch.linalg.vector_norm(v)
        lam = 1.0
        for _ in range(iters):
            w = _sum(prog.rmatvec(prog.matvec(v)), self.group)
            lam = float(torch.linalg.vector_norm(w))
            if lam == 0 or not math.isfinite(lam):
                return 1.0
            v = w / lam
        return max(lam * self.loss.smoothness, 1e-12)

    def certificate(self, x: Tensor, Z: Tensor | None = None) -> Certificate:
        """Certificate of the whole (all ranks') program at x; identical on every rank."""
        prog = self.local
        Z = prog.linear(x) if Z is None else Z
        lam = self.loss.grad(Z, prog.Y)
        corr = _sum(prog.rmatvec(lam), self.group)          # Σ_r A_rᵀ λ_r
        h = prog.dual_norms(corr[None])
        h_max = float(h.max()) if h.numel() else 0.0
        s = 1.0 if h_max <= self.reg else self.reg / h_max
        vals = torch.stack([self.loss.value(Z, prog.Y), self.loss.conjugate(s * lam, prog.Y)])
        vals = _sum(vals.to(torch.float64), self.group)
        primal = float(vals[0]) + float(self.penalty(x))
        dual = -float(vals[1])
        gap = max(primal - dual, 0.0)
        return Certificate(primal=primal, dual=dual, gap=gap, relative_gap=relative(gap, primal),
                           scope=SCOPE_SAMPLED, problem=prog.description() + " (row-sharded)",
                           n_patterns=prog.P, dual_scale=s)


def _as_float(A, name: str, dtype: torch.dtype | None) -> Tensor:
    """A floating tensor: a tensor keeps its float dtype (else float64), arrays become float64
    (or ``dtype``)."""
    if isinstance(A, Tensor):
        return A.to(dtype or (A.dtype if A.is_floating_point() else torch.float64))
    arr = np.asarray(A)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array or tensor, got dtype {arr.dtype}")
    if not arr.flags.writeable:  # torch cannot wrap read-only memory
        arr = arr.copy()
    return torch.as_tensor(arr, dtype=dtype or torch.float64)


def _check_block(X, Y) -> tuple[Tensor, Tensor]:
    """This rank's block as float tensors X (n, d), Y (n, c) (Y with X's dtype and device)."""
    X = _as_float(X, "X", None)
    Y = _as_float(Y, "Y", X.dtype).to(X.device)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty (n, d) array on every rank, got shape "
                         f"{tuple(X.shape)}")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ValueError(f"Y must be (n,) or (n, c), got shape {tuple(Y.shape)}")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    if not (torch.isfinite(X).all() and torch.isfinite(Y).all()):
        raise ValueError("X or Y contains NaN or infinity")
    return X, Y


def _checked_blocks(X, Y, reg, group, caller: str) -> tuple[Tensor, Tensor]:
    """This rank's block checked (:func:`_check_block`) on every rank, then agreed on: an
    invalid block raises ValueError on every rank, so none is left waiting in a collective."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"{caller} needs an initialised torch.distributed "
                           "process group (e.g. dist.init_process_group('gloo') or torchrun)")
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or not reg > 0:
        raise ValueError(f"reg must be a number > 0, got {reg!r}")
    err = None
    try:
        X, Y = _check_block(X, Y)
    except ValueError as e:
        err = e
    failed = torch.tensor([0.0 if err is None else 1.0], dtype=torch.float64)
    dist.all_reduce(failed, op=dist.ReduceOp.MAX, group=group)
    if err is not None:
        raise err
    if failed.item():
        raise ValueError("another rank's X or Y is invalid (that rank's error names the problem)")
    shape = torch.tensor([X.shape[1], Y.shape[1], X.element_size()], dtype=torch.float64)
    lo, hi = shape.clone(), shape.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=group)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=group)
    if not torch.equal(lo, hi):
        raise ValueError("feature or output dimensions or dtypes differ between ranks")
    return X, Y


def fit_gated_distributed(X: Tensor | np.ndarray, Y: Tensor | np.ndarray, reg: float, *,
                          loss="squared", n_patterns: int = 100,
                          gates: Tensor | np.ndarray | None = None,
                          fit_intercept: bool = True, random_state: int | None = 0,
                          tol: float = 1e-6, max_iter: int = 10000, check_every: int = 10,
                          group=None, verbose: int = 0
                          ) -> tuple[TwoLayerNetwork, Certificate, SolverResult]:
    """Fit the gated-ReLU network on samples spread over the ranks of a process group.

    Call on every rank with that rank's samples ``X`` (n_r x d) and targets ``Y`` (n_r x c or
    n_r,), tensors or numpy arrays (arrays become float64 tensors, a float tensor keeps its
    dtype; Y takes X's); d, c and the dtype must agree across ranks. Invalid input on any rank
    raises ``ValueError`` on every rank. Gates are ``gates`` (d(+1) x P) or
    sampled by rank 0 from its own block and broadcast. Returns, on every rank, the same
    network, the certificate of the *whole* program (objective over all samples, scope
    "sampled patterns") and the solver result. Stopping is by ``tol`` or ``max_iter`` only
    (a wall-clock limit would differ between ranks and deadlock the collectives).
    """
    X, Y = _checked_blocks(X, Y, reg, group, "fit_gated_distributed")
    Xa = add_intercept(X) if fit_intercept else X
    if gates is None:
        rank = dist.get_rank(group)
        G = sample_gates(Xa, n_patterns, random_state, kind="data",
                         intercept_column=fit_intercept).gates if rank == 0 else None
        count = torch.tensor([G.shape[1] if G is not None else 0], dtype=torch.float64)
        dist.broadcast(count, 0, group=group)
        if G is None:
            G = torch.zeros(Xa.shape[1], int(count.item()), dtype=Xa.dtype, device=Xa.device)
        G = G.to(dtype=Xa.dtype, device=Xa.device).contiguous()
        dist.broadcast(G, 0, group=group)
    else:
        G = torch.as_tensor(gates, dtype=Xa.dtype, device=Xa.device)
        if G.ndim != 2 or G.shape[0] != Xa.shape[1]:
            raise ValueError(f"gates must be ({Xa.shape[1]}, P), got {tuple(G.shape)}")
    prob = ShardedGatedProgram(Xa, Y, G, reg, loss, intercept=fit_intercept, group=group)

    def monitor(x_, Z_):
        dist.broadcast(x_, 0, group=group)  # keep the replicas bit-identical
        c_ = prob.certificate(x_)
        return c_.primal, c_.gap, c_.relative_gap

    res = fista(prob, prob.zeros(), step=1.0 / prob.lipschitz(), tol=tol, max_iter=max_iter,
                check_every=check_every, monitor=monitor,
                verbose=verbose if dist.get_rank(group) == 0 else 0)
    x = res.x.contiguous()
    dist.broadcast(x, 0, group=group)
    cert = prob.certificate(x)
    return prob.local.to_network(x), cert, res


class _Shard:
    """The collectives the descent and its certificate need (``sum``, ``broadcast``)."""

    def __init__(self, group=None):
        self.group = group

    def sum(self, t: Tensor) -> Tensor:
        return _sum(t, self.group)

    def broadcast(self, t: Tensor) -> Tensor:
        t = t.clone()
        dist.broadcast(t, 0, group=self.group)
        return t


def fit_relu_distributed(X: Tensor | np.ndarray, Y: Tensor | np.ndarray, reg: float, *,
                         loss="squared", n_neurons: int | None = None,
                         fit_intercept: bool = True, random_state: int | None = 0,
                         search_rounds: int = 20, verbose: int = 0, group=None
                         ) -> tuple[TwoLayerNetwork, Certificate, dict]:
    """Fit the two-layer ReLU network (weight decay ``reg``, the papers' objective summed over
    all ranks' samples) by the dual-guided descent, on samples spread over the ranks.

    Call on every rank with that rank's block (as :func:`fit_gated_distributed`: tensors or
    arrays, Y one-hot / ±1 / real as the loss needs; standardise X beforehand). Returns, on
    every rank, the same network, its certificate over all samples (module docstring) and
    ``info`` (``stop_reason``, ``n_iter``, ``rounds``). ``n_neurons``: the starting width
    (default: the estimators' rule on the total number of samples). No time limit: every
    stop is an iteration or tolerance test on reduced values."""
    from .losses import get_loss
    from .pipelines import descent
    from .pipelines.two_layer import default_width

    X, Y = _checked_blocks(X, Y, reg, group, "fit_relu_distributed")
    n = int(_sum(torch.tensor([float(X.shape[0])], dtype=torch.float64), group).item())
    width = n_neurons or default_width(n, X.shape[1])
    net, cert, _, info = descent.fit_relu_descent(
        X, Y, float(reg), get_loss(loss), n_neurons=width, intercept=fit_intercept,
        offset=fit_intercept, max_rounds=search_rounds, random_state=random_state,
        verbose=verbose if dist.get_rank(group) == 0 else 0, shard=_Shard(group))
    return net, cert, info
