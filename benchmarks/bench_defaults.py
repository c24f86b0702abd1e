"""Defaults as a user meets them, and ReLU networks vs Adam on the same objective.

Run:  .venv/bin/python benchmarks/bench_defaults.py [--quick] [--part 1|2|all] [--problems
      wine,planted20,...] [--seeds 5] [--repeat 1] [--threads 1] [--out FILE.md]

Public API only; a fit that raises shows as ``CRASH: <Type>: <msg>`` in its row. Every fit gives
wall s (perf_counter) and CPU s (process_time, all threads); ``--repeat k`` repeats the convexnn
and scikit-learn fits (medians). Torch's thread count is left alone unless ``--threads``.
``--quick``: 2 Adam seeds (unless --seeds), Adam <= 1000 steps, ``max_time=20`` on convexnn fits.

Part 1: breast_cancer, wine, digits (accuracy), diabetes (R^2); train_test_split(test_size=0.25,
random_state=0, stratified for classes); make_pipeline(StandardScaler(), model) with
ConvexReLU{Classifier,Regressor}(random_state=0), the same with activation="gated",
MLP{Classifier,Regressor}(random_state=0), Ridge() (diabetes). Targets: convexnn wall <= 3x MLP's,
score >= reference - 0.02 (MLP; Ridge for diabetes).

Part 2: planted20/50 (X ~ N(0, I_d), y = sum of 5 ReLUs of random unit projections, random signs,
+ 0.1 N(0,1); seed 0; 2000 train + 500 test), diabetes (squared), breast_cancer (logistic), wine,
digits (cross-entropy); X (and y for squared) standardised on the training split. Objective: loss
summed over samples + (reg/2)(||W1||^2 + ||b1||^2 + ||W2||^2), unregularised output bias b2.
reg: from REGS, the best validation score (20% of the training split) of Adam seed 0, width 100,
lr SWEEP_LR. Adam: full batch, float64, width 100, nn.Linear init, lr from LRS by seed 0's final
objective (that run is reused as seed 0); stops when the best objective so far improves by < 1e-6
(relative) over 200 steps, or at 20000 steps. Adam totals exclude the reg sweep and lr tuning.
"Adam@ours": the best objective any seed reached within our wall time.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings
from functools import partial

import numpy as np
import sklearn
import torch
from _common import print_and_save
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import convexnn

PART1 = ("breast_cancer", "wine", "digits", "diabetes")
PART2 = ("planted20", "planted50", "diabetes", "breast_cancer", "wine", "digits")
LOADERS = {"breast_cancer": load_breast_cancer, "wine": load_wine, "digits": load_digits,
           "diabetes": load_diabetes}
REGS = (0.01, 0.1, 1.0, 10.0)
LRS = (1e-3, 3e-3, 1e-2, 3e-2)
SWEEP_LR, WIDTH, WINDOW, RTOL = 1e-2, 100, 200, 1e-6
OPTIONAL = ("max_violation", "search_bound", "global_bound", "left_program")
CERT_HEAD = ["rel gap", "scope", *OPTIONAL]
DT = torch.float64


def log(msg: str) -> None:
    print(f"[bench_defaults {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}" if abs(v) >= 1e-3 or v == 0 else f"{float(v):.3e}"
    return str(v).replace("|", "/")


def md(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(out + ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows])


def crash(err: Exception) -> str:
    msg = (str(err).strip().splitlines() or [""])[0][:160]
    return f"CRASH: {type(err).__name__}: {msg}"


def timed(fit, repeat: int):
    """(result or the exception raised, median wall s, median CPU s)."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            out = fit()
        except Exception as err:  # a crash is a result here
            return err, None, None
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return out, float(np.median(walls)), float(np.median(cpus))


def fit_quiet(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clone(model).fit(X, y)


def safe(fn, *a):
    """fn(*a), or the CRASH string of what it raised."""
    try:
        return fn(*a)
    except Exception as err:  # report it; do not stop the benchmark
        return crash(err)


def cert_fields(est) -> list:
    cert = getattr(est, "certificate_", None)
    return [getattr(cert, k, None) for k in ("relative_gap", "scope", *OPTIONAL)]


def check(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# ------------------------------------------------------------------------------------ part 1
def part1(names, args, extra) -> list[str]:
    rows, checks = [], []
    for name in names:
        X, y = LOADERS[name](return_X_y=True)
        clf = name != "diabetes"
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y if clf else None)
        conv = convexnn.ConvexReLUClassifier if clf else convexnn.ConvexReLURegressor
        models = [("convexnn relu", conv(random_state=0, **extra)),
                  ("convexnn gated", conv(random_state=0, activation="gated", **extra)),
                  ("sklearn MLP", (MLPClassifier if clf else MLPRegressor)(random_state=0))]
        models = [m for m in models if m[0].split()[-1] in args.models or m[0] == "sklearn MLP"]
        if not clf:
            models.append(("Ridge", Ridge()))
        res = {}
        for label, model in models:
            log(f"part 1: {name} / {label}")
            pipe = make_pipeline(StandardScaler(), model)
            fitted, wall, cpu = timed(partial(fit_quiet, pipe, Xtr, ytr), args.repeat)
            is_conv = label.startswith("convexnn")
            if isinstance(fitted, Exception):
                rows.append([name, label, None, None, crash(fitted)] + [None] * len(CERT_HEAD))
                continue
            res[label] = (wall, safe(fitted.score, Xte, yte), cpu)
            cert = cert_fields(fitted[-1]) if is_conv else [None] * len(CERT_HEAD)
            rows.append([name, label, wall, cpu, res[label][1], *cert])
        mlp = "sklearn MLP"
        ref = mlp if clf else "Ridge"
        for label in ("convexnn relu", "convexnn gated"):
            if label.split()[-1] not in args.models:
                continue
            if not all(isinstance(res.get(k, (0, ""))[1], float) for k in (label, ref, mlp)):
                checks.append([name, label, "n/a", "n/a (crash)", "MISS", "n/a (crash)", "MISS"])
                continue
            # CPU seconds: MLP's BLAS may use every core while our fit uses one torch thread
            ratio = res[label][2] / res[mlp][2]
            diff = res[label][1] - res[ref][1]
            checks.append([name, label, f"{res[label][0] / res[mlp][0]:.2f}x", f"{ratio:.2f}x",
                           check(ratio <= 3), f"{diff:+.4f} vs {ref}", check(diff >= -0.02)])
    return ["## Part 1: defaults vs scikit-learn (StandardScaler pipeline)", "",
            md(["dataset", "model", "fit wall s", "fit CPU s", "test score", *CERT_HEAD], rows),
            "", "Targets: convexnn CPU s <= 3x MLP CPU s; score >= reference - 0.02", "",
            md(["dataset", "model", "wall / MLP", "CPU / MLP", "time", "score diff", "score"],
               checks), ""]


# ------------------------------------------------------------------------------------ part 2
def problem(name: str):
    if name.startswith("planted"):
        d, rng = int(name[len("planted"):]), np.random.default_rng(0)
        X = rng.standard_normal((2500, d))
        U = rng.standard_normal((5, d))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        y = np.maximum(X @ U.T, 0) @ rng.choice([-1.0, 1.0], 5) + 0.1 * rng.standard_normal(2500)
        loss, test = "squared", 500
    else:
        X, y = LOADERS[name](return_X_y=True)
        loss = {"diabetes": "squared", "breast_cancer": "logistic"}.get(name, "cross_entropy")
        test = 0.25
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test, random_state=0,
                                          stratify=None if loss == "squared" else y)
    sc = StandardScaler().fit(Xtr)
    Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
    if loss == "squared":
        mu, sd = ytr.mean(), ytr.std()
        ytr, yte = (ytr - mu) / sd, (yte - mu) / sd
    return Xtr, Xte, ytr, yte, loss


def T(a) -> torch.Tensor:
    return torch.as_tensor(a).detach().cpu().to(DT)


def encode(y, loss: str, classes) -> torch.Tensor:
    if loss == "squared":
        return T(y)
    idx = torch.as_tensor(np.searchsorted(classes, y))
    return 2.0 * idx.to(DT) - 1.0 if loss == "logistic" else idx


def loss_sum(F, Y, loss: str):
    if loss == "squared":
        return 0.5 * ((F[:, 0] - Y) ** 2).sum()
    if loss == "logistic":
        return nn.functional.softplus(-Y * F[:, 0]).sum()
    return (torch.logsumexp(F, 1) - F.gather(1, Y[:, None])[:, 0]).sum()


def score(F, Y, loss: str) -> float:
    F = F.detach()
    if loss == "squared":
        return float(r2_score(Y.numpy(), F[:, 0].numpy()))
    if loss == "logistic":
        return float(((F[:, 0] >= 0) == (Y > 0)).double().mean())
    return float((F.argmax(1) == Y).double().mean())


def objective(W1, b1, W2, b2, X, Y, loss: str, reg: float) -> torch.Tensor:
    F = torch.relu(X @ W1.T + b1) @ W2.T + b2
    return loss_sum(F, Y, loss) + 0.5 * reg * ((W1**2).sum() + (b1**2).sum() + (W2**2).sum())


def adam(X, Y, loss: str, c: int, reg: float, lr: float, seed: int, steps: int) -> dict:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(X.shape[1], WIDTH, dtype=DT), nn.ReLU(),
                          nn.Linear(WIDTH, c, dtype=DT))
    W = (model[0].weight, model[0].bias, model[2].weight, model[2].bias)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    trace, best = [], []
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        opt.zero_grad()
        f = objective(*W, X, Y, loss, reg)
        f.backward()
        opt.step()
        v = f.item()
        trace.append((time.perf_counter() - t0, v))
        best.append(min(v, best[-1]) if best else v)
        if not math.isfinite(v) or (step >= WINDOW and best[-1 - WINDOW] - best[-1]
                                    < RTOL * abs(best[-1 - WINDOW])):
            break
    with torch.no_grad():
        final = float(objective(*W, X, Y, loss, reg))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    final = final if math.isfinite(final) else math.inf
    return {"model": model, "final": final, "wall": wall, "cpu": cpu, "steps": step + 1,
            "trace": trace + [(wall, final)]}


def net_objective(est, X, Y, loss: str, reg: float) -> float:
    net = est.network_
    W1, b1, W2 = (T(getattr(net, k)) for k in
                  ("first_layer_weights", "first_layer_bias", "second_layer_weights"))
    b2 = getattr(net, "output_bias", None)
    b2 = torch.zeros(W2.shape[0], dtype=DT) if b2 is None else T(b2)
    with torch.no_grad():
        return float(objective(W1, b1, W2, b2, X, Y, loss, reg))


def part2(names, args, extra, seeds: int, steps: int) -> list[str]:
    ours_rows, adam_rows, checks = [], [], []
    for name in names:
        Xtr, Xte, ytr, yte, loss = problem(name)
        classes = None if loss == "squared" else np.unique(ytr)
        c = len(classes) if loss == "cross_entropy" else 1
        enc = partial(encode, loss=loss, classes=classes)
        Xt, Yt, Xs, Ys = T(Xtr), enc(ytr), T(Xte), enc(yte)
        (n, d), strat = Xtr.shape, None if loss == "squared" else ytr
        Xa, Xv, ya, yv = train_test_split(Xtr, ytr, test_size=0.2, random_state=0, stratify=strat)
        val = {}
        for reg in REGS:
            log(f"part 2: {name} reg sweep, reg={reg:g}")
            r = adam(T(Xa), enc(ya), loss, c, reg, SWEEP_LR, 0, steps)
            val[reg] = score(r["model"](T(Xv)), enc(yv), loss)
        reg = max(val, key=val.get)
        tune = {}
        for lr in LRS:
            log(f"part 2: {name} lr tuning, reg={reg:g}, lr={lr:g}")
            tune[lr] = adam(Xt, Yt, loss, c, reg, lr, 0, steps)
        finals = {lr: r["final"] for lr, r in tune.items()}
        lr = min(finals, key=finals.get)
        runs = [tune[lr]]
        for s in range(1, seeds):
            log(f"part 2: {name} Adam seed {s}, lr={lr:g}")
            runs.append(adam(Xt, Yt, loss, c, reg, lr, s, steps))
        for r in runs:
            r["test"] = score(r["model"](Xs), Ys, loss)
        objs = np.array([r["final"] for r in runs])
        walls = np.array([r["wall"] for r in runs])
        best_run = runs[int(np.argmin(objs))]
        mlp = (MLPRegressor if loss == "squared" else MLPClassifier)(random_state=0)
        mlp_fit, _, _ = timed(partial(fit_quiet, mlp, Xtr, ytr), 1)
        mlp_test = crash(mlp_fit) if isinstance(mlp_fit, Exception) else mlp_fit.score(Xte, yte)
        adam_rows.append([name, reg, " ".join(f"{k:g}:{v:.3f}" for k, v in val.items()), lr,
                          objs.min(), float(np.median(objs)), objs.max(),
                          int(np.median([r["steps"] for r in runs])), float(np.median(walls)),
                          float(walls.sum()), best_run["test"], mlp_test])
        if loss == "squared":
            est = convexnn.ConvexReLURegressor(reg=reg, random_state=0, **extra)
        else:
            est = convexnn.ConvexReLUClassifier(reg=reg, loss=loss, random_state=0, **extra)
        log(f"part 2: {name} convexnn fit, reg={reg:g}")
        fitted, wall, cpu = timed(partial(fit_quiet, est, Xtr, ytr), args.repeat)
        if isinstance(fitted, Exception):
            ours_rows.append([name, n, d, reg, crash(fitted)] + [None] * 10)
            checks.append([name, "n/a (crash)", "MISS", "-", "MISS", "-", "MISS", "-", "MISS"])
            continue
        ours = safe(net_objective, fitted, Xt, Yt, loss, reg)
        cert = cert_fields(fitted)
        primal = getattr(getattr(fitted, "certificate_", None), "primal", None)
        width = getattr(getattr(fitted, "network_", None), "n_neurons", None)
        test = safe(fitted.score, Xte, yte)
        within = min((v for r in runs for t, v in r["trace"] if t <= wall), default=None)
        ours_rows.append([name, n, d, reg, ours, primal, wall, cpu, width, cert[0], *cert[2:5],
                          test, within])
        best, med = objs.min(), float(np.median(walls))
        if isinstance(ours, float):
            rel = (ours - best) / max(abs(best), 1e-300)
            obj_cells = [f"{rel:+.2e}", check(ours <= best)]
        else:
            obj_cells = ["n/a", "MISS"]
        ok = isinstance(test, float)
        checks.append([name, *obj_cells, f"{wall / walls.sum():.2f}x",
                       check(wall < walls.sum()), f"{wall / med:.2f}x", check(wall < med),
                       f"{test - best_run['test']:+.4f}" if ok else "n/a",
                       check(ok and test >= best_run["test"] - 0.01)])
    return ["## Part 2: ReLU network vs full-batch Adam on the same objective", "",
            f"reg grid {list(REGS)} (Adam seed 0, lr {SWEEP_LR:g}, 20% validation split); "
            f"lr grid {list(LRS)}; width {WIDTH}; {seeds} seeds; <= {steps} steps", "",
            md(["problem", "n", "d", "reg", "ours objective", "cert primal", "wall s", "CPU s",
                "width", "rel gap", "max_violation", "search_bound", "global_bound", "test",
                "Adam@ours"], ours_rows), "",
            md(["problem", "reg", "val score per reg", "lr", "Adam best", "Adam median",
                "Adam worst", "median steps", "median s/run", f"total s ({seeds} runs)",
                "best-seed test", "MLP test"], adam_rows), "",
            "Targets: ours <= Adam best objective; wall < total and < median Adam run; "
            "test >= Adam best-seed test - 0.01", "",
            md(["problem", "obj rel diff", "obj", "wall / total", "time total", "wall / median",
                "time median", "test diff", "test"], checks), ""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--part", choices=("1", "2", "all"), default="all")
    ap.add_argument("--models", default="relu,gated", help="part 1: convexnn models to run")
    ap.add_argument("--problems", default=None, help=f"comma list from {PART2}")
    ap.add_argument("--seeds", type=int, default=None, help="Adam seeds (default 5; quick 2)")
    ap.add_argument("--repeat", type=int, default=1, help="repeats of timed fits (medians)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--out", default=None, help="also write the tables to this .md file")
    args = ap.parse_args()
    args.models = args.models.split(",")
    names = PART2 if args.problems is None else tuple(args.problems.split(","))
    unknown = set(names) - set(PART2)
    if unknown:
        ap.error(f"unknown problems {sorted(unknown)}; choose from {PART2}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seeds = args.seeds or (2 if args.quick else 5)
    steps = 1000 if args.quick else 20000
    extra = {"max_time": 20} if args.quick else {}
    out = ["# bench_defaults", "", f"`{' '.join(sys.argv)}` -- {platform.machine()}, "
           f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, python "
           f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} "
           f"threads), scikit-learn {sklearn.__version__}, convexnn {convexnn.__version__}"
           + (", convexnn max_time=20 (quick)" if args.quick else ""), ""]
    t0 = time.perf_counter()
    if args.part in ("1", "all"):
        out += part1([p for p in PART1 if p in names], args, extra)
    if args.part in ("2", "all"):
        out += part2(list(names), args, extra, seeds, steps)
    out.append(f"total {time.perf_counter() - t0:.1f} s, load {os.getloadavg()[0]:.1f}")
    text = "\n".join(out)
    print_and_save(text, args.out, end="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
