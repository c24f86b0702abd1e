"""Issue 20: convexnn's gated-ReLU default against scnn (R-FISTA) and adelie, side by side.

Run in the peer venv:  make bench-peers   (or .benchvenv/bin/python benchmarks/bench_peers.py)

One program for all three libraries: the same X (n x d, float64), the same gates (hence the
same activation patterns D_p = 1[X g_p >= 0]; checked equal), one output y, and

    ours:    F(v)  = 1/2 ||y - sum_p D_p X v_p||^2 + reg * sum_p ||v_p||_2
    scnn:    F / n  (squared loss scaled by 1/(2n); NeuronGL1(lam = reg / n); unitize_data=False)
    adelie:  F / n  up to a constant (gaussian glm, weights 1/n; groups = the P blocks of
             [D_1 X, ..., D_P X]; penalty factors 1 (not sqrt(d)); lmda = reg / n; no intercept)

The mapping is checked by each library's own objective at two common points (0 and a random v)
before anything is timed. reg = --reg · reg_max (reg_max: the smallest reg with a zero network).
Accuracy: every solution is evaluated in OUR objective against the dual bound of a certified
1e-9 reference solve: rel = (F(v) - lower) / lower. convexnn runs its default (solve(prog),
``solver="auto"``) at tol = 1e-4 (a certified relative gap, so rel <= 1e-4). The peers have no
relative-gap stop, so their tolerance is taken from a ladder (loosest first) until rel <= 1e-4;
that run and --repeat - 1 more at the same tolerance are timed. CPU seconds (process_time),
one thread everywhere, medians. Times include each library's set-up from (X, y, gates): our
program (masks), scnn's pattern computation; adelie's n x Pd matrix build is reported apart.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import print_and_save  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from convexnn.formulations.two_layer import TwoLayerProgram, solve  # noqa: E402
from convexnn.formulations.two_layer.path import reg_max, reg_path  # noqa: E402
from convexnn.patterns import sample_gates  # noqa: E402

TOL = 1e-4
SCNN_TOLS = [1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12]
ADELIE_TOLS = [1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-14]

try:
    import scnn  # noqa: F401
    from scnn.metrics import Metrics
    from scnn.models import ConvexGatedReLU
    from scnn.optimize import optimize_model, optimize_path
    from scnn.regularizers import NeuronGL1
    from scnn.solvers import RFISTA
    SCNN_ERR = None
except Exception as e:  # reported in the table, the rest still runs
    SCNN_ERR = f"{type(e).__name__}: {e}"
try:
    import adelie as ad
    ADELIE_ERR = None
except Exception as e:
    ADELIE_ERR = f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------ data and the program
def cases(quick: bool):
    rng = np.random.default_rng(0)

    def synthetic(n, d):
        X = rng.standard_normal((n, d))
        W = rng.standard_normal((d, 3)) / np.sqrt(d)
        return X, np.maximum(X @ W, 0).sum(1) + 0.1 * rng.standard_normal(n)

    X1, y1 = synthetic(2000, 50)
    out = [("2000 x 50", X1, y1, 100), ("2000 x 50", X1, y1, 500)]
    Xd, yd = load_digits(return_X_y=True)
    out.append(("digits 1797 x 64 (>=5 vs <5)", StandardScaler().fit_transform(Xd),
                np.where(yd >= 5, 1.0, -1.0), 100))
    if not quick:
        out.append(("20000 x 100", *synthetic(20000, 100), 200))
    return out


def build_program(X: np.ndarray, y: np.ndarray, P: int, frac: float):
    Xt = torch.as_tensor(X, dtype=torch.float64)
    pats = sample_gates(Xt, P, 0)
    prog = TwoLayerProgram(Xt, torch.as_tensor(y, dtype=torch.float64)[:, None], pats, 1.0,
                           "squared", "gated")
    prog.reg = frac * reg_max(prog)
    return prog


def ours_obj(prog: TwoLayerProgram, V: np.ndarray, reg: float | None = None) -> float:
    """F(V) for V of shape (P, d) in our objective."""
    Vt = torch.as_tensor(V, dtype=torch.float64)[:, :, None]
    r = prog.matvec(Vt) - prog.Y
    lam = prog.reg if reg is None else reg
    return float(0.5 * (r * r).sum() + lam * torch.linalg.vector_norm(Vt, dim=(1, 2)).sum())


def reference(prog: TwoLayerProgram) -> float:
    """A certified lower bound on the optimum (relative gap 1e-9)."""
    _, cert, _ = solve(prog, solver="fista", tol=1e-9, max_iter=10 ** 6)
    return float(cert.dual)


def cpu(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


# ------------------------------------------------------------------------ the three libs
def run_ours(X, y, P, frac):
    def go():
        prog = build_program(X, y, P, frac)
        x, cert, _ = solve(prog, tol=TOL)
        return x[0, :, :, 0].numpy()
    return go


def scnn_order(X, G) -> np.ndarray:
    """scnn sorts (and deduplicates) the patterns: its pattern k is our pattern perm[k]."""
    from scnn.activations import compute_activation_patterns
    D, Gs = compute_activation_patterns(X, G)
    perm = np.array([int(np.argmin(np.abs(G - Gs[:, [k]]).sum(0))) for k in range(Gs.shape[1])])
    if Gs.shape != G.shape or not np.array_equal(G[:, perm], Gs) \
            or not np.array_equal(D.astype(bool), X @ Gs >= 0):
        raise RuntimeError("scnn's activation patterns differ from ours")
    return perm


def from_scnn(Vs: np.ndarray, perm: np.ndarray) -> np.ndarray:
    V = np.empty_like(Vs)
    V[perm] = Vs
    return V


def run_scnn(X, y, G, reg, tol):
    n, perm = X.shape[0], scnn_order(X, G)

    def go():
        model = ConvexGatedReLU(G, c=1, bias=False)
        solver = RFISTA(model, max_iters=100000, tol=tol)
        model, _ = optimize_model(model, solver, Metrics(), X, y[:, None],
                                  regularizer=NeuronGL1(reg / n), return_convex=True,
                                  unitize_data=False, dtype="float64")
        return from_scnn(np.asarray(model.parameters[0][0]), perm)  # (P, d), our order
    return go


def scnn_objective(X, y, G, reg, V):
    """scnn's own objective (its internal convex model) at V of shape (P, d)."""
    import lab
    from scnn.private.interface import build_internal_model, set_device
    set_device("cpu", "float64", 0)
    model = ConvexGatedReLU(G, c=1, bias=False)
    internal = build_internal_model(model, NeuronGL1(reg / X.shape[0]), lab.tensor(X))
    Vs = V[scnn_order(X, G)]
    return float(internal.objective(lab.tensor(X), lab.tensor(y[:, None]),
                                    lab.tensor(Vs[None])))


def adelie_matrix(X, masks):
    n, d = X.shape
    A = np.empty((n, masks.shape[1] * d), order="F")  # adelie prefers F order
    for p in range(masks.shape[1]):
        np.multiply(X, masks[:, p:p + 1], out=A[:, p * d:(p + 1) * d])
    return A


def run_adelie(A, y, d, lmdas, tol):
    n, Pd = A.shape

    def go():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = ad.grpnet(ad.matrix.dense(A, n_threads=1), ad.glm.gaussian(y),
                              groups=np.arange(0, Pd, d), penalty=np.ones(Pd // d),
                              lmda_path=np.asarray(lmdas) / n, intercept=False, tol=tol,
                              early_exit=False, n_threads=1, progress_bar=False)
        return [np.asarray(b.todense()).reshape(-1, d) for b in state.betas]
    return go


def adelie_objective(A, y, d, reg, V):
    n = A.shape[0]
    b = V.reshape(1, -1)
    return float(ad.diagnostic.objective(A, ad.glm.gaussian(y), b, np.zeros(1),
                                         np.array([reg / n]), groups=np.arange(0, A.shape[1], d),
                                         penalty=np.ones(A.shape[1] // d), relative=False)[0])


# ------------------------------------------------------------------------- measurement
def rel_err(prog, V, lower, reg=None) -> float:
    return (ours_obj(prog, V, reg) - lower) / abs(lower)


def ladder(make, tols, accuracy, repeat):
    """Loosest tolerance whose run reaches ``accuracy(V) <= TOL``; then repeat it. Returns
    (median CPU s, tol, worst accuracy of the timed runs) or None if no tolerance reached it."""
    for tol in tols:
        t, V = cpu(make(tol))
        acc = accuracy(V)
        if acc <= TOL:
            times, accs = [t], [acc]
            for _ in range(repeat - 1):
                t, V = cpu(make(tol))
                times.append(t)
                accs.append(accuracy(V))
            return statistics.median(times), tol, max(accs)
    return None, tols[-1], acc


def fmt(res, ours_t):
    t, tol, acc = res
    if t is None:
        return f"not reached (tol {tol:g}: rel {acc:.1e})", "-"
    return f"{t:.2f} (tol {tol:g}, rel {acc:.0e})", f"{t / ours_t:.1f}"


def check_mapping(prog, X, y, G, A) -> str:
    """Each library's objective at 0 and at a random point, against ours (scaled by n)."""
    n, d = X.shape
    rng = np.random.default_rng(1)
    notes = []
    pts = [np.zeros((prog.P, d)), 0.1 * rng.standard_normal((prog.P, d))]
    ours = [ours_obj(prog, V) for V in pts]
    if SCNN_ERR is None:
        sc = [n * scnn_objective(X, y, G, prog.reg, V) for V in pts]
        err = max(abs(a - b) / abs(a) for a, b in zip(ours, sc))
        notes.append(f"scnn: same patterns (sorted by scnn, mapped back), "
                     f"max |F - n·F_scnn| / F = {err:.1e} at 0 and a random point")
    if A is not None:
        adl = [n * adelie_objective(A, y, d, prog.reg, V) for V in pts]
        const = [a - b for a, b in zip(ours, adl)]
        notes.append(f"adelie: F - n·F_adelie = {const[0]:.6g} at 0 and {const[1]:.6g} at a random "
                     f"point (0.5||y||^2 = {0.5 * float(y @ y):.6g}: same program up to it)")
    return "; ".join(notes)


def one_lambda(name, X, y, P, args):
    prog = build_program(X, y, P, args.reg)
    reg, d = prog.reg, X.shape[1]
    G = prog.G.numpy()
    masks = (X @ G >= 0)
    lower = reference(prog)
    ours_runs = [cpu(run_ours(X, y, P, args.reg)) for _ in range(args.repeat)]
    ours_t = statistics.median(t for t, _ in ours_runs)
    ours_acc = max(rel_err(prog, V, lower) for _, V in ours_runs)
    row = {"case": name, "P": prog.P, "ours": f"{ours_t:.2f} (rel {ours_acc:.0e})"}
    A, build = None, None
    if ADELIE_ERR is None:
        gb = X.shape[0] * prog.P * d * 8 / 2 ** 30
        if gb <= args.adelie_gb:
            build, A = cpu(lambda: adelie_matrix(X, masks))
    row["check"] = check_mapping(prog, X, y, G, A)
    if SCNN_ERR is None:
        res = ladder(lambda tol: run_scnn(X, y, G, reg, tol), SCNN_TOLS,
                     lambda V: rel_err(prog, V, lower), args.repeat)
        row["scnn"], row["scnn_ratio"] = fmt(res, ours_t)
    else:
        row["scnn"], row["scnn_ratio"] = f"not installed ({SCNN_ERR})", "-"
    if ADELIE_ERR is not None:
        row["adelie"], row["adelie_ratio"] = f"not installed ({ADELIE_ERR})", "-"
    elif A is None:
        row["adelie"], row["adelie_ratio"] = f"skipped (n x Pd matrix {gb:.1f} GB)", "-"
    else:
        res = ladder(lambda tol: run_adelie(A, y, d, [reg], tol), ADELIE_TOLS,
                     lambda Vs: rel_err(prog, Vs[0], lower), args.repeat)
        cell, ratio = fmt(res, ours_t)
        row["adelie"], row["adelie_ratio"] = f"{cell} + {build:.2f} build", ratio
    return row


def path(name, X, y, P, args):
    prog = build_program(X, y, P, args.reg)
    n, d = X.shape
    top = reg_max(prog)
    regs = top * np.logspace(0, -2, args.n_regs)
    lowers = []
    for r in regs:
        prog.reg = r
        lowers.append(reference(prog))

    def acc(Vs):
        return max(rel_err(prog, V, lo, r) for V, lo, r in zip(Vs, lowers, regs))

    def ours_go():
        p = build_program(X, y, P, args.reg)
        return [x[0, :, :, 0].numpy() for _, x, _ in reg_path(p, regs, tol=TOL)]

    runs = [cpu(ours_go) for _ in range(args.repeat)]
    ours_t = statistics.median(t for t, _ in runs)
    row = {"case": f"{name}, path of {len(regs)}", "P": prog.P,
           "ours": f"{ours_t:.2f} (rel {max(acc(V) for _, V in runs):.0e})"}
    G = prog.G.numpy()
    if SCNN_ERR is None:
        perm = scnn_order(X, G)

        def scnn_go(tol):
            def go():
                model = ConvexGatedReLU(G, c=1, bias=False)
                models, _ = optimize_path(model, RFISTA(model, max_iters=100000, tol=tol),
                                          [NeuronGL1(r / n) for r in regs], Metrics(), X,
                                          y[:, None], return_convex=True, unitize_data=False,
                                          dtype="float64")
                return [from_scnn(np.asarray(m.parameters[0][0]), perm) for m in models]
            return go
        row["scnn"], row["scnn_ratio"] = fmt(ladder(scnn_go, SCNN_TOLS, acc, args.repeat),
                                             ours_t)
    else:
        row["scnn"], row["scnn_ratio"] = "not installed", "-"
    if ADELIE_ERR is None:
        build, A = cpu(lambda: adelie_matrix(X, X @ G >= 0))
        res = ladder(lambda tol: run_adelie(A, y, d, regs, tol), ADELIE_TOLS, acc, args.repeat)
        cell, ratio = fmt(res, ours_t)
        row["adelie"], row["adelie_ratio"] = f"{cell} + {build:.2f} build", ratio
    else:
        row["adelie"], row["adelie_ratio"] = "not installed", "-"
    row["check"] = f"regs = reg_max · logspace(0, -2, {len(regs)}), warm-started in each library"
    return row


def table(rows) -> str:
    out = ["| case | P | convexnn default CPU s | scnn R-FISTA CPU s | scnn / ours | "
           "adelie CPU s | adelie / ours |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['case']} | {r['P']} | {r['ours']} | {r['scnn']} | {r['scnn_ratio']} "
                   f"| {r['adelie']} | {r['adelie_ratio']} |")
    out.append("")
    out += [f"- {r['case']}, P={r['P']}: {r['check']}" for r in rows]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reg", type=float, default=0.1, help="reg as a fraction of reg_max")
    ap.add_argument("--quick", action="store_true", help="skip the 20000 x 100 case")
    ap.add_argument("--no-path", action="store_true")
    ap.add_argument("--cases", default=None, help="comma-separated case indices (0-3) to run")
    ap.add_argument("--n-regs", type=int, default=10)
    ap.add_argument("--adelie-gb", type=float, default=3.5,
                    help="largest n x Pd float64 matrix built for adelie (GB)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with threadpool_limits(1):
        all_cases = cases(args.quick)
        picked = all_cases if args.cases is None else \
            [all_cases[int(i)] for i in args.cases.split(",")]
        for name, X, y, P in picked:
            rows.append(one_lambda(name, X, y, P, args))
            print(table(rows[-1:]), flush=True)
        if not args.no_path:
            name, X, y, P = all_cases[0]
            rows.append(path(name, X, y, P, args))
            print(table(rows[-1:]), flush=True)
    text = (f"Command: `python benchmarks/bench_peers.py {' '.join(sys.argv[1:])}`\n\n"
            f"CPU s (process_time, one thread, float64) to a relative accuracy {TOL:g} in our "
            f"objective, reg = {args.reg:g}·reg_max, median of {args.repeat}\n\n" + table(rows))
    print_and_save(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
