"""Convex CNNs on scikit-learn digits (8x8): convex programs vs Adam vs the convex FC model.

Run:  .venv/bin/python benchmarks/bench_cnn.py [--out benchmarks/results/cnn.md] [--quick]

Architecture (all CNN rows): Conv2d(1, m, 3) + bias → ReLU (or gated ReLU) → AvgPool2d(2) →
Flatten → Linear(9m, 10, bias=False); objective = cross-entropy summed over the training
samples + (reg/2)·||all weights||² (the papers' convention), reg = 0.1.

1. Convex gated CNN (FISTA on the nuclear-norm program; exact for the gated CNN with its gates).
2. Convex ReLU CNN (augmented Lagrangian on the output-separable cone-constrained program; a
   restriction of the exact program, so its objective upper-bounds the ReLU-CNN optimum).
3. The same ReLU CNN trained by full-batch Adam (several seeds), same objective.
4. The convex two-layer fully-connected model (``TwoLayerProgram`` + ``solve``, gated, on the
   64 pixels + intercept) — a different architecture: compare test accuracy, not objectives.
5. Time to certificate tolerance on an exact-type program (scalar output, global average
   pooling, ReLU; binary task "3 vs 8", squared loss on ±1): our AL vs CVXPY+Clarabel on the
   same program.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from convexnn.formulations.cnn import ConvTwoLayerProgram, solve
from convexnn.formulations.two_layer import TwoLayerProgram
from convexnn.formulations.two_layer import solve as solve_fc
from convexnn.losses import get_loss
from convexnn.patches import sample_patch_gates
from convexnn.patterns import sample_gates

REG = 0.1
DT = torch.float64


def time_to(hist, level: float) -> str:
    for g, s in zip(hist.relative_gap, hist.seconds):
        if g <= level:
            return f"{s:.1f}"
    return "—"


def acc(Z: torch.Tensor, y: np.ndarray) -> float:
    return float((Z.argmax(1).cpu().numpy() == y).mean())


def adam_cnn(Xtr, Ytr, Xte, yte, m: int, seed: int, steps: int, lr: float = 1e-2):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, m, 3), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(9 * m, 10, bias=False)).to(DT)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ce = get_loss("cross_entropy")
    t0 = time.perf_counter()
    best = float("inf")
    for _ in range(steps):
        opt.zero_grad()
        obj = ce.value(model(Xtr), Ytr) + 0.5 * REG * sum((p ** 2).sum()
                                                           for p in model.parameters())
        obj.backward()
        opt.step()
        best = min(best, obj.item())
    with torch.no_grad():
        final = (ce.value(model(Xtr), Ytr) + 0.5 * REG * sum((p ** 2).sum()
                                                              for p in model.parameters())).item()
        a = acc(model(Xte), yte)
    return final, a, time.perf_counter() - t0


def log(msg: str) -> None:
    print(f"[bench_cnn {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def adam_row(Xt, Yt, Xv, yte, m, seeds, steps, label):
    objs, accs, secs = [], [], []
    for seed in range(seeds):
        o, a, s = adam_cnn(Xt, Yt, Xv, yte, m, seed, steps)
        objs.append(o)
        accs.append(a)
        secs.append(s)
    return (f"Adam ReLU CNN, {label} ({seeds} seeds, {steps} full-batch steps)", "—", m,
            f"{np.mean(objs):.3f} (min {np.min(objs):.3f})", "—", "—",
            f"{np.mean(accs):.4f}", f"{np.mean(secs):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    q = args.quick
    t_gated, t_relu, t_fc = (10, 15, 10) if q else (45, 60, 30)
    n_relu = 4
    adam_steps, seeds = (200, 2) if q else (1500, 3)

    d = load_digits()
    X, y = d.images / 16.0, d.target
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    Xt, Xv = torch.as_tensor(Xtr[:, None]), torch.as_tensor(Xte[:, None])
    Yt = torch.as_tensor(np.eye(10)[ytr])
    rows = []
    lines = [f"digits: {len(ytr)} train / {len(yte)} test, reg = {REG} (summed CE), "
             f"torch threads = 2"]

    # 1. gated convex CNN
    pats = sample_patch_gates(Xt, 100, 3, intercept=True, random_state=0)
    prog = ConvTwoLayerProgram(Xt, Yt, pats, REG, "cross_entropy", "gated", kernel_size=3,
                               pooling="avg", pool_size=2)
    x, cert, res = solve(prog, tol=1e-3, max_iter=100000, max_time=t_gated, check_every=20)
    net = prog.to_network(x, tol=1e-10)
    rows.append(("convex gated CNN (FISTA, exact for gated CNN)", f"{prog.P} gates",
                 net.n_filters, f"{cert.primal:.3f}", f"{cert.dual:.3f}",
                 f"{cert.relative_gap:.1e}", f"{acc(net.forward(Xv), yte):.4f}",
                 f"{res.seconds:.1f}"))
    log("gated done")
    lines.append(f"gated CNN: time (s) to relative gap 1e-1 / 1e-2 / 1e-3: "
                 f"{time_to(res.history, 1e-1)} / {time_to(res.history, 1e-2)} / "
                 f"{time_to(res.history, 1e-3)} ({res.n_iter} iterations, stop: "
                 f"{res.stop_reason})")

    # 3. Adam on the same ReLU CNN (full training set)
    for m in (32,):
        rows.append(adam_row(Xt, Yt, Xv, yte, m, seeds, adam_steps, "full train"))
    log("adam full done")

    # 2. ReLU convex CNN (output-separable restriction) on a training subset (AL cost is
    #    O(N K S P c) per iteration), compared with Adam on the same subset and objective
    ns = 300
    Xs, Ys = Xt[:ns], Yt[:ns]
    pats_r = sample_patch_gates(Xs, n_relu, 3, intercept=True, random_state=0)
    prog_r = ConvTwoLayerProgram(Xs, Ys, pats_r, REG, "cross_entropy", "relu", kernel_size=3,
                                 pooling="avg", pool_size=2)
    xr, cert_r, res_r = solve(prog_r, tol=1e-3, max_iter=100000, max_time=t_relu,
                              check_every=20, final_refine_iters=50)
    net_r = prog_r.to_network(xr, tol=1e-10)
    rows.append((f"convex ReLU CNN (AL, output-separable restriction), n_train={ns}",
                 f"{prog_r.P} gates", net_r.n_filters, f"{cert_r.primal:.3f}",
                 f"{cert_r.dual:.3f}", f"{cert_r.relative_gap:.1e}",
                 f"{acc(net_r.forward(Xv), yte):.4f}", f"{res_r.seconds:.1f}"))
    log("relu done")
    for m in (32, 128):
        rows.append(adam_row(Xs, Ys, Xv, yte, m, seeds, adam_steps, f"n_train={ns}"))
    log("adam subset done")

    # 4. convex two-layer FC (gated, nuclear norm) on 64 pixels + intercept
    Xf = torch.cat([Xt.reshape(len(ytr), -1), torch.ones(len(ytr), 1, dtype=DT)], 1)
    Xfv = torch.cat([Xv.reshape(len(yte), -1), torch.ones(len(yte), 1, dtype=DT)], 1)
    pf = sample_gates(Xf, 100, 0, kind="data", intercept_column=True)
    prog_f = TwoLayerProgram(Xf, Yt, pf, REG, "cross_entropy", "gated", intercept=True)
    xf, cert_f, res_f = solve_fc(prog_f, solver="fista", tol=1e-3, max_iter=100000,
                                 max_time=t_fc, check_every=20)
    net_f = prog_f.to_network(xf, tol=1e-10)
    rows.append(("convex gated two-layer FC (TwoLayerProgram)", f"{prog_f.P} gates",
                 net_f.n_neurons, f"{cert_f.primal:.3f}", f"{cert_f.dual:.3f}",
                 f"{cert_f.relative_gap:.1e}", f"{acc(net_f.forward(Xfv[:, :-1]), yte):.4f}",
                 f"{res_f.seconds:.1f}"))

    log("fc done")
    # 5. time to certificate on an exact-type program vs CVXPY
    sel = np.isin(y, (3, 8))
    Xb, yb = X[sel][:120], np.where(y[sel][:120] == 3, 1.0, -1.0)
    Xbt = torch.as_tensor(Xb[:, None])
    Yb = torch.as_tensor(yb[:, None])
    pb = sample_patch_gates(Xbt, 10, 3, intercept=True, random_state=0)
    prog_b = ConvTwoLayerProgram(Xbt, Yb, pb, 1.0, "squared", "relu", kernel_size=3)
    t0 = time.perf_counter()
    xb, cert_b, res_b = solve(prog_b, tol=1e-4, max_iter=100000, max_time=60, check_every=20,
                              refine_iters=5)
    t_al = time.perf_counter() - t0
    t0 = time.perf_counter()
    xc, cert_c, res_c = solve(prog_b, solver="cvxpy", cvxpy_solver="CLARABEL")
    t_cv = time.perf_counter() - t0
    lines.append(
        f"exact-type program (3 vs 8, n={len(yb)}, {prog_b.P} gates, GAP, scalar, ReLU, reg=1): "
        f"AL time to rel. gap 1e-2 / 1e-3 / 1e-4: {time_to(res_b.history, 1e-2)} / "
        f"{time_to(res_b.history, 1e-3)} / {time_to(res_b.history, 1e-4)} s "
        f"(total {t_al:.1f} s, primal {cert_b.primal:.6f}, certified rel. gap "
        f"{cert_b.relative_gap:.1e}); CVXPY+Clarabel {t_cv:.1f} s incl. compile "
        f"(solver {res_c.seconds:.1f} s), optimum {res_c.extras['value']:.6f}; "
        f"ratio AL(1e-3)/CVXPY = "
        + (f"{float(time_to(res_b.history, 1e-3)) / t_cv:.2f}"
           if time_to(res_b.history, 1e-3) != "—" else "n/a"))

    head = ("| model | patterns | filters/neurons | train objective | certified lower bound | "
            "rel. gap | test acc | seconds |")
    out = [head, "|" + "---|" * 8]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    text = "\n".join(out) + "\n\n" + "\n".join(f"- {s}" for s in lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
