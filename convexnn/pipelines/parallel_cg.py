r"""Column generation for the path-regularised parallel program: blocks found by the dual.

The pricing problem (the dual constraint over all blocks) and its search are described in
:mod:`convexnn.formulations.parallel.pricing`.

**Algorithm.** (1) solve the program over S (interior point,
:mod:`convexnn.formulations.parallel.interior`, or any backend of
:func:`convexnn.pipelines.parallel_solve.solve`); (2) read the network back, Λ = ∇L;
(3) search; stop if no q with value > β(1 + ``price_tol``) is found; (4) S ← {blocks non-zero
in the solution} ∪ {up to ``max_new`` new distinct blocks, best first}; repeat. Keeping the
non-zero blocks makes p_S non-increasing from round to round.

**What is proved.** The final certificate is the duality gap of the read-back network for the
program over the final S (scope "sampled patterns": optimal over the blocks found). A search
that finds no violated block is *not* a proof of global optimality (the search is local); a
search that finds one *is* a proof that the network is not globally optimal, and ``info``
reports the largest value found (``max_ratio`` = h_found / β).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from ..formulations.parallel.blocks import ParallelBlocks, sample_blocks
from ..formulations.parallel.kkt import NotStrictlyFeasible
from ..formulations.parallel.pricing import candidate_keys, direction_index, price, select_blocks
from ..formulations.parallel.program import ParallelProgram
from ..formulations.parallel.tree import Tree, TreeBlocks, sample_tree_blocks
from ..formulations.parallel.tree_program import TreeProgram
from ..losses import Loss, get_loss
from ..results import FitResult
from ..solvers.base import History, StopReason
from .parallel_solve import solve, solve_pruned

__all__ = ["fit_parallel_cg"]


def fit_parallel_cg(X: Tensor, Y: Tensor, *, reg: float, depth: int = 3, width: int = 2,
                    loss: str | Loss = "squared", intercept: bool = True,
                    n_init_blocks: int = 20, max_rounds: int = 30, max_new: int | None = None,
                    n_starts: int = 128, n_steps: int = 100, price_tol: float = 1e-3,
                    tol: float = 1e-7, round_tol: float = 1e-6, max_time: float | None = None,
                    solver: str = "auto", random_state=None, gate_kind: str = "gaussian",
                    verbose: int = 0, prune: float = 1e-6, warm_start: bool = True,
                    intercept_column: bool | None = None) -> FitResult:
    """Column generation (module docstring). ``X`` carries the ones column when ``intercept``.

    Each round adds up to ``max_new`` new blocks (default 20 per residual direction (t, ε),
    i.e. 40 c) and solves the program over the current blocks to a relative gap ``round_tol``
    (any backend of :func:`convexnn.formulations.parallel.solve`). Between rounds a block is
    dropped when its norm is ≤ max(``prune``, 10·``round_tol``)·max: interior-point solutions
    leave the blocks that are zero at the optimum at norms of the order of the solve's accuracy.
    Stops when the search finds no block with ⟨−Λ, g⟩ > β(1 + ``price_tol``), after
    ``max_rounds`` rounds or when ``max_time`` seconds have passed (checked after each search;
    a started solve is finished); then the last program is re-solved to ``tol`` over its blocks
    of norm > ``prune``·max, and searched once more at the returned network (on top of
    ``max_time``). Returns a :class:`FitResult` whose certificate is
    that of the read-back network for the program over the final blocks; ``info["pricing"]``
    reports the last search and ``info["rounds"]`` the trajectory (objective, blocks, seconds
    per round)."""
    _check_args(reg, max_rounds, n_init_blocks, max_new)
    t0 = time.perf_counter()
    lo = get_loss(loss)
    rng = random_state if isinstance(random_state, np.random.Generator) \
        else np.random.default_rng(random_state)
    icol = intercept if intercept_column is None else intercept_column
    c = Y.shape[1]
    max_new = 20 * 2 * c if max_new is None else int(max_new)
    search = {"width": width, "depth": depth, "n_starts": n_starts, "n_steps": n_steps,
              "random_state": rng, "intercept_column": icol}
    prog = _program(X, Y, _initial_blocks(X, n_init_blocks, width, depth, c, rng, gate_kind, icol),
                    reg, lo, depth, intercept)
    x, res = _master(prog, solver, round_tol, prune, None)
    hist = History()
    rounds: list[dict] = []
    prev: tuple[Tensor, Tensor, Tensor] | None = None
    for rnd in range(max_rounds + 1):
        obj, act, cand = _evaluate(prog, x, X, Y, lo, c, prev, search)
        ratio = cand.best / reg
        elapsed = time.perf_counter() - t0
        rounds.append(_round_record(rnd, obj, prog, act, ratio, res, cand, elapsed, verbose))
        hist.append(rnd, obj, float("nan"), float("nan"), elapsed)
        reason = _stop_reason(ratio, price_tol, rnd, max_rounds, max_time, elapsed)
        if reason is not None:
            break
        prev, grown = _next_blocks(X, prog, x, act, cand, reg, price_tol, max_new, c)
        if grown is None:  # violations found, but all of them already in S (round-off level)
            reason = StopReason.STALLED
            break
        prog = _program(X, Y, grown[0], reg, lo, depth, intercept)
        x, res = _master(prog, solver, round_tol, prune, grown[1] if warm_start else None)
    return _final_fit(prog, x, X, Y, lo, reg, c, search, solver, tol, prune, price_tol, reason,
                      rounds, hist, t0)


def _check_args(reg: float, max_rounds: int, n_init_blocks: int, max_new: int | None) -> None:
    if reg <= 0:
        raise ValueError(f"reg must be > 0, got {reg}")
    if max_rounds < 0 or n_init_blocks < 0 or (max_new is not None and max_new < 1):
        raise ValueError("max_rounds and n_init_blocks must be >= 0 and max_new >= 1")


def _program(X: Tensor, Y: Tensor, blk: ParallelBlocks | TreeBlocks, reg: float, lo: Loss,
             depth: int, intercept: bool) -> ParallelProgram:
    """The program over the blocks ``blk`` (tree sub-networks for depth ≥ 4)."""
    p = TreeProgram(X, Y, blk, reg, lo, intercept=intercept) if depth >= 4 else \
        ParallelProgram(X, Y, blk, reg, lo, depth=depth, intercept=intercept)
    p.block_source = "column-generation"
    return p


def _evaluate(prog: ParallelProgram, x: Tensor, X: Tensor, Y: Tensor, lo: Loss, c: int,
              prev: tuple | None, search: dict):
    """(objective, active blocks, search result) at the network read back from ``x``."""
    net_pred = prog.network_predict(prog.linear(x))
    obj = float(lo.value(net_pred, Y) + prog.penalty(x))
    # warm starts: the network's own sub-networks and last round's best candidates
    act, init = _active_starts(prog, x, c, prev)
    cand = price(X, lo.grad(net_pred, Y), init=init, **search)
    return obj, act, cand


def _stop_reason(ratio: float, price_tol: float, rnd: int, max_rounds: int,
                 max_time: float | None, elapsed: float) -> StopReason | None:
    """Why the loop stops after this round's search (None: it goes on)."""
    if ratio <= 1 + price_tol:
        return StopReason.CONVERGED
    if rnd == max_rounds:
        return StopReason.MAX_ITER
    if max_time is not None and elapsed >= max_time:
        return StopReason.MAX_TIME
    return None


def _next_blocks(X: Tensor, prog: ParallelProgram, x: Tensor, act: Tensor, cand, reg: float,
                 price_tol: float, max_new: int, c: int):
    """(search starts for the next round: this round's best candidates, (blocks, warm start)
    of the next program or None when every violated block is already in S)."""
    tree = getattr(prog, "tree", None)
    keep_keys = candidate_keys(X, prog.blocks.gates[act], prog.sig[act],
                               prog.blocks.outputs[act], prog.eps[act], tree)
    pick, _ = select_blocks(X, cand, keep_keys, reg, price_tol, max_new, tree)
    top = min(cand.values.numel(), 4 * max_new)
    prev = (cand.gates[:top], cand.signs[:top],
            direction_index(cand.outputs[:top], cand.eps[:top], c))
    if not pick:
        return prev, None
    return prev, _grown(prog, x, act, cand, torch.as_tensor(pick, device=X.device))


def _final_fit(prog: ParallelProgram, x: Tensor, X: Tensor, Y: Tensor, lo: Loss, reg: float,
               c: int, search: dict, solver: str, tol: float, prune: float, price_tol: float,
               reason: StopReason, rounds: list[dict], hist: History, t0: float) -> FitResult:
    """The last program re-solved to ``tol`` over its non-negligible blocks, searched once
    more at the returned network, and the :class:`FitResult`."""
    prog = prog.subset(prog.group_norms(x) > 0) if prog.B else prog
    prog, x, cert, res = solve_pruned(prog, solver=solver, tol=tol, prune=prune)
    # one more search at the returned network, so that the reported value is about it
    _, init = _active_starts(prog, x, c, None)
    cand = price(X, lo.grad(prog.network_predict(prog.linear(x)), Y), init=init, **search)
    found = cand.best / reg
    cert.problem += f"; pattern search at this network: max <-Λ,g>/β = {found:.6g}"
    net = prog.to_network(x)
    info = {"method": "column generation", "stop_reason": reason, "n_rounds": len(rounds),
            "rounds": rounds, "n_blocks": prog.B, "n_subnetworks": net.n_subnetworks,
            "seconds": time.perf_counter() - t0, "program": cert.problem,
            "pricing": _pricing_info(found, search["n_starts"], search["n_steps"], price_tol),
            "_program": prog, "_x": x, "_multipliers": res.extras.get("multipliers")}
    return FitResult(network=net, certificate=cert, history=hist, info=info)


def _round_record(rnd: int, obj: float, prog: ParallelProgram, act: Tensor, ratio: float, res,
                  cand, elapsed: float, verbose: int) -> dict:
    """One round of the trajectory (printed when ``verbose``)."""
    if verbose:
        print(f"[cg] round {rnd}: objective {obj:.8g}  blocks {prog.B}  active "
              f"{int(act.sum())}  max found <-Λ,g>/β = {ratio:.5f}  (master "
              f"{res.seconds:.2f}s/{res.n_iter} it, search {cand.seconds:.2f}s, "
              f"total {elapsed:.1f}s)")
    return {"round": rnd, "objective": obj, "n_blocks": prog.B,
            "n_subnetworks": int(act.sum()), "max_ratio": ratio,
            "master_seconds": res.seconds, "master_iterations": res.n_iter,
            "price_seconds": cand.seconds, "seconds": elapsed}


def _initial_blocks(X: Tensor, n_init_blocks: int, width: int, depth: int, c: int,
                    rng: np.random.Generator, gate_kind: str, icol: bool) -> ParallelBlocks:
    """``n_init_blocks`` sampled blocks (an empty set for 0)."""
    if depth >= 4:
        tree = Tree(depth, width)
        if n_init_blocks > 0:
            return sample_tree_blocks(X, n_init_blocks, tree, n_outputs=c, random_state=rng,
                                      gate_kind=gate_kind, intercept_column=icol)
        return _blocks_like(tree, *_empty(X, tree.n_leaves, tree.n_signs))
    if n_init_blocks > 0:
        return sample_blocks(X, n_init_blocks, width=width, depth=depth, n_outputs=c,
                             random_state=rng, gate_kind=gate_kind, intercept_column=icol)
    m = 1 if depth == 2 else int(width)
    return ParallelBlocks(*_empty(X, m, m))


def _empty(X: Tensor, m: int, s: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    kw = {"dtype": X.dtype, "device": X.device}
    return (torch.zeros(0, m, X.shape[1], **kw), torch.zeros(0, s, **kw),
            torch.zeros(0, dtype=torch.long, device=X.device), torch.zeros(0, **kw))


def _blocks_like(tree: Tree | None, gates: Tensor, signs: Tensor, outputs: Tensor,
                 eps: Tensor) -> ParallelBlocks | TreeBlocks:
    return ParallelBlocks(gates, signs, outputs, eps) if tree is None else \
        TreeBlocks(gates, signs, outputs, eps, tree)


def _master(prog: ParallelProgram, solver: str, round_tol: float, prune: float,
            x0: Tensor | None):
    """One round's solve to ``round_tol`` (not cut by max_time: a half-solved program would
    hand the search a wrong Λ), with the blocks at round-off level zeroed."""
    try:
        x, _, res = solve(prog, solver=solver, tol=round_tol, x0=x0)
    except NotStrictlyFeasible:  # the warm start touches a cone boundary: start afresh
        x, _, res = solve(prog, solver=solver, tol=round_tol)
    # interior-point solutions leave the blocks that are zero at the optimum at norms of
    # the order of the solve's accuracy: zero them (0 lies in every cone; pricing can bring
    # a block back)
    nrm = prog.group_norms(x)
    if nrm.numel() and float(nrm.max()) > 0:
        x = x * (nrm > max(prune, 10 * round_tol) * float(nrm.max()))[:, None, None]
    return x, res


def _active_starts(prog: ParallelProgram, x: Tensor, c: int, prev: tuple | None):
    """(active blocks, search starts): the network's unit sub-networks, then ``prev``."""
    act = prog.group_norms(x) > 0
    qa = x[act]
    qa = qa / torch.linalg.vector_norm(qa.flatten(1), dim=-1)[:, None, None]
    init_q, init_s = [qa], [prog.sig[act]]
    init_k = [direction_index(prog.blocks.outputs[act], prog.eps[act], c)]
    if prev is None:
        return act, (qa, init_s[0], init_k[0])
    init_q.append(prev[0])
    init_s.append(prev[1])
    init_k.append(prev[2])
    return act, (torch.cat(init_q), torch.cat(init_s), torch.cat(init_k))


def _grown(prog: ParallelProgram, x: Tensor, act: Tensor, cand, idx: Tensor):
    """The active blocks plus the picked candidates, and the warm start (new blocks at 0)."""
    blocks = _blocks_like(getattr(prog, "tree", None),
                          torch.cat([prog.blocks.gates[act], cand.gates[idx]]),
                          torch.cat([prog.sig[act], cand.signs[idx]]),
                          torch.cat([prog.blocks.outputs[act], cand.outputs[idx]]),
                          torch.cat([prog.eps[act], cand.eps[idx]]))
    return blocks, torch.cat([x[act], torch.zeros_like(cand.gates[idx])])


def _pricing_info(found: float, n_starts: int, n_steps: int, price_tol: float) -> dict:
    return {
        "max_ratio": found,
        "n_starts_per_direction": n_starts,
        "n_steps": n_steps,
        "violated_block_found": bool(found > 1 + price_tol),
        "statement": ("the certificate bounds the gap over the blocks found; a sub-network "
                      "with <-Λ,g>/β > 1 (searched at the returned network) proves the "
                      "network is not globally optimal, and a search that finds none is "
                      "not a proof of global optimality"),
    }
