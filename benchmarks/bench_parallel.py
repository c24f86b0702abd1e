"""Benchmark: path-regularised deep parallel ReLU networks (issue 5) — a script, not a test.

Run:  .venv/bin/python benchmarks/bench_parallel.py [--quick] [--out FILE.md]

One objective everywhere (except the two-layer row):

    J(θ) = ½ ||f(X) − Y||²_F + reg · R(θ),   R = l2 path norm per sub-network, summed,

depth 3, width m = 2, reg = 0.1, squared loss on ±1 (binary) / one-hot (multi-class) targets,
standardised features, 70/30 stratified split (seed 0), breast_cancer's training set
subsampled to 250 rows (as in the previous version of this benchmark).

Rows, per dataset:
* ``convex CG`` — the exact convex program grown by column generation
  (:mod:`convexnn.pipelines.parallel_cg`): 20 sampled base blocks, then rounds of
  "solve the program over the blocks (primal-dual interior point) → search sub-networks whose
  dual constraint ⟨−Λ, g⟩ ≤ β is violated → add their blocks", until the time budget; the
  network is read back, its certificate is the duality gap over the blocks found; the last
  search's max ⟨−Λ, g⟩/β (> 1 proves the network is not globally optimal) is reported;
* ``convex sampled`` — the same program over 60 sampled base blocks only (the old method);
* ``adam`` / ``sgd`` — the *same architecture* (K single-output sub-networks of depth 3,
  width 2; K = the CG network's K) trained by full-batch Adam / SGD with momentum on J from
  several seeds; the objective trajectory is recorded, so that the best seed can be read at the
  CG's wall time and at the end; for multi-class data also ``adam vector`` — sub-networks with
  a vector of output weights (a superset of the architecture the convex program is exact for);
* ``two-layer convex`` — the two-layer ReLU program with weight decay (a different
  regulariser: only its test accuracy is comparable);
* ``rank-8 approximation`` — the polynomial-time approximation (program on the rank-8
  truncation of [X, 1]) with its guarantee factor κ.

The paper's Figure 1 (decision boundaries on a spiral: 2-layer NN with weight decay vs 3-layer
with path regularisation, both globally optimised) is reproduced on a synthetic 3-arm spiral:
test accuracy of the two-layer convex model (weight decay) vs the three-layer path-regularised
convex model (CG) vs Adam on the path-regularised objective.

All torch work runs on one thread (the machine is shared; small batched kernels are much slower
when threads contend), Adam/SGD and the convex solver alike; times are wall-clock seconds.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
from _common import tee_stdout
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from convexnn._validation import add_intercept
from convexnn.formulations.two_layer import TwoLayerProgram
from convexnn.formulations.two_layer import solve as solve_two_layer
from convexnn.networks.parallel import ParallelReLUModule
from convexnn.networks.parallel_tree import TreeParallelReLUModule, tree_level_sizes
from convexnn.patterns import sample_gates
from convexnn.pipelines.parallel import fit_parallel

torch.set_num_threads(1)
DT = torch.float64
REG, WIDTH = 0.1, 2
LOADERS = {"breast_cancer": load_breast_cancer, "wine": load_wine, "digits": load_digits}


def load(name: str, n_train: int | None):
    X, y = LOADERS[name](return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    if n_train and len(Xtr) > n_train:
        Xtr, ytr = Xtr[:n_train], ytr[:n_train]
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), ytr, yte


def spiral(n_per_class: int, seed: int, turns: float = 1.5, noise: float = 0.02):
    """Three interleaved spiral arms in the plane (the paper's Figure 1 setting, synthetic)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k in range(3):
        r = np.sqrt(rng.uniform(0.02, 1.0, n_per_class))
        t = 2 * np.pi * k / 3 + 2 * np.pi * turns * r
        X.append(np.stack([r * np.cos(t), r * np.sin(t)], 1)
                 + noise * rng.standard_normal((n_per_class, 2)))
        y.append(np.full(n_per_class, k))
    return np.concatenate(X), np.concatenate(y)


def encode(y, k):
    return np.where(y == 1, 1.0, -1.0)[:, None] if k == 2 else np.eye(k)[y]


def accuracy(Z, y):
    pred = (Z[:, 0] > 0).astype(int) if Z.shape[1] == 1 else Z.argmax(1)
    return float((pred == y).mean())


def train_torch(Xtr, Ytr, K, c, opt_name, seed, steps, lr, single_output, every=250, depth=3):
    """Full-batch training of the parallel network on J; returns (trajectory, module, seconds)
    with trajectory = [(seconds, objective), ...] every ``every`` steps. Depth >= 4: tree
    sub-networks of branching WIDTH."""
    g = torch.Generator().manual_seed(seed)
    d = Xtr.shape[1]
    if depth >= 4:
        sizes = tree_level_sizes(depth, WIDTH)
        M, S = sizes[0], sum(sizes[:-1])
        mod = TreeParallelReLUModule(
            torch.randn(K, M, d, generator=g, dtype=DT) * (2.0 / d) ** 0.5,
            torch.zeros(K, M, dtype=DT), torch.randn(K, S, generator=g, dtype=DT) / WIDTH ** 0.5,
            torch.randn(K, c, generator=g, dtype=DT) / K ** 0.5, depth, WIDTH)
    else:
        mod = ParallelReLUModule(
            torch.randn(K, WIDTH, d, generator=g, dtype=DT) * (2.0 / d) ** 0.5,
            torch.zeros(K, WIDTH, dtype=DT),
            torch.randn(K, WIDTH, generator=g, dtype=DT) / WIDTH ** 0.5,
            torch.randn(K, c, generator=g, dtype=DT) / K ** 0.5)
    mask = (torch.nn.functional.one_hot(torch.arange(K) % c, c).to(DT) if single_output
            else torch.ones(K, c, dtype=DT))
    with torch.no_grad():
        mod.w3.mul_(mask)
    X, Y = torch.as_tensor(Xtr, dtype=DT), torch.as_tensor(Ytr, dtype=DT)
    opt = (torch.optim.Adam(mod.parameters(), lr=lr) if opt_name == "adam"
           else torch.optim.SGD(mod.parameters(), lr=lr, momentum=0.9))

    def obj():
        return 0.5 * ((mod(X) - Y) ** 2).sum() + REG * mod.path_norm()

    traj = []
    t0 = time.perf_counter()
    for it in range(steps):
        opt.zero_grad()
        J = obj()
        J.backward()
        mod.w3.grad.mul_(mask)
        opt.step()
        if (it + 1) % every == 0 or it == steps - 1:
            with torch.no_grad():
                traj.append((time.perf_counter() - t0, float(obj())))
    return traj, mod, time.perf_counter() - t0


def at_time(traj, T):
    """Objective of a trajectory at wall time T (its last checkpoint before T; inf if none)."""
    vals = [o for t, o in traj if t <= T]
    return min(vals) if vals else math.inf


def run_convex(Xa, Yt, budget, method, n_patterns, rng_seed=0):
    t0 = time.perf_counter()
    res = fit_parallel(Xa, Yt, reg=REG, depth=3, width=WIDTH, n_patterns=n_patterns,
                       loss="squared", random_state=rng_seed, intercept=True, method=method,
                       max_time=budget,
                       cg_options={"max_rounds": 1000} if method == "cg" else None)
    return res, time.perf_counter() - t0


def dataset_section(name, args):
    n_train = args.n_train if name == "breast_cancer" else None
    Xtr, Xte, ytr, yte = load(name, n_train)
    k = len(np.unique(ytr))
    Ytr = encode(ytr, k)
    c = Ytr.shape[1]
    Xa = add_intercept(torch.as_tensor(Xtr, dtype=DT))
    Yt = torch.as_tensor(Ytr, dtype=DT)
    Xte_t = torch.as_tensor(Xte, dtype=DT)
    print(f"\n## {name}: n_train={len(Xtr)} n_test={len(Xte)} d={Xtr.shape[1]} classes={k}")
    print("| method | train objective J | test acc | K | certified rel. gap (scope) | seconds |")
    print("|---|---|---|---|---|---|")
    res, tc = run_convex(Xa, Yt, args.budget, "cg", 20)
    net = res.network
    p_cg = net.objective(Xtr, Ytr, REG)
    acc = accuracy(net.forward(Xte_t).numpy(), yte)
    K = net.n_subnetworks
    pr = res.info["pricing"]
    print(f"| convex CG ({res.info['n_rounds']} rounds, {res.info['n_blocks']} blocks found) | "
          f"{p_cg:.4f} | {acc:.3f} | {K} | {res.certificate.relative_gap:.1e} (over the blocks "
          f"found; last search max <-Λ,g>/β = {pr['max_ratio']:.3f}) | {tc:.1f} |")
    cg_traj = [(r["seconds"], r["objective"]) for r in res.info["rounds"]] + [(tc, p_cg)]
    rs, ts = run_convex(Xa, Yt, None, "sampled", 60)
    acc_s = accuracy(rs.network.forward(Xte_t).numpy(), yte)
    print(f"| convex sampled (60 base blocks, {rs.info['n_sampled_blocks']} after x2c and "
          f"dedupe) | {rs.network.objective(Xtr, Ytr, REG):.4f} | {acc_s:.3f} | "
          f"{rs.network.n_subnetworks} | {rs.certificate.relative_gap:.1e} (sampled blocks) | "
          f"{ts:.1f} |")
    runs = [("adam", 3e-3, True, args.seeds), ("sgd", 3e-4, True, max(args.seeds - 1, 1))]
    if c > 1:
        runs.insert(1, ("adam", 3e-3, False, max(args.seeds - 1, 1)))
    best_final = {}
    for opt_name, lr, single, seeds in runs:
        finals, accs, times, trajs = [], [], [], []
        for seed in range(seeds):
            traj, mod, t = train_torch(Xtr, Ytr, K, c, opt_name, seed, args.steps, lr, single)
            with torch.no_grad():
                accs.append(accuracy(mod(Xte_t).numpy(), yte))
            finals.append(traj[-1][1])
            times.append(t)
            trajs.append(traj)
        label = opt_name + ("" if single or c == 1 else " vector")
        finals = [f if math.isfinite(f) else math.inf for f in finals]
        best = min(finals)
        best_final[label] = best
        at_cg = min(at_time(tr, tc) for tr in trajs)
        print(f"| {label} (K={K}, lr {lr:g}, {args.steps} steps, {seeds} seeds) | "
              f"best {best:.4f}, mean {np.mean(finals):.4f} ± {np.std(finals):.4f}; best at the "
              f"CG's time {tc:.0f}s: {at_cg:.4f} | {np.mean(accs):.3f} | {K} | - | "
              f"{np.mean(times):.1f} per seed |")
    # two-layer convex model (weight decay: a different regulariser)
    t0 = time.perf_counter()
    pats = sample_gates(Xa, 60, 0, kind="gaussian")
    prog = TwoLayerProgram(Xa, Yt, pats, REG, "squared", "relu", intercept=True)
    x, cert, _ = solve_two_layer(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    tl = prog.to_network(x)
    acc2 = accuracy(tl.forward(Xte_t).numpy(), yte)
    print(f"| two-layer convex (weight decay, 60 patterns; its objective {cert.primal:.4f} is "
          f"not J) | - | {acc2:.3f} | {tl.n_neurons} neurons | {cert.relative_gap:.1e} | "
          f"{time.perf_counter() - t0:.1f} |")
    if not args.quick:
        t0 = time.perf_counter()
        ra = fit_parallel(Xa, Yt, reg=REG, depth=3, width=WIDTH, n_patterns=60,
                          loss="squared", random_state=0, intercept=True, rank=8,
                          method="sampled")
        a = ra.info["approximation"]
        accr = accuracy(ra.network.forward(Xte_t).numpy(), yte)
        print(f"| rank-8 approximation, sampled (sigma_9 = {a['sigma_tail']:.3g}, kappa = "
              f"{a['kappa']:.3g}) | {ra.info['objective']:.4f} | {accr:.3f} | "
              f"{ra.network.n_subnetworks} | {ra.certificate.relative_gap:.1e} (on X_r) | "
              f"{time.perf_counter() - t0:.1f} |")
    # when did CG pass the best Adam / SGD final objective?
    for label, b in best_final.items():
        hit = [t for t, o in cg_traj if o <= b]
        when = f"after {hit[0]:.1f}s" if hit else "not within the budget"
        print(f"\nCG objective <= best {label} final ({b:.4f}): {when}")
    print("\nCG trajectory (seconds, J): "
          + ", ".join(f"({t:.0f}, {o:.4f})" for t, o in cg_traj))


def spiral_section(args):
    n = 50 if args.quick else 80
    X, y = spiral(n, 0)
    Xt, yt = spiral(n, 1)
    Y = encode(y, 3)
    Xa = add_intercept(torch.as_tensor(X, dtype=DT))
    Yt = torch.as_tensor(Y, dtype=DT)
    Xt_t = torch.as_tensor(Xt, dtype=DT)
    reg = 0.05
    print(f"\n## spiral (paper Figure 1 setting, synthetic): 3 arms, 1.5 turns, n_train="
          f"{len(y)}, n_test={len(yt)}, reg={reg}, squared loss on one-hot targets")
    print("| model | train objective | test acc | size | certified rel. gap | seconds |")
    print("|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    pats = sample_gates(Xa, 150, 0, kind="data", intercept_column=True)
    prog = TwoLayerProgram(Xa, Yt, pats, reg, "squared", "relu", intercept=True)
    x, cert, _ = solve_two_layer(prog, solver="cvxpy", cvxpy_solver="CLARABEL")
    tl = prog.to_network(x)
    print(f"| 2-layer, weight decay, convex (150 data-aware patterns) | {cert.primal:.4f} "
          f"(WD objective) | "
          f"{accuracy(tl.forward(Xt_t).numpy(), yt):.3f} | {tl.n_neurons} neurons | "
          f"{cert.relative_gap:.1e} | {time.perf_counter() - t0:.1f} |")
    t0 = time.perf_counter()
    res = fit_parallel(Xa, Yt, reg=reg, depth=3, width=WIDTH, n_patterns=20, loss="squared",
                       random_state=0, intercept=True, method="cg", max_time=args.budget / 3,
                       cg_options={"max_rounds": 1000})
    net = res.network
    tc = time.perf_counter() - t0
    print(f"| 3-layer parallel, path reg., convex CG | {net.objective(X, Y, reg):.4f} | "
          f"{accuracy(net.forward(Xt_t).numpy(), yt):.3f} | K={net.n_subnetworks} | "
          f"{res.certificate.relative_gap:.1e} (blocks found; max <-Λ,g>/β = "
          f"{res.info['pricing']['max_ratio']:.3f}) | {tc:.1f} |")
    K = net.n_subnetworks
    finals, accs = [], []
    seeds, steps = max(args.seeds - 1, 1), args.steps // 2
    for seed in range(seeds):
        traj, mod, t = train_torch(X, Y, K, 3, "adam", seed, steps, 3e-3, True)
        finals.append(traj[-1][1])
        with torch.no_grad():
            accs.append(accuracy(mod(Xt_t).numpy(), yt))
    best = int(np.argmin(finals))
    print(f"| 3-layer parallel, path reg., Adam (K={K}, {steps} steps, {seeds} seeds) "
          f"| best {finals[best]:.4f} | {accs[best]:.3f} (best seed; mean {np.mean(accs):.3f}) "
          f"| K={K} | - | {t:.1f} per seed |")


def global_section(args):
    """Global optimum by the exhaustive program (scope "global") vs Adam on the same objective,
    1-D regression (rank 2 with the bias), depth ``--global-depth``, width 2: the paper's claim
    that the path-regularised problem is solved to global optimality by its convex program."""
    from convexnn.formulations.parallel.exhaustive import count_blocks
    from convexnn.formulations.parallel.tree import Tree
    from convexnn.formulations.parallel.tree_exhaustive import enumerate_tree_blocks

    depth = args.global_depth
    rng = np.random.default_rng(0)
    n = args.global_n
    X = np.sort(rng.uniform(-1, 1, (n, 1)), 0)
    Y = np.sin(3 * X) + 0.1 * rng.standard_normal((n, 1))
    Xt = np.linspace(-1, 1, 200)[:, None]
    Yt = np.sin(3 * Xt)
    Xa = add_intercept(torch.as_tensor(X, dtype=DT))
    Yy = torch.as_tensor(Y, dtype=DT)
    Xt_t = torch.as_tensor(Xt, dtype=DT)
    nb = count_blocks(Xa, width=WIDTH, depth=3) if depth == 3 else \
        enumerate_tree_blocks(Xa, Tree(depth, WIDTH), max_blocks=None).n_blocks
    print(f"\n## global optimum (exhaustive program, {nb} blocks) vs Adam: 1-D regression, "
          f"depth {depth}, n_train={n}, y = sin(3x) + 0.1 noise, n_test=200 (noise-free), "
          f"reg={REG}")
    print("| method | train objective J | certified | test MSE | wall s (median) | CPU s |")
    print("|---|---|---|---|---|---|")
    walls, cpus = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        res = fit_parallel(Xa, Yy, reg=REG, depth=depth, width=WIDTH, method="exhaustive",
                           max_blocks=None)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    net, cert = res.network, res.certificate
    mse = float(((net.forward(Xt_t) - torch.as_tensor(Yt)) ** 2).mean())
    print(f"| convex, exhaustive (K={net.n_subnetworks}) | {cert.primal:.6f} | {cert.scope}, "
          f"rel. gap {cert.relative_gap:.1e} (p* >= {cert.dual:.6f}) | {mse:.4f} | "
          f"{np.median(walls):.2f} | {np.median(cpus):.2f} |")
    for K in sorted({net.n_subnetworks, 2 * net.n_subnetworks, 16}):
        finals, mses, walls, cpus = [], [], [], []
        for seed in range(args.seeds):
            c0 = time.process_time()
            traj, mod, t = train_torch(X, Y, K, 1, "adam", seed, args.steps, 1e-2, True,
                                       depth=depth)
            cpus.append(time.process_time() - c0)
            walls.append(t)
            finals.append(traj[-1][1])
            with torch.no_grad():
                mses.append(float(((mod(Xt_t) - torch.as_tensor(Yt)) ** 2).mean()))
        finals = np.asarray(finals)
        hit = int((finals <= cert.primal * (1 + 1e-3)).sum())
        b = int(np.argmin(finals))
        print(f"| Adam, K={K}, {args.steps} steps, {args.seeds} seeds | best {finals[b]:.6f}, "
              f"median {np.median(finals):.6f} | {hit}/{args.seeds} seeds within 0.1 % of p* | "
              f"{mses[b]:.4f} (best seed) | {np.median(walls):.2f} per seed | "
              f"{np.median(cpus):.2f} per seed |")


def defaults_section(args):
    """The estimators at their defaults (only random_state and depth set) in a StandardScaler
    pipeline on the bundled datasets: CPU and wall seconds of ``fit``, train score, the
    certificate's relative gap over the blocks found, sub-networks."""
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.pipeline import make_pipeline

    from convexnn import ConvexParallelReLUClassifier, ConvexParallelReLURegressor

    print("\n## estimator defaults: make_pipeline(StandardScaler(), ConvexParallelReLU*("
          "depth=L, random_state=0)), whole dataset, one torch thread")
    print("| dataset | depth | CPU s | wall s | train score | certified rel. gap | K |")
    print("|---|---|---|---|---|---|---|")
    data = {"diabetes": load_diabetes, "iris": load_iris, "wine": load_wine,
            "breast_cancer": load_breast_cancer}
    for name in args.defaults:
        X, y = data[name](return_X_y=True)
        for depth in args.depths:
            cls = ConvexParallelReLURegressor if name == "diabetes" else \
                ConvexParallelReLUClassifier
            yy = (y - y.mean()) / y.std() if name == "diabetes" else y
            est = make_pipeline(StandardScaler(), cls(depth=depth, random_state=0))
            t0, c0 = time.perf_counter(), time.process_time()
            est.fit(X, yy)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            m = est[-1]
            print(f"| {name} | {depth} | {cpu:.1f} | {wall:.1f} | {est.score(X, yy):.3f} | "
                  f"{m.certificate_.relative_gap:.1e} | {m.network_.n_subnetworks} |",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller budgets (≈ 3 min)")
    ap.add_argument("--datasets", nargs="+", default=["breast_cancer", "wine"])
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--budget", type=float, default=None, help="CG wall-time budget (s)")
    ap.add_argument("--n-train", type=int, default=250)
    ap.add_argument("--out", type=str, default=None, help="also write the output to this file")
    ap.add_argument("--global-only", action="store_true",
                    help="only the exhaustive (global) vs Adam section")
    ap.add_argument("--global-n", type=int, default=8, help="samples of the global section")
    ap.add_argument("--global-depth", type=int, default=3, help="depth of the global section")
    ap.add_argument("--defaults", nargs="*", default=None,
                    help="only the estimator-defaults section, on these datasets")
    ap.add_argument("--depths", nargs="+", type=int, default=[3, 4])
    args = ap.parse_args()
    args.seeds = args.seeds or (2 if args.quick else 3)
    args.steps = args.steps or (2000 if args.quick else 6000)
    args.budget = args.budget or (30.0 if args.quick else 120.0)
    close_out = tee_stdout(args.out)
    t_all = time.perf_counter()
    print(f"objective J = 0.5||f(X)-Y||^2 + reg*R(theta), reg={REG}, depth 3 (global section: "
          f"depth {args.global_depth}), width {WIDTH}; "
          f"torch threads = {torch.get_num_threads()}; command: python "
          + " ".join(sys.argv))
    if args.defaults is not None:
        defaults_section(args)
    elif not args.global_only:
        for name in args.datasets:
            dataset_section(name, args)
        spiral_section(args)
    if args.defaults is None:
        global_section(args)
    print(f"\ntotal wall time {time.perf_counter() - t_all:.0f}s")
    close_out()


if __name__ == "__main__":
    main()
