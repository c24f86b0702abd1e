"""Driver of the first-order method on the relaxation (precision phases, neuron certificates)."""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ...certificates import relative
from ...formulations.sdp.lifting import congruence, lift_factor, lift_rows
from ...formulations.sdp.relaxation import DualBound, SDPRelaxation, normalised, unscale_primal
from ...solvers.base import History, StopReason
from ...solvers.sdp_admm import CongruenceSDP, sdp_admm

__all__ = ["solve_admm"]

# from this SDP size on the ADMM starts in float32 (1.8x faster per iteration at n = 1000;
# every certificate stays float64) and switches to float64 once the stopping measure
# max(gap estimate, 10 r_primal) has improved by less than _STALL_GAIN over the last
# _STALL_CHECKS checks while below _STALL_BELOW. Measured (benchmarks/results/sdp.md,
# part 7): float64 throughout is better at q = 531 (1e-3 in 205 s; mixed 288 s), float32 at
# q = 781 and 1031 for 7.5 and 15 minute budgets. float32 caps the accuracy near 1e-3; far
# above that its best-so-far measure moves in steps (at q = 1031 a 20-check rule came within
# 10 % of firing at a gap of 9e-2), so plateaus there are the method's, not the precision's.
_LARGE_Q = 700
_STALL_CHECKS = 40
_STALL_GAIN = 0.05
_STALL_BELOW = 1e-2


def solve_admm(prob: SDPRelaxation, *, tol: float = 1e-4, max_iter: int = 5000,
               max_time: float | None = None, check_every: int | None = None,
               rho: float = 0.3, dtype: torch.dtype | str | None = None,
               neuron_first: int | str | None = "auto", neuron_growth: float = 1.5,
               neuron_max_iter: int = 3000, accel: bool = True, eig: str = "auto",
               verbose: int = 0) -> tuple[DualBound, Tensor, dict]:
    r"""Solve the relaxation with the first-order method :func:`convexnn.solvers.sdp_admm`.

    The relaxation is  min_{Z ⪰ 0} <C, Z> + g(T Z Tᵀ)  with T the rows (α | β | v) of the lift
    (:func:`congruence`) and g separable over the entries of K = T Z Tᵀ (t = 2n + c):
    K_[αβ] ≥ 0, diag(K_αβ) = 0, ½||K_αv − Y||² on the αv block, free elsewhere. *All* 4n²
    entrywise constraints are kept (no working set); an iteration costs the positive
    eigenpairs of one q x q matrix, O(q² r) products (r: their number) and O(n² (d + c))
    structured ones: T Z Tᵀ, Tᵀ E T and the block Cholesky factor of TᵀT
    (:func:`lift_factor`).

    **Certificates.** The ADMM multiplier Y = ρU of K = T Z Tᵀ maps onto the certificate's
    multipliers: Γ = 2 Y_αv, ω_i = 2 Y_{α_i β_i}, N = (−Y_[αβ])_+ off those pairs. Two proven
    bounds are computed from it and the larger is returned:

    * "blend" (:meth:`SDPRelaxation.dual_bound`, every ``check_every`` iterations): needs
      λ_min of the dual matrix accurate relative to reg, which is slow to reach when
      reg ≪ ||X|| ||Y||;
    * "neuron" (:mod:`convexnn.formulations.sdp_neuron`): Γ alone, scaled by the proven
      bound of a scale-free neuron SDP, solved by the same ADMM at iterations
      ``neuron_first``, then every ``neuron_growth`` times more (warm-started, about as
      many inner iterations as outer ones since the last call, at most ``neuron_max_iter``)
      and, unless the tolerance was met, once at the end with the full budget, which may
      exceed ``max_time`` by a quarter (``neuron_first=None``: never; ``"auto"``: only the
      final solve — measured at n = 1000, giving the whole time to the outer ADMM and one
      inner solve at the end proves a better bound in the same time than the schedule;
      an int schedule lets the neuron bound stop the run early at loose ``tol``).

    The method stops when the relative gap between the primal estimate
    <C, Z> + ½||Z_αv − Y||² and either the proven "neuron" bound or the "blend" *estimate*
    (the trace bound with the primal estimate standing in for a proven upper bound) is ≤ ``tol``
    and the relative primal residual is ≤ ``tol``/10. The returned ``bound`` and
    ``info["certify"](upper)`` are *proven*; the latter takes any proven upper bound on p_SDP
    (e.g. an extracted network's objective, as :func:`fit_sdp` does), which tightens the trace
    bound.

    ``dtype``: precision of the iterates. Default: from q = 700 on, float32 (an iteration is
    1.8x faster at n = 1000) until the stopping measure (the larger of the gap estimate and 10x the
    primal residual) is below 1e-2 and has improved by less than 5 % over the last 40 checks,
    then float64 from the same iterate and multipliers (penalty reset to ``rho``) — float32
    caps the accuracy of the blend certificate and slows near ~1e-3 (measured at n = 500:
    float32 alone 1.2e-3 after 300 s, float64 1e-3 in 205 s); below q = 700 the data's
    precision; ``"mixed"``: that float32-then-float64 schedule at
    any size. Every certificate is computed in float64.
    ``accel``: restarted momentum in the ADMM and in the inner neuron solves
    (:func:`convexnn.solvers.sdp_admm.sdp_admm`). ``eig``: how the projections' positive
    eigenpairs are computed ("auto": LAPACK's subset driver on CPU, "full", "subset"; see
    :func:`convexnn.solvers.sdp_admm.positive_part`); both give the same iterates.
    """
    pn, sx, ky = normalised(prob)
    final_neuron, neuron_first, phases = _schedule(pn, neuron_first, dtype)
    pn64 = pn if pn.X.dtype == torch.float64 else SDPRelaxation(
        pn.X.double(), pn.Y.double(), pn.reg, intercept=pn.intercept)
    every = check_every if check_every is not None else (10 if pn.q <= 400 else 25)
    run = _Run(prob, pn64, ky, tol=tol, max_time=max_time, every=every,
               neuron_first=neuron_first, neuron_growth=neuron_growth,
               neuron_max_iter=neuron_max_iter, accel=accel, verbose=verbose, dtype=phases[0])
    if eig not in ("auto", "full", "subset"):
        raise ValueError(f"eig must be 'auto', 'full' or 'subset', got {eig!r}")
    res, it0, stop = run.phases(phases, rho=rho, max_iter=max_iter, eig=eig)
    best = run.best
    if best["Y"] is None:    # never checked (max_iter < check_every): use the last iterate
        run.monitor({"Z": res.x, "Y": res.extras["Y"], "iter": it0,
                     "r_primal": res.extras["r_primal"]})
    if (final_neuron and best["neuron_iter"] != it0
            and stop != StopReason.GAP):     # not converged: certify the last one
        run.neuron(res.extras["Y"], it0, final=True)
    Yd = best["Y"]
    Gam, om, N = run.multipliers(Yd, ky, ky / sx)
    Z = unscale_primal(pn64, sx, ky, res.x.to(torch.float64))
    certify = _certifier(prob, pn64, ky, (Gam, om, N), lambda: run.multipliers(Yd),
                         best["neuron"])
    bound = certify()
    info = {"admm_iterations": it0, "admm_stop": stop,
            "admm_rel_gap_estimate": best["rel"], "admm_r_primal": res.extras["r_primal"],
            "admm_r_dual": res.extras["r_dual"], "admm_rho": res.extras["rho"],
            "neuron_iterations": best["inner_iterations"],
            "neuron_seconds": best["inner_seconds"],
            "sdp_primal_estimate": ky * ky * best["obj"], "history": run.hist,
            "precision_switch_iteration": best.get("switch"),
            "multipliers": (Gam, om, N), "certify": certify}
    return bound, Z.to(prob.X), info


def _schedule(pn: SDPRelaxation, neuron_first, dtype) -> tuple[bool, int | None, list]:
    """(final neuron solve?, first neuron iteration, precision phases) from the options."""
    if neuron_first == "auto":
        final_neuron, neuron_first = True, None
    elif neuron_first is None:
        final_neuron = False
    elif isinstance(neuron_first, int) and neuron_first > 0:
        final_neuron = True
    else:
        raise ValueError(f"neuron_first must be a positive int, 'auto' or None, got "
                         f"{neuron_first!r}")
    # precision phases: float32 while it makes progress, then float64 (see solve_admm)
    if dtype == "mixed" or (dtype is None and pn.q >= _LARGE_Q and pn.X.dtype == torch.float64):
        phases = [torch.float32, torch.float64]
    elif dtype is None:
        phases = [pn.X.dtype]
    elif isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        phases = [dtype]
    else:
        raise ValueError(f"dtype must be a floating torch dtype, 'mixed' or None, got {dtype!r}")
    return final_neuron, neuron_first, phases


def _congruence_problem(pn64: SDPRelaxation, dt: torch.dtype) -> CongruenceSDP:
    """The ADMM's data for iterates of precision dt."""
    n, q = pn64.n, pn64.q
    ia = torch.arange(n, device=pn64.X.device)
    p = pn64 if dt == torch.float64 else SDPRelaxation(
        pn64.X.to(dt), pn64.Y.to(dt), pn64.reg, intercept=pn64.intercept)
    X, Y = p.X, p.Y
    gram, adjoint = congruence(p.X)
    C = torch.zeros(q, q, dtype=dt, device=X.device)
    C[n:, n:] = 0.5 * p.reg * torch.eye(q - n, dtype=dt, device=X.device)
    T = lift_rows(p.X, p.c)

    def prox(V: Tensor, r: float) -> Tensor:      # in place (sdp_admm allows it)
        V[:2 * n, :2 * n].clamp_(min=0)
        V[ia, ia + n] = 0.0       # the complementary pairs (α_i, β_i)
        V[ia + n, ia] = 0.0
        Kav = (Y + 2.0 * r * V[:n, 2 * n:]) / (1.0 + 2.0 * r)
        V[:n, 2 * n:] = Kav
        V[2 * n:, :n] = Kav.T
        return V

    return CongruenceSDP(C=C, G=T.T @ T, gram_fn=gram, adjoint_fn=adjoint, prox_fn=prox,
                         solve_fn=lift_factor(X, 0.0, p.c))


class _Run:
    """State of one solve: best multiplier so far, neuron bounds, the monitor and the phases."""

    def __init__(self, prob: SDPRelaxation, pn64: SDPRelaxation, ky: float, *, tol: float,
                 max_time: float | None, every: int, neuron_first: int | None,
                 neuron_growth: float, neuron_max_iter: int, accel: bool, verbose: int,
                 dtype: torch.dtype):
        self.prob, self.pn64, self.ky = prob, pn64, ky
        self.n = pn64.n
        self.ia = torch.arange(self.n, device=pn64.X.device)
        self.tol, self.max_time, self.every, self.accel = tol, max_time, every, accel
        self.neuron_growth, self.neuron_max_iter = neuron_growth, neuron_max_iter
        self.verbose = verbose
        self.y_half = 0.5 * float((pn64.Y * pn64.Y).sum())
        self.best: dict = {"est": -math.inf, "Y": None, "obj": math.nan, "rel": math.inf,
                           "neuron": None, "neuron_iter": -1, "warm": None,
                           "next": math.inf if neuron_first is None else neuron_first,
                           "inner_iterations": 0, "inner_seconds": 0.0, "dtype": dtype}
        self.t0 = time.perf_counter()
        self.hist = History()

    def multipliers(self, Yd: Tensor, scale_g: float = 1.0, scale_n: float = 1.0):
        """(Γ, ω, N) of the certificate from the ADMM multiplier Yd of K = T Z Tᵀ."""
        n, ia = self.n, self.ia
        Yd = Yd.to(torch.float64)
        Gam = scale_g * 2.0 * Yd[:n, 2 * n:]
        om = scale_n * 2.0 * 0.5 * (Yd[ia, ia + n] + Yd[ia + n, ia])
        N = scale_n * (-(0.5 * (Yd[:2 * n, :2 * n] + Yd[:2 * n, :2 * n].T))).clamp_min(0)
        N[ia, ia + n] = 0.0                 # the complementary pairs carry ω, not N
        N[ia + n, ia] = 0.0
        return Gam, om, N

    def neuron(self, Yd: Tensor, it: int, final: bool = False) -> DualBound:
        """The "neuron" bound of the multiplier Yd, proven on the original data."""
        best, n, max_time = self.best, self.n, self.max_time
        Gam = self.ky * 2.0 * Yd.to(torch.float64)[:n, 2 * n:]
        el = time.perf_counter() - self.t0
        if final:   # the returned bound: full budget, at most max(time left, el/4) seconds
            budget = self.neuron_max_iter
            left = None if max_time is None else max(max_time - el, 0.25 * el)
        else:       # about as many as outer iterations since the last call (warm-started)
            budget = min(self.neuron_max_iter, max(500, it - max(best["neuron_iter"], 0)))
            left = None if max_time is None else max(1.0, max_time - el)
        b, nb = self.prob.neuron_bound(Gam, tol=self.tol, max_iter=budget, max_time=left,
                                       dtype=best["dtype"], warm=best["warm"], accel=self.accel)
        best["warm"] = nb.state
        best["inner_iterations"] += nb.iterations
        best["inner_seconds"] += nb.seconds
        if best["neuron"] is None or b.value > best["neuron"].value:
            best["neuron"] = b
        best["neuron_iter"] = it
        return b

    def monitor(self, state: dict) -> bool:
        best, pn64, ky, t0 = self.best, self.pn64, self.ky, self.t0
        obj = pn64.objective_matrix(state["Z"].to(torch.float64))
        b = pn64.dual_bound(*self.multipliers(state["Y"]), upper=self.y_half)  # Z = 0 feasible
        # stopping estimate: the trace bound with the primal estimate in place of a proven
        # upper bound (the final certificate uses the extracted network's objective instead)
        est = b.raw_value - 3.0 * max(obj, 0.0) / pn64.reg * max(0.0, -b.lam_min)
        est = max(est, b.value)
        if est > best["est"]:
            best.update(est=est, Y=state["Y"].clone())
        if state["iter"] >= best["next"]:
            best["next"] = max(best["next"] + self.every,
                               int(self.neuron_growth * state["iter"]))
            self.neuron(state["Y"], state["iter"])
        lo = best["est"]
        if best["neuron"] is not None:
            lo = max(lo, best["neuron"].value / (ky * ky))
        rel = relative(max(obj - lo, 0.0), obj)
        best.update(obj=obj, rel=rel)
        self.hist.append(state["iter"], obj, max(obj - lo, 0.0), rel, time.perf_counter() - t0)
        if self.verbose:
            nv = best["neuron"].value / ky ** 2 if best["neuron"] is not None else math.nan
            print(f"[sdp-admm] it={state['iter']} primal={obj:.6e} lb_estimate={est:.6e} "
                  f"neuron_lb={nv:.6e} rel_gap={rel:.2e} r_primal={state['r_primal']:.2e} "
                  f"lam_min={b.lam_min:.2e} dtype={best['dtype']} "
                  f"t={time.perf_counter() - t0:.1f}s")
        return rel <= self.tol and state["r_primal"] <= 0.1 * self.tol

    def phases(self, phases: list, *, rho: float, max_iter: int, eig: str):
        """Run the ADMM in each precision until one converges or the budget ends; returns
        (last result, total iterations, stop reason)."""
        best, max_time = self.best, self.max_time
        K0 = U0 = None
        it0, rho_ = 0, rho
        for k, dt in enumerate(phases):
            best["dtype"] = dt
            stalled = {"flag": False, "rels": []}
            last_phase = k == len(phases) - 1

            def phase_monitor(state: dict, it0=it0, last_phase=last_phase,
                              stalled=stalled) -> bool:
                state = dict(state, iter=state["iter"] + it0)
                if self.monitor(state):
                    return True
                rels = stalled["rels"]   # best so far of the stopping rule's measure
                m = max(best["rel"], 10.0 * state["r_primal"])
                rels.append(min(m, rels[-1] if rels else math.inf))
                if (not last_phase and len(rels) > _STALL_CHECKS and rels[-1] < _STALL_BELOW
                        and rels[-1] > (1.0 - _STALL_GAIN) * rels[-1 - _STALL_CHECKS]):
                    stalled["flag"] = True     # this precision has stopped making progress
                    return True
                return False

            left = None if max_time is None else max(max_time - (time.perf_counter() - self.t0),
                                                     0.0)
            res = sdp_admm(_congruence_problem(self.pn64, dt), K0=K0, U0=U0, rho=rho_,
                           max_iter=max_iter - it0, max_time=left, check_every=self.every,
                           accel=self.accel, eig=eig, monitor=phase_monitor,
                           verbose=max(0, self.verbose - 1))
            it0 += res.n_iter
            if not stalled["flag"] or it0 >= max_iter:
                break
            # same iterate and multiplier Y = ρU, penalty back to its start (the balancing of
            # the float32 phase reacts to rounding noise in the residuals)
            K0 = res.extras["K"].to(phases[k + 1])
            U0 = res.extras["Y"].to(phases[k + 1]) / rho
            rho_ = rho
            best["switch"] = it0
        stop = res.stop_reason if not stalled["flag"] else StopReason.MAX_ITER
        return res, it0, stop


def _certifier(prob: SDPRelaxation, pn64: SDPRelaxation, ky: float, mults: tuple,
               mults_normalised, nbound: DualBound | None):
    """certify(upper) -> the best proven bound of the selected multipliers (``mults`` on the
    original data; ``mults_normalised()`` builds them for the normalised problem)."""
    Gam, om, N = mults
    y_half_orig = 0.5 * float((prob.Y * prob.Y).sum())

    def certify(upper: float | None = None) -> DualBound:
        """Proven bound: the best of the "neuron" bound and the "blend" bound of the selected
        multipliers; ``upper``: any proven upper bound on p_SDP of the original problem
        (default ½||Y||², the value of Z = 0)."""
        up = y_half_orig if upper is None else min(float(upper), y_half_orig)
        dev_ = prob.X.device
        bo = prob.dual_bound(Gam.to(dev_), om.to(dev_), N.to(dev_), upper=up)
        # the normalised problem is the same SDP with value scaled by 1/κ² (data rescaled in
        # float64, a relative perturbation of ~1e-16); its eigenvalue check is better
        # conditioned, so its bound, scaled back, is used when larger
        bn = pn64.dual_bound(*mults_normalised(), upper=up / (ky * ky))
        if ky * ky * bn.value > bo.value:
            bo = DualBound(value=ky * ky * bn.value, raw_value=ky * ky * bn.raw_value,
                           lam_min=bn.lam_min, theta=bn.theta, lam0=bn.lam0, delta=bn.delta)
        return nbound if nbound is not None and nbound.value > bo.value else bo

    return certify
