"""Benchmark: path-regularised deep parallel ReLU networks (issue 5).

Compares, on the same training objective  L(f(X), Y) + reg · R(θ)  (R = l2 path norm per
sub-network, summed; squared loss on ±1 / one-hot targets, summed over samples):

* convex: the exact convex program over sampled pattern blocks (CVXPY + Clarabel), network read
  back, certified duality gap (scope: sampled patterns);
* the same parallel architecture (depth 3, width 2, K sub-networks) trained by full-batch Adam
  and SGD in PyTorch from several seeds;
* the two-layer convex model (TwoLayerProgram + solve, weight decay) — a different regulariser,
  so only its test accuracy is comparable;
* the rank-r approximation (polynomial-time algorithm) with its reported guarantee factor.

Run:  .venv/bin/python benchmarks/bench_parallel.py   (about 3-5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from convexnn._validation import add_intercept
from convexnn.formulations.parallel import fit_parallel
from convexnn.formulations.two_layer import TwoLayerProgram, solve
from convexnn.networks_parallel import ParallelReLUModule
from convexnn.patterns import sample_gates

torch.set_num_threads(2)
DT = torch.float64


def load(name, n_train):
    X, y = (load_breast_cancer if name == "breast_cancer" else load_wine)(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    if n_train and len(Xtr) > n_train:
        Xtr, ytr = Xtr[:n_train], ytr[:n_train]
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), ytr, yte


def encode(y, k):
    return np.where(y == 1, 1.0, -1.0)[:, None] if k == 2 else np.eye(k)[y]


def accuracy(Z, y):
    pred = (Z[:, 0] > 0).astype(int) if Z.shape[1] == 1 else Z.argmax(1)
    return float((pred == y).mean())


def train_torch(Xtr, Ytr, reg, K, width, c, opt_name, seed, steps, lr):
    g = torch.Generator().manual_seed(seed)
    d = Xtr.shape[1]
    s = (2.0 / d) ** 0.5
    mod = ParallelReLUModule(torch.randn(K, width, d, generator=g, dtype=DT) * s,
                             torch.zeros(K, width, dtype=DT),
                             torch.randn(K, width, generator=g, dtype=DT) / width ** 0.5,
                             torch.randn(K, c, generator=g, dtype=DT) / K ** 0.5)
    X, Y = torch.as_tensor(Xtr, dtype=DT), torch.as_tensor(Ytr, dtype=DT)
    opt = (torch.optim.Adam(mod.parameters(), lr=lr) if opt_name == "adam"
           else torch.optim.SGD(mod.parameters(), lr=lr, momentum=0.9))
    t0 = time.perf_counter()

    def obj():
        return 0.5 * ((mod(X) - Y) ** 2).sum() + reg * mod.path_norm()

    for _ in range(steps):
        opt.zero_grad()
        loss = obj()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(obj()), mod, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n-patterns", type=int, default=60)
    ap.add_argument("--n-train", type=int, default=250)
    args = ap.parse_args()
    reg, width = 0.1, 2
    print(f"objective: 0.5||f(X)-Y||^2 + reg*R(theta), reg={reg}, depth 3, width {width}")
    for name in ["breast_cancer", "wine"]:
        Xtr, Xte, ytr, yte = load(name, args.n_train)
        k = len(np.unique(ytr))
        Ytr = encode(ytr, k)
        c = Ytr.shape[1]
        Xa = add_intercept(torch.as_tensor(Xtr, dtype=DT))
        Yt = torch.as_tensor(Ytr, dtype=DT)
        print(f"\n## {name}: n_train={len(Xtr)} n_test={len(Xte)} d={Xtr.shape[1]} classes={k}")
        print("| method | train objective | test acc | K | certified rel. gap | seconds |")
        print("|---|---|---|---|---|---|")
        t0 = time.perf_counter()
        res = fit_parallel(Xa, Yt, reg=reg, depth=3, width=width, n_patterns=args.n_patterns,
                           loss="squared", random_state=0, intercept=True, solver="cvxpy",
                           cvxpy_solver="CLARABEL")
        tc = time.perf_counter() - t0
        net = res.network
        p_cvx = net.objective(Xtr, Ytr, reg)
        acc = accuracy(net.forward(torch.as_tensor(Xte, dtype=DT)).numpy(), yte)
        print(f"| convex program ({res.info['n_blocks']} blocks, Clarabel) | {p_cvx:.4f} | "
              f"{acc:.3f} | {net.n_subnetworks} | {res.certificate.relative_gap:.1e} | {tc:.1f} |")
        K = max(net.n_subnetworks, 10)
        for opt_name, lr in [("adam", 1e-2), ("sgd", 1e-3)]:
            objs, accs, ts = [], [], []
            for seed in range(args.seeds):
                o, mod, t = train_torch(Xtr, Ytr, reg, K, width, c, opt_name, seed, args.steps, lr)
                with torch.no_grad():
                    Z = mod(torch.as_tensor(Xte, dtype=DT)).numpy()
                objs.append(o)
                accs.append(accuracy(Z, yte))
                ts.append(t)
            print(f"| {opt_name} (K={K}, {args.steps} steps, {args.seeds} seeds) | "
                  f"{np.mean(objs):.4f} ± {np.std(objs):.4f} (best {min(objs):.4f}; "
                  f"ratio best/convex {min(objs) / p_cvx:.3f}) | {np.mean(accs):.3f} | {K} | "
                  f"- | {np.mean(ts):.1f} |")
        # two-layer convex model (weight decay, a different regulariser)
        t0 = time.perf_counter()
        pats = sample_gates(Xa, args.n_patterns, 0, kind="gaussian")
        prog = TwoLayerProgram(Xa, Yt, pats, reg, "squared", "relu", intercept=True)
        x, cert, _ = solve(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
        tl = prog.to_network(x)
        t2 = time.perf_counter() - t0
        acc2 = accuracy(tl.forward(torch.as_tensor(Xte, dtype=DT)).numpy(), yte)
        print(f"| two-layer convex (weight decay; objective {cert.primal:.4f} not comparable) | "
              f"- | {acc2:.3f} | {tl.n_neurons} neurons | {cert.relative_gap:.1e} | {t2:.1f} |")
        # polynomial-time approximation: program on the rank-r truncation of [X, 1]
        for r in (3, 8):
            t0 = time.perf_counter()
            ra = fit_parallel(Xa, Yt, reg=reg, depth=3, width=width, n_patterns=args.n_patterns,
                              loss="squared", random_state=0, intercept=True, rank=r,
                              solver="cvxpy", cvxpy_solver="CLARABEL")
            tr = time.perf_counter() - t0
            a = ra.info["approximation"]
            accr = accuracy(ra.network.forward(torch.as_tensor(Xte, dtype=DT)).numpy(), yte)
            print(f"| rank-{r} approximation (objective on X_r {a['objective_on_Xr']:.4f}; "
                  f"sigma_r+1={a['sigma_tail']:.3g}, kappa={a['kappa']:.3g}) | "
                  f"{ra.info['objective']:.4f} | {accr:.3f} | {ra.network.n_subnetworks} | "
                  f"{ra.certificate.relative_gap:.1e} (on X_r) | {tr:.1f} |")


if __name__ == "__main__":
    main()
