"""Benchmark: SDP relaxation of the lifted CP program (Prakhya et al. 2024) — convexnn.

Part 1 — classification (iris, wine, breast_cancer, digits PCA-20), one-hot squared loss with
weight decay β (the paper's setting), a stratified training subsample (the dense SDP has
(n+d+c)² variables and 4n² non-negativity constraints) and the rest as test set:
  * SDP (our interior-point method, ``solve_ipm``): certified lower bound LB, extracted
    network objective UB, tightness (UB − LB)/UB, test accuracy (argmax; no test-set
    threshold tuning);
  * Adam, 300 hidden neurons, full batch, same non-convex objective;
  * group-lasso convex model: TwoLayerProgram (ReLU, sampled patterns) + solve.
Every objective is the same non-convex training objective; LB ≤ all of them is checked.

Part 2 — solver time at growing n (synthetic regression, d = 2 + bias): CVXPY + Clarabel vs
the structured interior-point method (solver="ipm", the default). The Burer–Monteiro
solver (solver="lowrank") is not timed any more: it did not converge at n ≥ 40.

Part 3 — the first-order solver (``solver="admm"``, :func:`solve_admm`) at growing n on
digits (PCA-20, one-hot, bias): time, iterations, certified LB, the extracted network's
objective and the certified gap, next to the interior-point method where it is affordable.

Part 4 — variants of the ADMM side by side on the same digits problems (``solve_admm`` only,
no extraction): restarted momentum (the default, ``accel=True``) against the plain ADMM, and
the iterates' precision (float32, float64, "mixed" = float32 until it stalls, then float64;
the default from q = 500 on): seconds, iterations, proven LB.

Part 5 — seconds per ADMM iteration with the projection's kernels side by side (LAPACK's
positive-eigenpair subset vs a full eigendecomposition; block Cholesky factor of TᵀT vs the
dense inverse root), float32 and float64.

Part 6 — the paper's solver: CVXPY + SCS (eps 1e-4 in the authors' code) on the same
relaxation against the ADMM, on digits at growing n: seconds, SCS's value, both solutions
certified the same way, and the size of the conic problem SCS gets.

Run:  .venv/bin/python benchmarks/bench_sdp.py [--quick] [--part 1|...|6] [--ns 100,300,1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from convexnn.formulations.sdp import SDPRelaxation, fit_sdp, solve_admm, solve_ipm
from convexnn.formulations.two_layer import TwoLayerProgram, solve
from convexnn.networks import TwoLayerNetwork
from convexnn.patterns import sample_gates

torch.set_num_threads(1)  # Clarabel is single-threaded too: a like-for-like comparison
REG = 0.1


def load(name, n_train, seed=0):
    loader = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer,
              "digits": load_digits}[name]
    X, y = loader(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, train_size=n_train, random_state=seed,
                                          stratify=y)
    sc = StandardScaler().fit(Xtr)
    Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    if name == "digits":  # PCA-reduced as the paper did for MNIST
        pca = PCA(20, random_state=seed).fit(Xtr)
        Xtr, Xte = pca.transform(Xtr), pca.transform(Xte)
        s = Xtr.std()
        Xtr, Xte = Xtr / s, Xte / s
    return Xtr, Xte, ytr, yte


def digits_problem(n):
    """Digits (PCA-20) with n training samples: (X with a ones column, one-hot Y, the split)."""
    Xtr, Xte, ytr, yte = load("digits", n)
    Y = torch.tensor(np.eye(10)[ytr])
    Xa = torch.tensor(np.hstack([Xtr, np.ones((len(Xtr), 1))]))
    return Xa, Y, (Xtr, Xte, ytr, yte)


def digits_relaxation(n):
    """The relaxation (β = REG, first-layer bias) of :func:`digits_problem` (n)."""
    Xa, Y, _ = digits_problem(n)
    return SDPRelaxation(Xa, Y, REG, intercept=True)


def adam(Xtr, Y, reg, width=300, epochs=2000, lr=1e-2, seed=0):
    torch.manual_seed(seed)
    X = torch.tensor(Xtr)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], width), torch.nn.ReLU(),
                                torch.nn.Linear(width, Y.shape[1], bias=False)).double()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        R = model(X) - Y
        loss = 0.5 * (R * R).sum() + 0.5 * reg * sum((p * p).sum() for p in model.parameters())
        loss.backward()
        opt.step()
    return TwoLayerNetwork.from_torch(model)


def acc(net, Xte, yte):
    return float((net.forward(torch.tensor(Xte)).argmax(1).numpy() == yte).mean())


def part1(datasets, n_train):
    rows = []
    for name in datasets:
        Xtr, Xte, ytr, yte = load(name, n_train)
        c = int(ytr.max()) + 1
        Y = torch.tensor(np.eye(c)[ytr])
        Xa = torch.tensor(np.hstack([Xtr, np.ones((len(Xtr), 1))]))
        t = time.perf_counter()
        fit = fit_sdp(Xa, Y, REG, intercept=True, solver="ipm")
        t_sdp = time.perf_counter() - t
        lb, ub = fit.certificate.dual, fit.certificate.primal
        t = time.perf_counter()
        net_adam = adam(Xtr, Y, REG)
        t_adam = time.perf_counter() - t
        obj_adam = net_adam.objective(torch.tensor(Xtr), Y, REG)
        t = time.perf_counter()
        pats = sample_gates(Xa, 100, 0, kind="data", intercept_column=True)
        prog = TwoLayerProgram(Xa, Y, pats, REG, "squared", "relu", intercept=True)
        x, cert_gl, _ = solve(prog, tol=1e-6, max_time=60)
        t_gl = time.perf_counter() - t
        net_gl = prog.to_network(x, 1e-10)
        obj_gl = net_gl.objective(torch.tensor(Xtr), Y, REG)
        assert lb <= min(ub, obj_adam, obj_gl) + 1e-8
        rows.append((name, Xa.shape[0], Xa.shape[1], c, lb, fit.info["sdp_value_estimate"], ub,
                     (ub - lb) / ub, acc(fit.network, Xte, yte), t_sdp, obj_adam,
                     (obj_adam - lb) / obj_adam, acc(net_adam, Xte, yte), t_adam, obj_gl,
                     (obj_gl - lb) / obj_gl, acc(net_gl, Xte, yte), t_gl))
        print(f"{name}: LB={lb:.4f} SDP={fit.info['sdp_value_estimate']:.4f} UB(SDP net)={ub:.4f}"
              f" adam={obj_adam:.4f} group-lasso={obj_gl:.4f}", flush=True)
    print("\n| data | n | d+1 | c | LB (certified) | SDP value | SDP-net obj | tightness | "
          "SDP-net acc | SDP s | Adam obj | Adam gap to LB | Adam acc | Adam s | GL obj | "
          "GL gap to LB | GL acc | GL s |")
    print("|" + "---|" * 18)
    for r in rows:
        print("| {} | {} | {} | {} | {:.4f} | {:.4f} | {:.4f} | {:.1%} | {:.3f} | {:.1f} | "
              "{:.4f} | {:.1%} | {:.3f} | {:.1f} | {:.4f} | {:.1%} | {:.3f} | {:.1f} |".format(*r))


def part2(ns_both, ns_ipm, max_time):
    print("\n| n | CVXPY+Clarabel s | CVXPY value | CVXPY certified LB | IPM s | IPM value est. | "
          "IPM certified LB | IPM iterations | working set / 4n² | Clarabel s / IPM s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in ns_both + ns_ipm:
        X = torch.tensor(rng.standard_normal((n, 2)))
        Xa = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], 1)
        U = rng.standard_normal((3, 5))
        Y = torch.tensor(np.maximum(Xa.numpy() @ U, 0) @ rng.standard_normal((5, 1))
                         + 0.1 * rng.standard_normal((n, 1)))
        cv, tc = ("-", "-", "-"), None
        prob = SDPRelaxation(Xa, Y, REG, intercept=True)
        if n in ns_both:
            problem, handles = prob.to_cvxpy()
            t = time.perf_counter()
            problem.solve(solver="CLARABEL")
            tc = time.perf_counter() - t
            b, _ = prob.certify_cvxpy(handles)
            cv = (f"{tc:.2f}", f"{problem.value:.6f}", f"{b.value:.6f}")
        t = time.perf_counter()
        bound, _, info = solve_ipm(prob, tol=1e-7, max_time=max_time)
        ti = time.perf_counter() - t
        ratio = f"{tc / ti:.1f}" if tc is not None else "-"
        print(f"| {n} | {cv[0]} | {cv[1]} | {cv[2]} | {ti:.2f} | "
              f"{info['sdp_primal_estimate']:.6f} | {bound.value:.6f} | "
              f"{info['ipm_iterations']} | {info['working_set']} / {4 * n * n} | {ratio} |",
              flush=True)


def part3(ns, ns_ipm, max_time, tol):
    print("\n| n | q = n+d+c | ADMM s | ADMM iterations | neuron-SDP iterations (s) | stop | "
          "SDP primal estimate | certified LB (method) | LB vs SDP estimate | SDP-net obj | "
          "certified gap | SDP-net acc | Adam obj | Adam acc | Adam s | IPM s | "
          "IPM certified LB | ADMM LB vs IPM LB |")
    print("|" + "---|" * 18)
    for n in ns:
        Xa, Y, (Xtr, Xte, ytr, yte) = digits_problem(n)
        t = time.perf_counter()
        fit = fit_sdp(Xa, Y, REG, intercept=True, solver="admm", tol=tol, max_time=max_time,
                      max_iter=10 ** 6)
        ta = time.perf_counter() - t
        c = fit.certificate
        t = time.perf_counter()
        net_adam = adam(Xtr, Y, REG)
        t_adam = time.perf_counter() - t
        obj_adam = net_adam.objective(torch.tensor(Xtr), Y, REG)
        assert c.dual <= min(c.primal, obj_adam) + 1e-8
        ipm = ("-", "-", "-")
        if n in ns_ipm:
            t = time.perf_counter()
            b, _, _ = solve_ipm(SDPRelaxation(Xa, Y, REG, intercept=True), tol=1e-7,
                                max_time=max_time)
            ti = time.perf_counter() - t
            ipm = (f"{ti:.1f}", f"{b.value:.6f}", f"{(b.value - c.dual) / b.value:.1e}")
        est = fit.info["sdp_value_estimate"]
        print(f"| {n} | {fit.info['q']} | {ta:.1f} | {fit.info['admm_iterations']} | "
              f"{fit.info['neuron_iterations']} ({fit.info['neuron_seconds']:.0f}) | "
              f"{fit.info['stop_reason']} | {est:.6f} | "
              f"{c.dual:.6f} ({fit.info['bound_method']}) | {(est - c.dual) / est:.1e} | "
              f"{c.primal:.6f} | "
              f"{c.relative_gap:.1%} | {acc(fit.network, Xte, yte):.3f} | {obj_adam:.4f} | "
              f"{acc(net_adam, Xte, yte):.3f} | {t_adam:.1f} | {ipm[0]} | {ipm[1]} | {ipm[2]} |",
              flush=True)


VARIANTS = {   # part 4: solve_admm keyword arguments of each variant
    "plain": {"accel": False}, "momentum": {"accel": True},
    "plain-f64": {"accel": False, "dtype": torch.float64},
    "f32": {"dtype": torch.float32}, "f64": {"dtype": torch.float64}, "mixed": {"dtype": "mixed"},
}


def part4(ns, max_time, tol, variants=("plain", "momentum")):
    print("\n| n | variant | seconds | outer iterations | float64 from iteration | "
          "neuron-SDP iterations | stop | SDP primal estimate | proven LB (method) | "
          "LB vs SDP estimate |")
    print("|" + "---|" * 10)
    for n in ns:
        prob = digits_relaxation(n)
        secs = {}
        for v in variants:
            t = time.perf_counter()
            b, _, info = solve_admm(prob, tol=tol, max_iter=10 ** 6, max_time=max_time,
                                    **VARIANTS[v])
            secs[v] = time.perf_counter() - t
            est = info["sdp_primal_estimate"]
            sw = info["precision_switch_iteration"]
            print(f"| {n} | {v} | {secs[v]:.1f} | {info['admm_iterations']} | "
                  f"{'-' if sw is None else sw} | {info['neuron_iterations']} | "
                  f"{info['admm_stop']} | {est:.6f} | {b.value:.6f} ({b.method}) | "
                  f"{(est - b.value) / est:.1e} |", flush=True)
        if "plain" in secs and "momentum" in secs:
            print(f"| {n} | plain s / momentum s | {secs['plain'] / secs['momentum']:.2f} | "
                  "| | | | | | |", flush=True)


def part5(ns, iters=60, rounds=3):
    """Seconds per ADMM iteration (no neuron solve, 3 checks): the projection's kernels side by
    side — positive eigenpairs by LAPACK's subset driver (default on CPU) or a full torch
    eigendecomposition, the block Cholesky factor of TᵀT (default) or the dense inverse root.
    The variants run interleaved, ``rounds`` times each; the median is reported."""
    from convexnn.pipelines.sdp import admm as admm_mod

    print(f"\n| n | q | iterates | kernels | s / iteration (median of {rounds}) | "
          "vs full eig + dense root |")
    print("|" + "---|" * 6)
    factor = admm_mod.lift_factor
    kernels = {"full eig + dense root": ("full", lambda *a: None),
               "full eig + block Cholesky": ("full", factor),
               "subset eig + block Cholesky (default)": ("auto", factor)}
    for n in ns:
        prob = digits_relaxation(n)
        for dt in (torch.float32, torch.float64):
            secs = {k: [] for k in kernels}
            for _ in range(rounds):
                for name, (eig, fac) in kernels.items():
                    admm_mod.lift_factor = fac
                    try:
                        t = time.perf_counter()
                        _, _, info = solve_admm(prob, tol=1e-12, max_iter=iters, dtype=dt,
                                                eig=eig, neuron_first=None,
                                                check_every=iters // 3)
                        secs[name].append((time.perf_counter() - t) / info["admm_iterations"])
                    finally:
                        admm_mod.lift_factor = factor
            base = float(np.median(secs["full eig + dense root"]))
            for name, v in secs.items():
                med = float(np.median(v))
                print(f"| {n} | {prob.q} | {str(dt)[6:]} | {name} | {med:.3f} | "
                      f"{base / med:.2f}x |", flush=True)


def part6(ns, eps, max_time, tol):
    """The paper's solver — CVXPY + SCS on the same (reduced) relaxation, single-threaded —
    against the ADMM (``solve_admm``, 1 thread) on digits. SCS's solution is certified like
    ours (blend bound of its duals, neuron bound of its Γ; the better one); its own reported
    value is not a bound. The size of the conic problem CVXPY hands to SCS (nonzeros of A) is
    printed to extrapolate its memory to n = 1000."""
    import resource

    import cvxpy as cp

    print("\n| n | SCS eps | CVXPY compile s | A nonzeros | SCS s (incl. compile) | "
          "SCS iterations | SCS status | SCS value (not a bound) | "
          "SCS certified LB (method) | peak RSS MB | "
          "ADMM s | ADMM iterations | ADMM estimate | ADMM certified LB (method) | "
          "SCS s / ADMM s | SCS LB vs ADMM LB |")
    print("|" + "---|" * 16)
    for n in ns:
        prob = digits_relaxation(n)
        t = time.perf_counter()
        ba, _, ia = solve_admm(prob, tol=tol, max_iter=10 ** 6, max_time=max_time)
        ta = time.perf_counter() - t
        problem, handles = prob.to_cvxpy("reduced")
        t = time.perf_counter()
        data, _, _ = problem.get_problem_data(cp.SCS)
        tc = time.perf_counter() - t
        nnz = data["A"].nnz
        del data
        t = time.perf_counter()
        problem.solve(solver="SCS", eps=eps, max_iters=10 ** 6, time_limit_secs=max_time)
        ts = time.perf_counter() - t
        bs, _ = prob.certify_cvxpy(handles)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {n} | {eps:g} | {tc:.1f} | {nnz} | {ts:.1f} | "
              f"{problem.solver_stats.num_iters} | {problem.status} | {problem.value:.6f} | "
              f"{bs.value:.6f} ({bs.method}) | {rss:.0f} | {ta:.1f} | "
              f"{ia['admm_iterations']} | {ia['sdp_primal_estimate']:.6f} | "
              f"{ba.value:.6f} ({ba.method}) | {ts / ta:.0f} | "
              f"{(ba.value - bs.value) / ba.value:.1e} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--part", type=int, default=0, help="run only this part (1, ..., 6)")
    ap.add_argument("--ns", default="100,300,1000", help="parts 3 and 4: training sizes")
    ap.add_argument("--admm-tol", type=float, default=1e-3)
    ap.add_argument("--variants", default="plain,momentum",
                    help="part 4: comma-separated " + ", ".join(VARIANTS))
    ap.add_argument("--max-time", type=float, default=2400)
    ap.add_argument("--scs-eps", type=float, default=1e-4, help="part 6 (the paper's: 1e-4)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: like Clarabel)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    ns = [int(v) for v in a.ns.split(",")]
    if a.quick:
        part1(["iris"], 30)
        part2([10, 20], [40], 60)
        part3([60], [60], 60, 1e-3)
        part4([60], 60, 1e-3)
        part5([60], 9, 1)
        part6([30], 1e-3, 60, 1e-3)
    else:
        if a.part in (0, 1):
            part1(["iris", "wine", "breast_cancer", "digits"], a.n_train)
        if a.part in (0, 2):
            part2([10, 20, 40], [80, 160, 240], 900)
        if a.part in (0, 3):
            part3(ns, [n for n in ns if n <= 150], a.max_time, a.admm_tol)
        if a.part in (0, 4):
            part4(ns, a.max_time, a.admm_tol, a.variants.split(","))
        if a.part in (0, 5):
            part5(ns)
        if a.part in (0, 6):
            part6(ns, a.scs_eps, a.max_time, a.admm_tol)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
