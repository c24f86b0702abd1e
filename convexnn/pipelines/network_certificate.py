"""The certificate of a network fitted by the dual-guided descent (:mod:`.descent`): the
convex program over the network's own activation patterns, and the neuron search's estimate of
a global bound (the module docstring of :mod:`.descent`, items (i)-(iii))."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..certificates import SCOPE_SAMPLED, Certificate, relative, scaled_dual
from ..losses import Loss, OffsetLoss
from ..networks import TwoLayerNetwork
from ..patterns import PatternSet
from ..patterns.search import neuron_starts, search_neurons

__all__ = ["certify_network"]


def certify_network(net: TwoLayerNetwork, X: Tensor, Y: Tensor, reg: float, loss: Loss, *,
                    intercept: bool = True, offset: bool = True, rng=None,
                    search_starts: int = 64, tighten_seconds: float = 1.0,
                    shard=None) -> Certificate:
    """Certificate (i)-(ii) of the module docstring for ``net`` on (X, Y) (plain penalty).
    ``shard`` (samples spread over processes, :func:`.descent.fit_relu_descent`): the
    certificate of all samples, identical on every process; (i) then goes through the gated
    relaxation for one output too (the exact cone norms are per-sample programs)."""
    from ..formulations.two_layer import TwoLayerProgram

    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    red = None if shard is None else shard.sum
    lb = OffsetLoss(loss, reduce=red) if offset else loss

    def dual_at(h_max: float) -> tuple[float, float]:
        if red is None:
            return scaled_dual(lb, Lam, Y, h_max, reg)
        s = 1.0 if h_max <= reg else reg / h_max
        return -float(red(lb.conjugate(s * Lam, Y).reshape(1).double())[0]), s

    # certificates in float64 whatever the fit's precision
    X, Y, net = X.double(), Y.double(), net.to(dtype=torch.float64)
    n, c = X.shape[0], Y.shape[1]
    Xa = torch.cat([X, torch.ones(n, 1, dtype=X.dtype, device=X.device)], 1) if intercept \
        else X
    base = TwoLayerNetwork(net.first_layer_weights, net.first_layer_bias,
                           net.second_layer_weights, "relu")
    with torch.no_grad():
        Z = net.forward(X)
        if red is None:
            primal = float(lb.value(Z, Y) + 0.5 * reg * base.penalty())
        else:
            primal = float(red(lb.value(Z, Y).reshape(1))[0]) + 0.5 * reg * float(
                base.penalty())
        Lam = lb.grad(Z, Y)
        if c == 1 and net.n_neurons and shard is None:
            prog, x = TwoLayerProgram.from_network(base, Xa, Y, reg, lb, intercept=intercept)
            cert = prog.network_certificate(x)
            cert = prog.tighten(cert, [Lam], max_seconds=tighten_seconds)
            dual, scale = cert.dual, cert.dual_scale
            problem = ("ReLU: cone-constrained group lasso over the network's own activation "
                       "patterns (both output signs)")
            n_pat = prog.P
        else:
            W = torch.cat([net.first_layer_weights, net.first_layer_bias[:, None]], 1) \
                if intercept else net.first_layer_weights
            h = 0.0
            if net.n_neurons:
                gp = TwoLayerProgram(Xa, Y, PatternSet(W.T.contiguous()), reg, lb, "gated")
                corr = gp.rmatvec(Lam)
                h = float(gp.dual_norms((corr if red is None else red(corr))[None]).max())
                n_pat = gp.P
            else:
                n_pat = 0
            dual, scale = dual_at(h)
            problem = ("ReLU vector output (coupled): program over the network's own activation "
                       "patterns, bounded through its gated relaxation") if shard is None else (
                "ReLU: program over the network's own activation patterns, bounded through its "
                "gated relaxation (row-sharded)")
        starts, _ = neuron_starts(X, net.first_layer_weights, net.first_layer_bias,
                                   search_starts, rng, intercept)
        if shard is not None:  # drawn from rank 0's samples
            starts = shard.broadcast(starts.contiguous())
        _, vals = search_neurons(Xa, Lam, starts, reduce=red)
        hs = float(vals.max()) if vals.numel() else 0.0
        # one output: the exact cone norms over the own patterns are values of the sup too;
        # several: the gated h over-estimates it (a relaxation), so the estimate uses the search
        h_all = max(hs, reg / scale if scale < 1 and c == 1 else 0.0)
        est, _ = dual_at(h_all)
    gap = max(primal - dual, 0.0)
    return Certificate(primal=primal, dual=dual, gap=gap, relative_gap=relative(gap, primal),
                       scope=SCOPE_SAMPLED, problem=problem, n_patterns=n_pat,
                       dual_scale=scale, search_bound=min(est, primal),
                       max_violation=hs / reg)
