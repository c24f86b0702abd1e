r"""Proofs of (sub)optimality for *any* two-layer ReLU network, e.g. one trained by Adam.

For a network f(x) = Σ_j (u_jᵀ x + b_j)_+ v_j with objective
J = L(F, Y) + (β/2)(||W1||² + ||b1||² + ||W2||²), every Λ with

    h(Λ) = sup_{||u|| ≤ 1} ||Λᵀ (X̃ u)_+||₂ ≤ β          (X̃ = [X, 1] with a bias)

gives the lower bound −L*(Λ) ≤ p* = min over networks of any width (Fenchel–Young plus
Cauchy–Schwarz plus ||u|| ||v|| ≤ (||u||² + ||v||²)/2; see :mod:`convexnn.formulations.copositive`).
We take Λ = ∇L(F) at the network's own predictions, bound h(Λ) from above and scale:
Λ ← min(1, β / h) Λ. How h is bounded decides what is proved:

* ``"exact"`` — all activation patterns of X̃ enumerated (:mod:`convexnn.patterns.arrangements`)
  and h computed by the exact cone-constrained PCA oracle: the lower bound is the best this Λ
  gives.
  With ``solve=True`` (default) the exact program is also solved (:func:`fit_exact`), giving a
  near-tight lower bound on p* and an explicit optimal network (an upper bound on p*).
  ``scope == "global"``.
* high rank (the arrangement too large to enumerate; :mod:`.high_rank`): h bounded by the
  doubly-nonnegative relaxation of the one-neuron problem (``relaxation=True``, scope
  ``"global (SDP relaxation of the dual constraint)"``) or by norms (scope
  ``"global (norm bound)"``), whichever bound is higher; with ``solve=True`` Λ comes from the
  better of the given network and a fit of the same objective by the default descent. Proven,
  but loose: the relaxation over-estimates h (1.2-3.9x measured), so the gap is an honest
  upper bound, rarely a proof of optimality.

``is_optimal``: True when J − lower ≤ ``tol``·|J| (globally ε-optimal, proven); False when an
explicit network with objective < J was found (proven sub-optimal: ``better_objective``); None
when undecided. Exact optimality (ε = 0) is not decidable in floating point; ε is reported.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..losses import Loss, OffsetLoss, get_loss
from ..networks import TwoLayerNetwork
from ..patterns.arrangements import DEFAULT_MAX_PATTERNS, count_patterns, enumerate_patterns
from .certificate import SCOPE_GLOBAL, Certificate, relative, scaled_dual
from .high_rank import SCOPE_NORM_BOUND, SCOPE_SDP_BOUND, high_rank_bound

__all__ = ["certify", "GlobalCertificate", "SCOPE_NORM_BOUND", "SCOPE_SDP_BOUND"]


@dataclass
class GlobalCertificate(Certificate):
    """A :class:`Certificate` for a given network: ``primal`` is the network's objective,
    ``dual`` the best proven lower bound on the global optimum p* over all networks."""

    is_optimal: bool | None = None
    tolerance: float = 0.0
    method: str = ""
    optimum_upper_bound: float | None = None  # objective of our optimal network, if solved
    details: dict = field(default_factory=dict)
    better_network: Any = field(default=None, repr=False)

    def as_dict(self) -> dict:
        d = asdict(self) if self.better_network is None else {
            k: v for k, v in asdict(_strip(self)).items()}
        d.pop("better_network", None)
        return d

    def __str__(self) -> str:
        return (f"GlobalCertificate(objective={self.primal:.8g}, lower_bound={self.dual:.8g}, "
                f"gap={self.gap:.3e}, relative_gap={self.relative_gap:.3e}, "
                f"is_optimal={self.is_optimal}, method={self.method!r}, scope={self.scope!r})")


def _strip(c: GlobalCertificate) -> GlobalCertificate:
    from dataclasses import replace

    return replace(c, better_network=None)


def certify(network: TwoLayerNetwork, X, Y, reg: float, loss: str | Loss = "squared",
            intercept: bool = True, *, solve: bool = True, tol: float = 1e-6,
            max_patterns: int = DEFAULT_MAX_PATTERNS, max_time: float | None = None,
            relaxation: bool = True) -> GlobalCertificate:
    """Best provable lower bound on the global optimum, and (where decidable) optimality.

    ``X`` holds the *raw* features exactly as passed to ``network.forward`` (n x d); with
    ``intercept=True`` the first-layer bias is part of the model (a ones column is appended
    internally). ``Y`` is the loss's target encoding (1-D is one column). Works for the squared,
    logistic and cross-entropy losses. ``solve``: also fit the program (exact solve at low
    rank, the default descent otherwise) for a better multiplier and an upper bound on p*;
    ``relaxation``: at high rank, bound the dual constraint by the neuron SDP (seconds to
    minutes: an ADMM on a (2n + d)-square matrix) instead of only the norm bound;
    ``max_time``: seconds for the solves (at high rank, default 60: half for the refit, the
    rest for the relaxation, whose bound is proven whenever it stops).
    """
    from .._validation import check_reg

    check_reg(reg)
    lo = base = get_loss(loss)
    net, Xt, Yt = _checked_inputs(network, X, Y, intercept)
    Xa = torch.cat([Xt, torch.ones(Xt.shape[0], 1, dtype=Xt.dtype)], 1) if intercept else Xt
    Xn = Xa.numpy()
    _check_label_encoding(lo, Yt)
    primal = net.objective(Xt, Yt, reg, lo)
    F = net.forward(Xt)
    if net.output_bias is not None:  # compare with every network that has a free offset
        lo = OffsetLoss(lo)
        F = F - net.output_bias
    lam = lo.grad(F, Yt)
    cnt = count_patterns(Xn)
    details: dict = {"n_patterns_bound": cnt["bound"], "rank": cnt["rank"]}
    if cnt["bound"] <= max_patterns:
        lower, s, upper, better = _exact_bound(Xn, Yt, lam, lo, reg, intercept, solve, tol,
                                               max_time, max_patterns, details)
        method, scope = "exact enumeration + exact cone-constrained PCA oracle", SCOPE_GLOBAL
    else:
        lower, s, upper, better, method, scope = high_rank_bound(
            net, Xt, Xa, Yt, lam, lo, base, reg, intercept, solve=solve,
            relaxation=relaxation, max_time=max_time, details=details)
    return _assemble_certificate(primal, lower, s, method, scope, upper, better, details, tol)


def _checked_inputs(network: TwoLayerNetwork, X, Y, intercept: bool):
    """(float64 CPU network, X, Y as an n x c column block), or a clear error."""
    if not isinstance(network, TwoLayerNetwork):
        raise TypeError("network must be a convexnn TwoLayerNetwork (use "
                        "TwoLayerNetwork.from_torch for an nn.Sequential)")
    if network.activation != "relu":
        raise ValueError("certify() proves bounds for ReLU networks; got a gated network")
    net = network.to(dtype=torch.float64, device="cpu")
    Xt = torch.as_tensor(np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X,
                                    dtype=np.float64))
    Yt = torch.as_tensor(np.asarray(Y.detach().cpu() if isinstance(Y, torch.Tensor) else Y,
                                    dtype=np.float64))
    if Yt.ndim == 1:
        Yt = Yt[:, None]
    if Xt.ndim != 2 or Xt.shape[0] != Yt.shape[0] or Xt.shape[1] != net.n_features:
        raise ValueError(f"X must be (n, {net.n_features}) with as many rows as Y; got "
                         f"{tuple(Xt.shape)} and {tuple(Yt.shape)}")
    if Yt.shape[1] != net.n_outputs:
        raise ValueError(f"Y has {Yt.shape[1]} columns but the network {net.n_outputs} outputs")
    if not (torch.isfinite(Xt).all() and torch.isfinite(Yt).all()):
        raise ValueError("X or Y contains NaN or infinity")
    if not intercept and bool((net.first_layer_bias != 0).any()):
        raise ValueError("the network has a first-layer bias: call with intercept=True")
    return net, Xt, Yt


def _check_label_encoding(lo: Loss, Yt: torch.Tensor) -> None:
    """The classification losses need their own target encoding (one-hot, ±1)."""
    if lo.name == "cross_entropy" and not (bool(((Yt == 0) | (Yt == 1)).all())
                                           and bool((Yt.sum(1) == 1).all())):
        raise ValueError("loss='cross_entropy' needs one-hot Y (n x classes, rows of 0/1 "
                         "summing to 1); got other values (encode labels with np.eye(k)[y])")
    if lo.name == "logistic" and not bool((Yt.abs() == 1).all()):
        raise ValueError("loss='logistic' needs Y in {-1, +1}; got other values "
                         "(encode 0/1 labels as 2*y - 1)")


def _exact_bound(Xn: np.ndarray, Yt: torch.Tensor, lam: torch.Tensor, lo: Loss, reg: float,
                 intercept: bool, solve: bool, tol: float, max_time: float | None,
                 max_patterns: int, details: dict):
    """(lower, dual scale, optimum upper bound, better network): h by the exact oracle over
    every pattern, improved by the exact solve when ``solve`` (fills ``details``)."""
    from ..formulations.copositive import ConeFaces, fit_exact

    pats = enumerate_patterns(Xn, max_patterns=max_patterns)
    faces = ConeFaces(Xn, pats.gates, exhaustive=True)
    h = float(faces.oracle(lam.numpy())[0].max())
    lower, s = scaled_dual(lo, lam, Yt, h, reg)
    details.update({"n_patterns": pats.n_patterns, "h_over_reg": h / reg,
                    "lower_bound_from_network": lower})
    if not solve:
        return lower, s, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_exact(Xn, Yt.numpy(), reg, lo, intercept=intercept,
                        tol=min(tol, 1e-6) / 4, max_time=max_time,
                        max_patterns=max_patterns)
    details["lower_bound_from_exact_solve"] = res.certificate.dual
    if res.certificate.dual > lower:
        lower, s = res.certificate.dual, res.certificate.dual_scale
    return lower, s, res.certificate.primal, res.network


def _assemble_certificate(primal: float, lower: float, s: float, method: str, scope: str,
                          upper: float | None, better, details: dict,
                          tol: float) -> GlobalCertificate:
    """The certificate: the trivial bound 0 if the dual one is negative, the gap, the
    vacuous-bound warning (reported at certify's caller) and the optimality verdict."""
    if math.isfinite(lower) and lower < 0:  # loss + penalty ≥ 0: 0 is the better proven bound
        details["lower_bound_from_dual"] = lower
        lower, method = 0.0, method + "; dual bound negative, replaced by the trivial bound 0"
    gap = max(primal - lower, 0.0)
    rel = relative(gap, primal)
    if not math.isfinite(lower) or (primal > 0 and lower <= 0.01 * primal):
        warnings.warn(f"certify(): the lower bound {lower:.4g} is vacuous for this network "
                      f"(objective {primal:.4g}) with {method}; no useful global bound can be "
                      "had here (high-rank data: see README, 'What the certificate means')",
                      RuntimeWarning, stacklevel=3)
    if rel <= tol:
        is_opt = True
    elif upper is not None and upper < primal * (1 - 1e-12) - 1e-15:
        is_opt = False
    else:
        is_opt = None
    return GlobalCertificate(
        primal=primal, dual=lower, gap=gap, relative_gap=rel, scope=scope,
        problem="two-layer ReLU network, weight decay, any width (lower bound on p*)",
        n_patterns=int(details.get("n_patterns", 0)), dual_scale=s, is_optimal=is_opt,
        tolerance=tol, method=method, optimum_upper_bound=upper, details=details,
        better_network=better if is_opt is False else None)
