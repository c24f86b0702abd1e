"""Column generation over activation patterns (pattern search)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from ...certificates import Certificate
from ...patterns.sampling import PatternSet, deduplicate_gates, mask_hashes, sample_gates
from ...patterns.search import search_gates
from .program import TwoLayerProgram
from .solve import solve


def solve_with_search(prog: TwoLayerProgram, *, rounds: int = 10, search_starts: int = 100,
                      search_iters: int = 25, add_per_round: int = 20, prune: bool = True,
                      random_state=None,
                      verbose: int = 0, **solve_options
                      ) -> tuple[TwoLayerProgram, Tensor, Certificate, dict]:
    """Column generation over activation patterns: solve, grow the pattern set, re-solve.

    Each round, after solving the program over the current patterns S (``solve``), two kinds
    of patterns are added:

    * **dual search** — at λ = ∇L(prediction of the read-back network), the patterns whose
      dual constraint max_{u ∈ K_D, ||u|| ≤ 1} ∓λᵀ D X u ≤ β is violated, found by the local
      search :func:`convexnn.patterns.search_gates` from random starts and from the current
      neurons (the ``add_per_round`` most violated, value > β, deduplicated) — a pattern whose
      constraint is violated is one the optimum over S ∪ {D} uses to go lower;
    * **primal refinement** (ReLU) — the activation patterns of the read-back network's own
      neurons, so that the next program contains that network (reverse map,
      :meth:`TwoLayerProgram.from_network`) and its optimum is at most the network's objective.

    With ``prune``, patterns whose groups are all zero at the current solution are dropped
    (the program stays near the size of the network). The next program is warm-started from
    that network. Rounds stop when nothing new is found,
    when the objective stops improving (relative 1e-6), or after ``rounds`` rounds. The final
    certificate is the final program's (scope "sampled patterns": optimal over the patterns
    sampled *and found*; the search is a heuristic, so "no violation found" is reported but is
    not a proof of global optimality). Returns ``(program, x, certificate, info)`` with
    per-round ``info["rounds"]`` (patterns, objective, dual bound, largest violation found
    relative to β), ``info["results"]`` (every solver result) and ``info["result"]`` (the
    returned solution's).
    """
    rng = np.random.default_rng(random_state)
    t0 = time.perf_counter()
    max_time = solve_options.pop("max_time", None)

    def left():
        return None if max_time is None else max(max_time - (time.perf_counter() - t0), 0.0)

    x, cert, res = solve(prog, verbose=verbose, max_time=max_time, **solve_options)
    log = [{"patterns": prog.P, "objective": cert.primal, "dual": cert.dual,
            "max_violation": None}]
    info = {"rounds": log, "results": [res], "result": res, "stop": "max rounds"}
    if rounds <= 0:
        info["stop"] = "no search"
    for r in range(rounds):
        if max_time is not None and left() <= 0:
            info["stop"] = "max_time"
            break
        net = prog.to_network(x)
        new, vmax, have = _violated_patterns(prog, x, net, rng, search_starts, search_iters,
                                             add_per_round)
        new_prog, x0 = _next_program(prog, x, net, new, prune)
        if all(h in have for h in mask_hashes(prog.X, new_prog.G, prog.chunk).tolist()):
            info["stop"] = "no new pattern found"
            log[-1]["max_violation"] = vmax / prog.reg
            break
        opts = dict(solve_options)
        if "rho" in res.extras:  # ADMM: start from (a cautious multiple of) the last penalty
            opts["admm_options"] = {**(opts.get("admm_options") or {}),
                                    "rho": 8.0 * res.extras["rho"]}
        x_new, cert_new, res_new = solve(new_prog, x0=x0, verbose=verbose, max_time=left(),
                                         **opts)
        res = res_new
        info["results"].append(res_new)
        log[-1]["max_violation"] = vmax / prog.reg
        log.append({"patterns": new_prog.P, "objective": cert_new.primal, "dual": cert_new.dual,
                    "max_violation": None})
        if verbose:
            print(f"[search] round {r + 1}: P {prog.P} -> {new_prog.P} (+{new.shape[1]} by "
                  f"the dual search, max violation {vmax / prog.reg:.3g}·β), objective "
                  f"{cert.primal:.8g} -> {cert_new.primal:.8g}")
        improved = cert_new.primal < cert.primal * (1 - 1e-6)
        if cert_new.primal > cert.primal and cert_new.relative_gap > cert.relative_gap:
            info["stop"] = "objective stopped improving"  # keep the better, certified model
            break
        prog, x, cert = new_prog, x_new, cert_new
        info["result"] = res_new
        if not improved:
            info["stop"] = "objective stopped improving"
            break
    return prog, x, cert, info


def _violated_patterns(prog: TwoLayerProgram, x: Tensor, net, rng: np.random.Generator,
                       search_starts: int, search_iters: int, add_per_round: int):
    """The dual search at the read-back network ``net``: (new gates (d, k) not in the program,
    most violated first, at most ``add_per_round``; the largest value found; the program's
    pattern hashes)."""
    if prog.activation == "relu":
        Z = prog.network_predict(prog.relu_state(x))
    else:
        Z = prog.linear(x)
    lam = prog.loss.grad(Z, prog.Y)
    dirs = torch.cat([-lam, lam], 1)
    starts = sample_gates(prog.X, search_starts, rng, kind="data",
                          intercept_column=prog.intercept, deduplicate=False).gates
    own = net.first_layer_weights if net.activation == "relu" else net.gate_weights
    own_b = net.first_layer_bias if net.activation == "relu" else net.gate_bias
    if own.shape[0]:
        own_aug = torch.cat([own, own_b[:, None]], 1) if prog.intercept else own
        starts = torch.cat([starts, own_aug.T.to(starts)], 1)
    gates, vals = search_gates(prog.X, dirs, starts, iters=search_iters,
                               chunk=prog.chunk, gated=prog.activation == "gated")
    vmax = float(vals.max()) if vals.numel() else 0.0
    order = torch.argsort(vals, descending=True)
    order = order[vals[order] > prog.reg]
    new = deduplicate_gates(prog.X, gates[:, order], chunk=prog.chunk) \
        if order.numel() else gates[:, :0]
    # drop patterns already in the program, keep the most violated few
    have = set(mask_hashes(prog.X, prog.G, prog.chunk).tolist())
    if new.shape[1]:
        hn = mask_hashes(prog.X, new, prog.chunk).tolist()
        keep = [i for i, h in enumerate(hn) if h not in have][:add_per_round]
        new = new[:, keep]
    return new, vmax, have


def _next_program(prog: TwoLayerProgram, x: Tensor, net, new: Tensor, prune: bool):
    """The next round's program (the used or all current patterns, the new ones and the
    network's own) and its warm start (the network; None without neurons)."""
    old = prog.G
    if prune and net.n_neurons:
        # drop the patterns the solution does not use: the next program still contains
        # the current network (its own patterns are added), so it can only go lower
        old = prog.G[:, torch.linalg.vector_norm(x, dim=2).sum((0, 2)) > 0]
    extra = PatternSet(torch.cat([old, new], 1),
                       exhaustive=prog.patterns.exhaustive and not prune)
    if net.n_neurons:
        return TwoLayerProgram.from_network(net, prog.X, prog.Y, prog.reg, prog.loss,
                                            intercept=prog.intercept, extra_patterns=extra)
    return TwoLayerProgram(prog.X, prog.Y, extra, prog.reg, prog.loss, prog.activation,
                           intercept=prog.intercept), None
