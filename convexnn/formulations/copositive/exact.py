"""Exact column generation over enumerated (or sampled) patterns: :func:`fit_exact`,
:func:`fit_column_generation` (see the package docstring)."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from ...certificates import SCOPE_GLOBAL, SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ...losses import Loss, get_loss
from ...ops.linalg import as_numpy
from ...patterns import PatternSet, sample_gates
from ...patterns.arrangements import count_patterns, enumerate_patterns
from ...results import FitResult
from ...solvers.base import History, StopReason
from .master import atoms_objective, atoms_to_network, check_inputs, dtype_device, solve_master
from .oracle import ConeFaces
from .prune import prune_solution

__all__ = ["solve_exact_program", "fit_exact", "fit_column_generation", "estimate_exact_memory",
           "DEFAULT_MAX_MEMORY"]


def solve_exact_program(X, Y, reg: float, loss: str | Loss = "squared", *,
                        patterns: PatternSet | None, faces: ConeFaces | None = None,
                        tol: float = 1e-6, max_iter: int = 200, max_time: float | None = None,
                        max_add: int | None = None, U0: np.ndarray | None = None,
                        pool: Callable | None = None, master: str = "auto",
                        verbose: int = 0, features: Callable | None = None,
                        dual_rows: Callable | None = None, problem: str | None = None,
                        label: str = "exact-cg", prune: bool = True,
                        partial: bool = True) -> dict:
    """Column generation with the exact oracle over ``patterns`` (see module docstring).

    ``pool(round) -> gates (d x P)`` optionally supplies a fresh set of patterns to scan each
    round (sampled mode); the atoms' own patterns are always added to the scanned set, so the
    certificate covers the program over (final pool ∪ patterns used by the network).
    Returns a dict with ``U`` (unit atoms, K x d), ``G`` (K x c), ``certificate``, ``history``,
    ``stop_reason``, ``h_max``, ``faces``.

    Other feature maps (e.g. the pooled CNN map u ↦ S (X u)_+ of :mod:`.cnn`): ``features(U)``
    returns the n x K features of unit atoms U (default (X Uᵀ)_+) and ``dual_rows(Λ)`` the rows
    the oracle on X sees (default Λ itself; Sᵀ Λ for pooling); ``problem`` names the program in
    the certificate. ``prune``: reduce the final atoms to at most n·c + 1 with the same
    predictions and objective (:mod:`.prune`). ``partial``: between full pricings, price only
    the most violated cells of the last one while they yield atoms violated by more than
    ``tol`` (at most ``_PARTIAL_ROUNDS`` rounds); certificates come from full pricings only.
    """
    Xn, Yn = _as_arrays(X, Y)
    lo = get_loss(loss)
    n, d = Xn.shape
    c = Yn.shape[1]
    t0 = time.perf_counter()
    if pool is None and faces is None:
        faces = ConeFaces(Xn, patterns.gates, exhaustive=patterns.exhaustive)
    max_add = max_add if max_add is not None else max(10, 2 * c, n // 4)  # cells per round
    U, G = _unit_atoms(U0, d, c)
    hist = History()
    reason = StopReason.MAX_ITER
    cert = None
    exhaustive = patterns is not None and bool(patterns.exhaustive) and pool is None
    cand, since = None, 0  # partial pricing: the best cells of the last full pricing
    for it in range(max_iter + 1):
        U, G, Phi = _master_step(_features(Xn, U, features), Yn, reg, lo, U, G, master)
        primal, lam = atoms_objective(Phi, G, Yn, reg, lo)
        if cand is not None and since < _PARTIAL_ROUNDS and it < max_iter and (
                max_time is None or time.perf_counter() - t0 < max_time):
            new = _partial_atoms(cand, lam, dual_rows, U, reg, tol, max_add)
            since += 1
            if len(new):  # no certificate this round: the full pricing below gives it
                U = np.concatenate([U, new], 0)
                G = np.concatenate([G, np.zeros((len(new), c))], 0)
                continue
        if pool is not None:
            faces = _pool_faces(Xn, pool(it), U)
        h, Umax, h_max, dual, s = _dual_bound(faces, lam, Yn, lo, reg, dual_rows)
        gap = max(primal - dual, 0.0)
        rel = relative(gap, primal)
        el = time.perf_counter() - t0
        hist.append(it, primal, gap, rel, el)
        if verbose:
            print(f"[{label}] it={it:4d} atoms={len(U):4d} obj={primal:.10e} gap={gap:.3e} "
                  f"rel={rel:.3e} h_max/β={h_max / reg:.6f} t={el:.2f}s")
        cert = _certificate(primal, dual, gap, rel, s, exhaustive, problem, faces.P)
        reason = _stop_reason(rel, tol, it, max_iter, max_time, el)
        if reason is not None:
            break
        new = _new_atoms(h, Umax, U, reg, max_add)
        if len(new) == 0:
            reason = StopReason.STALLED
            break
        if partial and pool is None and faces.P > _PARTIAL_FACTOR * max_add:
            top = np.argsort(-h)[:_PARTIAL_FACTOR * max_add]
            cand, since = faces.subset(top[h[top] > reg * (1 + tol)]), 0
        U = np.concatenate([U, new], 0)
        G = np.concatenate([G, np.zeros((len(new), c))], 0)
    if prune and len(U):
        U, G, cert = prune_solution(U, G, _features(Xn, U, features), Yn, reg, lo, cert)
    return {"U": U, "G": G, "certificate": cert, "history": hist, "stop_reason": reason,
            "h_max": h_max, "faces": faces, "seconds": time.perf_counter() - t0}


def _as_arrays(X, Y) -> tuple[np.ndarray, np.ndarray]:
    """X and Y as numpy arrays, Y as an n x c column block."""
    Xn, Yn = as_numpy(X), as_numpy(Y)
    if Yn.ndim == 1:
        Yn = Yn[:, None]
    return Xn, Yn


def _unit_atoms(U0: np.ndarray | None, d: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The starting atoms ``U0`` scaled to unit norm (none by default) and zero weights."""
    U = np.zeros((0, d)) if U0 is None else np.asarray(U0, dtype=np.float64)
    U = U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-300) if len(U) else U
    return U, np.zeros((len(U), c))


def _features(Xn: np.ndarray, U: np.ndarray, features: Callable | None) -> np.ndarray:
    """The n x K features of the unit atoms U: ``features(U)``, by default (X Uᵀ)_+."""
    return features(U) if features is not None else np.maximum(Xn @ U.T, 0.0)


def _master_step(Phi: np.ndarray, Yn: np.ndarray, reg: float, lo: Loss, U: np.ndarray,
                 G: np.ndarray, master: str):
    """(U, G, Phi) after the master solve over the atoms (warm-started from G when it fits),
    without the atoms whose weights vanished."""
    if len(U):
        G = solve_master(Phi, Yn, reg, lo, G0=G if G.shape[0] == len(U) else None,
                         backend=master)
        gn = np.linalg.norm(G, axis=1)
        keep = gn > 1e-10 * max(gn.max(), 1e-300)
        U, G, Phi = U[keep], G[keep], Phi[:, keep]
    return U, G, Phi


def _pool_faces(Xn: np.ndarray, pg: np.ndarray, U: np.ndarray) -> ConeFaces:
    """The oracle over this round's pool ``pg`` plus the atoms' own patterns (sampled mode)."""
    gates = np.concatenate([pg, U.T], 1) if len(U) else pg
    return ConeFaces(Xn, gates)


def _dual_bound(faces: ConeFaces, lam: np.ndarray, Yn: np.ndarray, lo: Loss, reg: float,
                dual_rows: Callable | None):
    """(h, maximisers, max h, dual bound, dual scale): the exact oracle on Λ (or
    ``dual_rows(Λ)``), then Λ scaled to dual feasibility."""
    h, Umax = faces.oracle(lam if dual_rows is None else dual_rows(lam))
    h_max = float(h.max()) if h.size else 0.0
    dual, s = scaled_dual(lo, torch.as_tensor(lam), torch.as_tensor(Yn), h_max, reg)
    return h, Umax, h_max, dual, s


def _certificate(primal: float, dual: float, gap: float, rel: float, s: float,
                 exhaustive: bool, problem: str | None, n_patterns: int) -> Certificate:
    """This round's certificate (scope global only over all patterns, no pool)."""
    return Certificate(primal=primal, dual=dual, gap=gap, relative_gap=rel,
                       scope=SCOPE_GLOBAL if exhaustive else SCOPE_SAMPLED,
                       problem=problem or _problem_text(exhaustive),
                       n_patterns=n_patterns, dual_scale=s)


def _stop_reason(rel: float, tol: float, it: int, max_iter: int, max_time: float | None,
                 el: float) -> StopReason | None:
    """Why the loop stops after this round's certificate (None: it goes on)."""
    if rel <= tol:
        return StopReason.GAP
    if it == max_iter:
        return StopReason.MAX_ITER
    if max_time is not None and el >= max_time:
        return StopReason.MAX_TIME
    return None


def _problem_text(exhaustive: bool) -> str:
    return ("vector-output ReLU network (copositive program, Sahiner et al. 2021): "
            + ("all activation patterns enumerated, exact cone-constrained PCA oracle"
               if exhaustive else "dual constraint checked on sampled patterns only"))


def _new_atoms(h: np.ndarray, Umax: np.ndarray, U: np.ndarray, reg: float,
               max_add: int) -> np.ndarray:
    """Unit maximisers of the (at most ``max_add``) most violated patterns, h > β, that are
    not already atoms."""
    viol = np.nonzero(h > reg * (1 + 1e-12))[0]
    order = viol[np.argsort(-h[viol])][:max_add]
    new = Umax[order]
    new /= np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-300)
    if len(U) and len(new):
        dup = (new @ U.T).max(1) > 1 - 1e-13
        new = new[~dup]
    return new


#: partial pricing: candidate cells (x max_add) and rounds between full pricings
_PARTIAL_FACTOR, _PARTIAL_ROUNDS = 8, 2


def _partial_atoms(cand: ConeFaces, lam: np.ndarray, dual_rows: Callable | None,
                   U: np.ndarray, reg: float, tol: float, max_add: int) -> np.ndarray:
    """New atoms from the candidate cells when one is violated by more than ``tol``."""
    if cand.P == 0:
        return np.zeros((0, U.shape[1]))
    h, Umax = cand.oracle(lam if dual_rows is None else dual_rows(lam))
    if float(h.max()) <= reg * (1 + tol):
        return np.zeros((0, U.shape[1]))
    return _new_atoms(h, Umax, U, reg, max_add)


def _half_the_memory() -> float:
    """Half of this machine's physical memory (2 GiB where it cannot be read)."""
    try:
        return 0.5 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2.0 * 2**30


#: default memory budget of :func:`fit_exact` (bytes) before it refuses: half the machine's
#: memory (the estimate is conservative: measured peaks 0.6-1.0x of it at n = 200-400, rank 3)
DEFAULT_MAX_MEMORY = _half_the_memory()


def estimate_exact_memory(n: int, r: int, n_patterns: int) -> int:
    """Estimated peak bytes of the exact solver: masks (n bytes per cell), facets and the face
    spans of the oracle (C(f̄, < r) per cell with f̄ ≈ 2r facets; r x k bases, three copies for
    the oracle's temporaries)."""
    fbar = 2 * max(r, 1)
    spans = sum(math.comb(fbar, s) for s in range(max(r, 1)))
    return int(n_patterns * (n + 8 * fbar * r + 3 * spans * 8 * (r * r + 2)))


def fit_exact(X, Y, reg: float, loss: str | Loss = "squared", *, intercept: bool,
              random_state=None, tol: float = 1e-6, max_iter: int = 200,
              max_time: float | None = None, verbose: int = 0,
              max_patterns: int | None = None, master: str = "auto",
              max_memory: float = DEFAULT_MAX_MEMORY) -> FitResult:
    """Global optimum of the vector-output weight-decay problem for low-rank X (exact).

    Enumerates every activation pattern and runs column generation with the exact
    cone-constrained PCA oracle until the *global* certified relative gap is ≤ ``tol``.
    Refuses (never a silent fallback) when the pattern bound exceeds ``max_patterns`` (None: no
    count limit) or when :func:`estimate_exact_memory` exceeds ``max_memory`` bytes.
    ``random_state`` is unused (the method is deterministic); accepted for a uniform signature.
    """
    Xn, Yn = check_inputs(X, Y, reg)
    lo = get_loss(loss)
    t0 = time.perf_counter()
    cnt = count_patterns(Xn)
    est = estimate_exact_memory(Xn.shape[0], cnt["rank"], cnt["bound"])
    if est > max_memory and (max_patterns is None or cnt["bound"] <= max_patterns):
        raise ValueError(f"fit_exact refused: rank {cnt['rank']} data with up to "
                         f"{cnt['bound']:,} activation patterns needs an estimated "
                         f"{est / 2**30:.1f} GiB (> max_memory={max_memory / 2**30:.1f} GiB) "
                         "for the exact oracle. Reduce the rank (e.g. PCA to 2-3 components), "
                         "subsample rows, raise max_memory, or use a sampled method.")
    pats = enumerate_patterns(Xn, max_patterns=max_patterns)
    t_enum = time.perf_counter() - t0
    faces = ConeFaces(Xn, pats.gates, exhaustive=True, max_faces=None)  # memory-checked above
    t_faces = time.perf_counter() - t0 - t_enum
    out = solve_exact_program(Xn, Yn, reg, lo, patterns=pats, faces=faces, tol=tol,
                              max_iter=max_iter, max_time=max_time, verbose=verbose,
                              master=master)
    dt, dev = dtype_device(X)
    net = atoms_to_network(out["U"], out["G"], intercept, dt, dev)
    cert = out["certificate"]
    info = {"method": "exact", "stop_reason": out["stop_reason"], "n_patterns": pats.n_patterns,
            "rank": pats.info["rank"], "n_faces": faces.n_faces, "n_neurons": net.n_neurons,
            "lower_bound": cert.dual, "upper_bound": cert.primal, "h_max_over_reg":
            out["h_max"] / reg, "seconds_enumeration": t_enum, "seconds_faces": t_faces,
            "seconds_total": time.perf_counter() - t0, "optimal": cert.relative_gap <= tol}
    if cert.relative_gap > tol:
        warnings.warn(f"fit_exact stopped ({out['stop_reason']}) at certified relative gap "
                      f"{cert.relative_gap:.2e} > tol={tol:.1e}; the certificate still bounds "
                      "the sub-optimality", RuntimeWarning, stacklevel=2)
    return FitResult(net, cert, out["history"], info)


def fit_column_generation(X, Y, reg: float, loss: str | Loss = "squared", *, intercept: bool,
                          n_patterns: int = 2000, random_state=None, tol: float = 1e-6,
                          max_iter: int = 200, max_time: float | None = None,
                          refresh: bool = True, kind: str = "data", verbose: int = 0,
                          master: str = "auto") -> FitResult:
    """Active-set / column-generation mode over *sampled* patterns.

    Each round scans a pool of ``n_patterns`` sampled patterns (a fresh pool per round when
    ``refresh``) with the exact per-pattern oracle, adds the atoms of the violated patterns,
    re-solves the master problem, and stops when no violated constraint is found in the pool and
    the gap over it is ≤ ``tol``. Proven: optimality over the final pool (scope "sampled
    patterns"); the network's objective is an upper bound on the global optimum p*.
    """
    Xn, Yn = check_inputs(X, Y, reg)
    rng = np.random.default_rng(random_state)
    Xt = torch.as_tensor(Xn)
    fixed = {}

    def pool(round_):
        if round_ == 0 or refresh:
            ps = sample_gates(Xt, n_patterns, rng, kind=kind, intercept_column=intercept)
            fixed["gates"] = ps.gates.numpy()
        return fixed["gates"]

    t0 = time.perf_counter()
    out = solve_exact_program(Xn, Yn, reg, loss, patterns=None, tol=tol, max_iter=max_iter,
                              max_time=max_time, pool=pool, verbose=verbose, master=master)
    dt, dev = dtype_device(X)
    net = atoms_to_network(out["U"], out["G"], intercept, dt, dev)
    cert = out["certificate"]
    info = {"method": "column_generation", "stop_reason": out["stop_reason"],
            "pool_size": cert.n_patterns, "n_neurons": net.n_neurons,
            "upper_bound": cert.primal, "sampled_lower_bound": cert.dual,
            "seconds_total": time.perf_counter() - t0,
            "proved": (f"optimal to relative gap {cert.relative_gap:.2e} over the "
                       f"{cert.n_patterns} patterns (last pool plus the network's own patterns); "
                       "not a global proof (use fit_exact / certify for that)")}
    return FitResult(net, cert, out["history"], info)

