"""Convex CNNs on scikit-learn digits (8x8): convex programs vs Adam vs the convex FC model, and
our solver vs CVXPY + Clarabel on the same cone-constrained program.

Run:  .venv/bin/python benchmarks/bench_cnn.py [--quick] [--threads 2]
                                              [--out benchmarks/results/cnn.md]

Part A — 10-class digits (1257 train / 540 test, split random_state=0, pixels / 16).
Architecture of every CNN row: Conv2d(1, m, 3) + bias → ReLU (or gated ReLU) → AvgPool2d(2) →
Flatten → Linear(9m, 10, bias=False); objective = cross-entropy summed over the training samples
+ (reg/2)·||all weights||² with reg = 0.1 (the papers' convention). Rows:

1. convex gated CNN (FISTA on the group nuclear-norm program over P sampled gates): exact for the
   gated CNN with these gates, so its certified lower bound holds for every width;
2. the same gated CNN (same gates, r filters per gate) trained by Adam: the same non-convex
   problem, so its objective can be compared with the certificate directly;
3. convex ReLU CNN, the paper's cone program (ADMM + cutting planes on the output-separable
   cone-constrained program, a restriction of the exact program for 10 classes and 9 pooled
   outputs: its objective upper-bounds the ReLU-CNN optimum over the sampled patterns);
4. convex ReLU CNN, shared-filter program (filters fixed at many gate directions, one filter
   feeding all 90 outputs; group lasso on the output weights, ADMM) — another restriction;
5. the ReLU CNN trained by Adam (several seeds and widths), same objective (Adam runs in
   float32, as usual; its final objective and accuracy are evaluated in float64);
6. the convex two-layer fully-connected model (gated, on the 64 pixels + intercept): a different
   architecture, compare test accuracy only.

Part B — time to certificate tolerance on one program: binary "3 vs 8" (±1 targets, squared
loss, reg = 1), global average pooling, scalar output, ReLU (the paper's exact program, over
sampled gates). Ours: ADMM + cutting planes, certifying the projection of the iterate onto the
cones (``primal="feasible"``: a feasible point of the program, so the gap measures how well the
program is solved); CVXPY + Clarabel on the same program (all cone rows, default tolerances).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from _common import print_and_save
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from convexnn.formulations.cnn import ConvSharedFilterProgram, ConvTwoLayerProgram
from convexnn.formulations.two_layer import TwoLayerProgram
from convexnn.formulations.two_layer import solve as solve_fc
from convexnn.losses import get_loss
from convexnn.patterns import sample_gates
from convexnn.patterns.patches import sample_patch_gates
from convexnn.pipelines.cnn import solve

REG = 0.1
DT = torch.float64
CE = get_loss("cross_entropy")


def log(msg: str) -> None:
    print(f"[bench_cnn {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def time_to(hist, level: float) -> str:
    for g, s in zip(hist.relative_gap, hist.seconds):
        if g <= level:
            return f"{s:.1f}"
    return "—"


def acc(Z: torch.Tensor, y: np.ndarray) -> float:
    return float((Z.argmax(1).cpu().numpy() == y).mean())


class GatedCNN(nn.Module):
    """conv_u → ·1[conv_g ≥ 0] (fixed gates, ``r`` filters per gate) → AvgPool2d(2) → Linear."""

    def __init__(self, gates: torch.Tensor, r: int):
        super().__init__()
        P = gates.shape[1]
        self.register_buffer("gw", gates[:-1].T.reshape(P, 1, 3, 3).repeat_interleave(r, 0))
        self.register_buffer("gb", gates[-1].repeat_interleave(r))
        self.conv = nn.Conv2d(1, P * r, 3)
        self.lin = nn.Linear(9 * P * r, 10, bias=False)

    def forward(self, x):
        if getattr(self, "_mask_of", None) is not x:  # the gates are fixed: cache the masks
            self._mask_of, self._mask = x, (F.conv2d(x, self.gw, self.gb) >= 0).to(x.dtype)
        return self.lin(F.avg_pool2d(self.conv(x) * self._mask, 2).flatten(1))


def relu_cnn(m: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, m, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(9 * m, 10, bias=False))


def objective(model: nn.Module, X, Y) -> torch.Tensor:
    return CE.value(model(X), Y) + 0.5 * REG * sum((p ** 2).sum() for p in model.parameters())


def adam(make, seed: int, X, Y, Xv, yv, steps: int, lr: float = 1e-2):
    """Full-batch Adam in float32; final objective and accuracy in float64."""
    torch.manual_seed(seed)
    model = make().float()
    X32, Y32 = X.float(), Y.float()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        obj = objective(model, X32, Y32)
        obj.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    model = model.double()
    with torch.no_grad():
        return float(objective(model, X, Y)), acc(model(Xv), yv), seconds


def adam_row(label, make, seeds, X, Y, Xv, yv, steps, m, lower=None):
    runs = [adam(make, s, X, Y, Xv, yv, steps) for s in range(seeds)]
    objs = [o for o, _, _ in runs]
    note = ""
    if lower is not None:
        note = " ≥ bound ✓" if min(objs) >= lower else " < bound ✗"
    return (f"{label} (Adam, {seeds} seeds, {steps} full-batch steps)", "—", m,
            f"{np.mean(objs):.3f} (min {min(objs):.3f}){note}", "—", "—",
            f"{np.mean([a for _, a, _ in runs]):.4f}", f"{np.mean([s for _, _, s in runs]):.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    q = args.quick
    t_gated, t_relu, t_shared, t_fc = (15, 30, 20, 10) if q else (60, 150, 90, 20)
    P_gated, P_relu, P_shared = 100, (30 if q else 60), (200 if q else 400)
    steps, seeds = (200, 2) if q else (1000, 3)
    seeds_big = 2  # the slowest Adam rows (gated CNN, m = 128)
    t_start = time.perf_counter()

    d = load_digits()
    X, y = d.images / 16.0, d.target
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    Xt, Xv = torch.as_tensor(Xtr[:, None]), torch.as_tensor(Xte[:, None])
    Yt = torch.as_tensor(np.eye(10)[ytr])
    rows = []
    notes = [f"digits: {len(ytr)} train / {len(yte)} test, reg = {REG} (summed cross-entropy), "
             f"torch threads = {args.threads}, float64, CPU"]

    # ---- 1. gated convex CNN
    pats = sample_patch_gates(Xt, P_gated, 3, intercept=True, random_state=0)
    prog = ConvTwoLayerProgram(Xt, Yt, pats, REG, "cross_entropy", "gated", kernel_size=3,
                               pooling="avg", pool_size=2)
    x, cert, res = solve(prog, tol=1e-3, max_iter=100000, max_time=t_gated, check_every=20)
    net = prog.to_network(x, tol=1e-10)
    rows.append(("convex gated CNN (FISTA; exact for the gated CNN with these gates)",
                 f"{prog.P} gates", net.n_filters, f"{cert.primal:.3f}", f"{cert.dual:.3f}",
                 f"{cert.relative_gap:.1e}", f"{acc(net.forward(Xv), yte):.4f}",
                 f"{res.seconds:.1f}"))
    notes.append(f"gated CNN: time (s) to certified relative gap 1e-1 / 1e-2 / 1e-3: "
                 f"{time_to(res.history, 1e-1)} / {time_to(res.history, 1e-2)} / "
                 f"{time_to(res.history, 1e-3)} ({res.n_iter} iterations, stop: "
                 f"{res.stop_reason})")
    log("gated convex done")
    G = prog.G.float()
    rows.append(adam_row("same gated CNN (same gates, one filter per gate)",
                         lambda: GatedCNN(G, 1), seeds_big, Xt, Yt, Xv, yte, steps, prog.P,
                         lower=cert.dual))
    log("gated Adam done")

    # ---- 3. ReLU convex CNN (output-separable restriction), ADMM + cutting planes
    pats_r = sample_patch_gates(Xt, P_relu, 3, intercept=True, random_state=0)
    prog_r = ConvTwoLayerProgram(Xt, Yt, pats_r, REG, "cross_entropy", "relu", kernel_size=3,
                                 pooling="avg", pool_size=2)
    xr, cert_r, res_r = solve(prog_r, tol=1e-3, max_iter=100000, max_time=t_relu,
                              check_every=25, final_refine_iters=50)
    net_r = prog_r.to_network(xr, tol=1e-10)
    rows.append(("convex ReLU CNN (ADMM + cutting planes; output-separable restriction)",
                 f"{prog_r.P} gates", net_r.n_filters, f"{cert_r.primal:.3f}",
                 f"{cert_r.dual:.3f}", f"{cert_r.relative_gap:.1e}",
                 f"{acc(net_r.forward(Xv), yte):.4f}", f"{res_r.seconds:.1f}"))
    notes.append(f"ReLU CNN: time (s) to certified relative gap 1e-1 / 1e-2 / 1e-3: "
                 f"{time_to(res_r.history, 1e-1)} / {time_to(res_r.history, 1e-2)} / "
                 f"{time_to(res_r.history, 1e-3)} ({res_r.n_iter} ADMM iterations in "
                 f"{res_r.extras['rounds']} cutting-plane rounds, {prog_r.n_working_rows} of "
                 f"{prog_r.P * prog_r.a * prog_r.N * prog_r.win.size} cone rows in the working "
                 f"sets, stop: {res_r.stop_reason})")
    log("relu convex done")

    # ---- 4. shared-filter ReLU program (FISTA)
    pats_s = sample_patch_gates(Xt, P_shared, 3, intercept=True, random_state=0)
    prog_s = ConvSharedFilterProgram(Xt, Yt, pats_s, REG, "cross_entropy", kernel_size=3,
                                     pooling="avg", pool_size=2)
    xs, cert_s, res_s = solve(prog_s, tol=1e-3, max_iter=100000, max_time=t_shared,
                              check_every=20)
    net_s = prog_s.to_network(xs, tol=1e-10)
    rows.append(("convex ReLU CNN, shared-filter program (ADMM; filters fixed at the gates)",
                 f"{prog_s.P} gates", net_s.n_filters, f"{cert_s.primal:.3f}",
                 f"{cert_s.dual:.3f}", f"{cert_s.relative_gap:.1e}",
                 f"{acc(net_s.forward(Xv), yte):.4f}", f"{res_s.seconds:.1f}"))
    notes.append(f"shared-filter ReLU CNN: time (s) to certified relative gap 1e-1 / 1e-2 / "
                 f"1e-3: {time_to(res_s.history, 1e-1)} / {time_to(res_s.history, 1e-2)} / "
                 f"{time_to(res_s.history, 1e-3)} ({res_s.n_iter} iterations, stop: "
                 f"{res_s.stop_reason})")
    log("shared convex done")
    for m, sd in ((32, seeds), (128, seeds_big)):
        rows.append(adam_row(f"ReLU CNN, m={m}", lambda m=m: relu_cnn(m), sd, Xt, Yt, Xv,
                             yte, steps, m))
    log("relu Adam done")

    # ---- 5. convex two-layer FC (gated) on 64 pixels + intercept
    Xf = torch.cat([Xt.reshape(len(ytr), -1), torch.ones(len(ytr), 1, dtype=DT)], 1)
    pf = sample_gates(Xf, 100, 0, kind="data", intercept_column=True)
    prog_f = TwoLayerProgram(Xf, Yt, pf, REG, "cross_entropy", "gated", intercept=True)
    xf, cert_f, res_f = solve_fc(prog_f, solver="fista", tol=1e-3, max_iter=100000,
                                 max_time=t_fc, check_every=20)
    net_f = prog_f.to_network(xf, tol=1e-10)
    rows.append(("convex gated two-layer FC on pixels (a different architecture)",
                 f"{prog_f.P} gates", net_f.n_neurons, f"{cert_f.primal:.3f}",
                 f"{cert_f.dual:.3f}", f"{cert_f.relative_gap:.1e}",
                 f"{acc(net_f.forward(Xv.reshape(len(yte), -1)), yte):.4f}",
                 f"{res_f.seconds:.1f}"))
    log("fc done")

    # ---- Part B: time to certificate vs CVXPY + Clarabel on the same program
    sel = np.isin(y, (3, 8))
    nb = 120 if q else 200
    Xb = torch.as_tensor(X[sel][:nb, None])
    Yb = torch.as_tensor(np.where(y[sel][:nb] == 3, 1.0, -1.0)[:, None])
    lines_b = []
    for P_b in ((10,) if q else (10, 20)):
        pb = sample_patch_gates(Xb, P_b, 3, intercept=True, random_state=0)
        prog_b = ConvTwoLayerProgram(Xb, Yb, pb, 1.0, "squared", "relu", kernel_size=3)
        xb, cert_b, res_b = solve(prog_b, tol=1e-4, max_iter=200000, max_time=120,
                                  check_every=25, primal="feasible")
        prog_c = ConvTwoLayerProgram(Xb, Yb, pb, 1.0, "squared", "relu", kernel_size=3)
        t0 = time.perf_counter()
        _, cert_c, res_c = solve(prog_c, solver="cvxpy", cvxpy_solver="CLARABEL",
                                 primal="feasible")
        t_cv = time.perf_counter() - t0
        # the same program, solved without the feasibility projection (default certificate)
        _, cert_n, res_n = solve(ConvTwoLayerProgram(Xb, Yb, pb, 1.0, "squared", "relu",
                                                     kernel_size=3),
                                 tol=1e-4, max_iter=200000, max_time=120, check_every=25)
        t3 = time_to(res_b.history, 1e-3)
        lines_b.append(
            f"| {len(Yb)} | {prog_b.P} | {prog_b.N * prog_b.win.size} | "
            f"{time_to(res_b.history, 1e-2)} / {t3} / {time_to(res_b.history, 1e-4)} | "
            f"{cert_b.primal:.6f} (gap {cert_b.relative_gap:.1e}) | {t_cv:.1f} "
            f"({res_c.seconds:.1f}) | {res_c.extras['value']:.6f} (gap "
            f"{cert_c.relative_gap:.1e}) | "
            + (f"{float(t3) / t_cv:.2f}" if t3 != "—" else "n/a")
            + f" | {cert_n.primal:.6f} in {res_n.seconds:.1f} s |")
        log(f"part B P={P_b} done")

    head = ("| model | patterns | filters | train objective | certified lower bound | "
            "rel. gap | test acc | seconds |")
    cmd = ".venv/bin/python benchmarks/bench_cnn.py " + " ".join(sys.argv[1:])
    out = ["# Convex CNNs on digits (issue 4)", "", f"Command: `{cmd.strip()}`", "",
           "## A. 10-class digits", "", head, "|" + "---|" * 8]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    out += [""] + [f"- {s}" for s in notes]
    out += ["", "## B. Time to certificate on the same program: ours vs CVXPY + Clarabel", "",
            "Binary 3 vs 8, squared loss on ±1, reg = 1, ReLU, global average pooling, scalar "
            "output (the paper's exact program over the sampled gates).", "",
            "| n | gates | cone rows per gate | ours: s to certified rel. gap 1e-2 / 1e-3 / 1e-4 "
            "(feasible point) | ours: objective | Clarabel: s total (solver) | Clarabel: "
            "optimum | ratio ours(1e-3) / Clarabel | read-back network (default certificate) |",
            "|" + "---|" * 9] + lines_b
    out += ["", f"Total wall time: {time.perf_counter() - t_start:.0f} s."]
    text = "\n".join(out) + "\n"
    print_and_save(text, args.out)


if __name__ == "__main__":
    main()
