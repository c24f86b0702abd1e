"""Benchmark: exact global optimum (copositive program) vs full-batch Adam vs the relaxation.

Run:  .venv/bin/python benchmarks/bench_copositive.py [--quick]

Part A — small 2-D problems (plus bias, rank 3): the certified global optimum p* (fit_exact),
full-batch Adam on the same non-convex objective (10 seeds x several widths), how often Adam
misses p* and by how much, certify() on each Adam network, the copositive relaxation's bounds,
and the independent CVXPY/Clarabel exact SDP (time comparison).
Part C (``--exact``; issue 21) — speed of ``fit_exact`` against CVXPY + Clarabel on the whole
enumerated program (scalar output, where that program is exact), planted regression and two
spirals, n = 40 and n = 200 (rank 3); times are medians of repeats, one thread.
Part B — the paper's "relaxation vs SGD" comparison on data that ships here: scikit-learn digits
(classes 0–3, PCA to 2 components + bias, one-hot targets), relaxation vs SGD at several widths.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from convexnn.certificates.global_ import certify
from convexnn.formulations.copositive import exact_sdp_reference, fit_exact, fit_relaxation
from convexnn.networks import TwoLayerNetwork
from convexnn.patterns.arrangements import enumerate_patterns

torch.set_num_threads(1)
warnings.simplefilter("ignore", RuntimeWarning)
warnings.simplefilter("ignore", UserWarning)  # CVXPY "may be inaccurate" chatter


def spiral(n_per, c, seed):
    rng = np.random.default_rng(seed)
    X, Y = [], []
    for k in range(c):
        r = np.linspace(0.05, 1, n_per) / 2
        t = np.linspace(4 * k, 4 * (k + 1), n_per) + 0.15 * rng.standard_normal(n_per)
        X.append(np.c_[r * np.sin(t), r * np.cos(t)])
        Y.append(np.tile(np.eye(c)[k], (n_per, 1)))
    return np.concatenate(X), np.concatenate(Y)


def regression(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    Y = np.c_[np.sin(2 * X[:, 0]), X[:, 1] ** 2 - 1, X[:, 0] * X[:, 1]]
    return X, Y + 0.1 * rng.standard_normal(Y.shape)


def adam(X, Y, reg, m, seed, steps, lr=1e-2, opt="adam"):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], m), torch.nn.ReLU(),
                                torch.nn.Linear(m, Y.shape[1], bias=False)).double()
    o = (torch.optim.Adam(model.parameters(), lr=lr) if opt == "adam"
         else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    t0 = time.perf_counter()
    for _ in range(steps):
        o.zero_grad()
        loss = 0.5 * ((model(Xt) - Yt) ** 2).sum() + 0.5 * reg * sum(
            (p ** 2).sum() for p in model.parameters())
        loss.backward()
        o.step()
    return TwoLayerNetwork.from_torch(model), time.perf_counter() - t0


def part_a(name, X, Y, reg, widths, seeds, steps, sdp=True):
    Xa = np.c_[X, np.ones(len(X))]
    t0 = time.perf_counter()
    ex = fit_exact(Xa, Y, reg, intercept=True, tol=1e-6)
    t_ex = time.perf_counter() - t0
    p = ex.certificate.primal
    print(f"\n## {name}: n={len(X)}, d=2+bias, c={Y.shape[1]}, reg={reg}")
    print(f"exact: p* = {p:.8f} (certified lower bound {ex.certificate.dual:.8f}, rel gap "
          f"{ex.certificate.relative_gap:.1e}, scope {ex.certificate.scope}), "
          f"{ex.info['n_patterns']} patterns, {ex.info['n_neurons']} neurons, {t_ex:.1f} s")
    if sdp:
        ref = exact_sdp_reference(Xa, Y, reg, enumerate_patterns(Xa))
        print(f"independent exact SDP (CVXPY+Clarabel, triangulated cones): {ref['value']:.8f} "
              f"({ref['status']}), {ref['seconds']:.1f} s solve; |diff|/p* = "
              f"{abs(ref['value'] - p) / p:.1e}")
    t0 = time.perf_counter()
    rl = fit_relaxation(Xa, Y, reg, intercept=True, max_enumerate=10_000)
    print(f"relaxation (all patterns): solver value {rl.info['relaxation_value']:.8f}, proven "
          f"lower {rl.info['lower_bound']:.8f}, read-back upper {rl.info['upper_bound']:.8f}, "
          f"tightness {rl.info['tightness']:.1e}, {time.perf_counter() - t0:.1f} s")
    print("\n| width | Adam runs | missed p* (rel. excess > 1e-3) | median excess | worst excess "
          "| certify(): proven optimal / proven not | Adam s/run |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for m in widths:
        ex_list, opt_cnt, not_cnt, ts = [], 0, 0, []
        for s in seeds:
            net, t = adam(X, Y, reg, m, s, steps)
            ts.append(t)
            obj = net.objective(X, Y, reg)
            ex_list.append((obj - p) / p)
            gc = certify(net, X, Y, reg, solve=False)
            opt_cnt += gc.is_optimal is True
            not_cnt += obj > p * (1 + 1e-9)  # p* attained by our explicit network: a proof
        e = np.array(ex_list)
        rows.append((m, e))
        print(f"| {m} | {len(seeds)} | {(e > 1e-3).sum()} | {np.median(e):.2e} | {e.max():.2e} "
              f"| {opt_cnt} / {not_cnt} | {np.mean(ts):.2f} |")
    return rows


def part_b(seeds, widths, steps, n_per=6):
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    d = load_digits()
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.nonzero(d.target == k)[0], n_per, replace=False)
                          for k in range(4)])  # n_per set below
    Z = PCA(2, random_state=0).fit_transform(d.data[idx])
    X = Z / np.abs(Z).max()
    Y = np.eye(4)[d.target[idx]]
    reg = 0.1
    Xa = np.c_[X, np.ones(len(X))]
    print(f"\n## digits 0-3 ({n_per} per class), PCA-2 + bias, one-hot c=4, reg={reg}")
    t0 = time.perf_counter()
    ex = fit_exact(Xa, Y, reg, intercept=True, tol=1e-6)
    print(f"exact: p* = {ex.certificate.primal:.6f} (rel gap {ex.certificate.relative_gap:.1e}), "
          f"{time.perf_counter() - t0:.1f} s")
    for P in (50, None):
        t0 = time.perf_counter()
        if P is None:
            rl = fit_relaxation(Xa, Y, reg, intercept=True, patterns="enumerate")
        else:
            rl = fit_relaxation(Xa, Y, reg, intercept=True, patterns="sample", n_patterns=P,
                                random_state=0)
        print(f"relaxation ({'all' if P is None else P} patterns, {rl.info['n_patterns']} kept): "
              f"value {rl.info['relaxation_value']:.6f}, lower {rl.info['lower_bound']:.6f}, "
              f"read-back {rl.info['upper_bound']:.6f}, scope {rl.certificate.scope}, "
              f"{time.perf_counter() - t0:.1f} s")
    print("\n| width | SGD (momentum 0.9, lr 1e-2) best / median objective over seeds | "
          "train acc (best) |")
    print("|---|---|---|")
    for m in widths:
        objs, accs = [], []
        for s in seeds:
            net, _ = adam(X, Y, reg, m, s, steps, lr=1e-2, opt="sgd")
            objs.append(net.objective(X, Y, reg))
            accs.append(float((net.forward(X).argmax(1).numpy() == Y.argmax(1)).mean()))
        b = int(np.argmin(objs))
        print(f"| {m} | {objs[b]:.6f} / {np.median(objs):.6f} | {accs[b]:.3f} |")
    acc = float((ex.network.forward(X).argmax(1).numpy() == Y.argmax(1)).mean())
    print(f"exact optimum train acc {acc:.3f}")


def planted(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    W = rng.standard_normal((3, 2))
    y = np.maximum(X @ W.T + 0.3, 0) @ np.array([1.0, -1.0, 0.5])
    return X, (y + 0.1 * rng.standard_normal(n))[:, None]


def two_spirals(n, seed):
    X, Y = spiral(n // 2, 2, seed)
    return X, (Y[:, :1] - Y[:, 1:])  # ±1 targets, squared loss


def cvxpy_whole(Xa, Y, reg):
    """CVXPY + Clarabel on the whole enumerated (exact for c = 1) program; wall, CPU seconds."""
    from convexnn.formulations.two_layer import TwoLayerProgram, to_cvxpy

    t0, c0 = time.perf_counter(), time.process_time()
    ps = enumerate_patterns(Xa, max_patterns=None)
    prob, _ = to_cvxpy(TwoLayerProgram(torch.as_tensor(Xa), torch.as_tensor(Y), ps, reg,
                                       intercept=True))
    prob.solve(solver="CLARABEL")
    return float(prob.value), time.perf_counter() - t0, time.process_time() - c0


def cvxpy_lean(Xa, Y, reg):
    """A short script's model of the same program: two (d x P) matrix variables, masks as a
    constant, no per-pattern expressions (c = 1); CVXPY + Clarabel; wall, CPU seconds."""
    import cvxpy as cp

    t0, c0 = time.perf_counter(), time.process_time()
    M = enumerate_patterns(Xa, max_patterns=None).masks(torch.as_tensor(Xa)).numpy()
    S = 2.0 * M - 1.0
    V, W = cp.Variable((Xa.shape[1], M.shape[1])), cp.Variable((Xa.shape[1], M.shape[1]))
    XV, XW = Xa @ V, Xa @ W
    pred = cp.sum(cp.multiply(M, XV - XW), axis=1)
    obj = 0.5 * cp.sum_squares(pred - Y[:, 0]) + reg * (cp.sum(cp.norm(V, 2, axis=0))
                                                       + cp.sum(cp.norm(W, 2, axis=0)))
    prob = cp.Problem(cp.Minimize(obj), [cp.multiply(S, XV) >= 0, cp.multiply(S, XW) >= 0])
    prob.solve(solver="CLARABEL")
    return float(prob.value), time.perf_counter() - t0, time.process_time() - c0


def part_c(reps, big_reference, only_small=False):
    print("\n## exact column generation vs CVXPY+Clarabel on the whole enumerated program")
    print("| problem | n | patterns | ours p* | certified rel. gap | neurons (n*c+1) | ours s "
          "(CPU s) | CVXPY+Clarabel value | CVXPY+Clarabel s (CPU s) | speed-up | lean CVXPY "
          "model s (CPU s) | speed-up vs lean |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, gen, n, reg in [("planted regression", planted, 40, 0.1),
                              ("planted regression", planted, 200, 0.5),
                              ("two spirals", two_spirals, 200, 0.05),
                              ("regression, c = 3", regression, 200, 0.5)]:
        if only_small and n > 40:
            continue
        X, Y = gen(n, 0)
        Xa = np.c_[X, np.ones(len(X))]
        walls, cpus = [], []
        if n <= 40:  # warm-up (first-call costs of torch / Clarabel), untimed
            fit_exact(Xa, Y, reg, intercept=True, tol=1e-6, max_patterns=None, max_iter=2000)
        for _ in range(reps if n <= 40 else 1):
            t0, c0 = time.perf_counter(), time.process_time()
            res = fit_exact(Xa, Y, reg, intercept=True, tol=1e-6, max_patterns=None,
                            max_iter=2000)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        cert = res.certificate
        small = Y.shape[1] == 1 and (n <= 40 or big_reference)
        ref, tref, cref = cvxpy_whole(Xa, Y, reg) if small else (float("nan"),) * 3
        lean = [cvxpy_lean(Xa, Y, reg) for _ in range(reps if n <= 40 else 1)] if small else []
        tl = float(np.median([v[1] for v in lean])) if lean else float("nan")
        cl = float(np.median([v[2] for v in lean])) if lean else float("nan")
        print(f"| {name} | {len(X)} | {res.info['n_patterns']:,} | {cert.primal:.8f} | "
              f"{cert.relative_gap:.1e} | {res.network.n_neurons} ({Y.size + 1}) | "
              f"{np.median(walls):.2f} ({np.median(cpus):.2f}) | {ref:.8f} | "
              f"{tref:.2f} ({cref:.2f}) | "
              f"{tref / np.median(walls):.1f}x wall, {cref / np.median(cpus):.1f}x CPU | "
              f"{tl:.2f} ({cl:.2f}) | {tl / np.median(walls):.1f}x wall, "
              f"{cl / np.median(cpus):.1f}x CPU |",
              flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--exact", action="store_true", help="only part C (exact speed)")
    ap.add_argument("--small", action="store_true", help="part C: only the n = 40 row, 7 repeats")
    ap.add_argument("--big-reference", action="store_true",
                    help="part C: also run CVXPY on the n = 200 programs (minutes)")
    a = ap.parse_args()
    if a.exact:
        part_c(7 if a.small else 3, a.big_reference, a.small)
        return
    seeds = range(3) if a.quick else range(10)
    widths = [3, 10, 50]
    steps = 1000 if a.quick else 3000
    X, Y = spiral(8, 3, 0)
    part_a("spiral (3 classes, one-hot)", X, Y, 0.01, widths, seeds, steps)
    X, Y = regression(20, 1)
    part_a("regression (3 outputs)", X, Y, 0.1, widths, seeds, steps, sdp=False)
    part_b(range(3) if a.quick else range(5), [5, 50, 300], steps)


if __name__ == "__main__":
    main()
