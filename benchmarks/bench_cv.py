"""reg by cross-validation: ConvexReLU*CV (warm-started paths) vs GridSearchCV over the same regs.

Run:  .venv/bin/python benchmarks/bench_cv.py [--problems diabetes,friedman1,...] [--cv 5]
      [--n-regs 8] [--threads 1]

Per problem (train_test_split(test_size=0.25, random_state=0), StandardScaler in a Pipeline):
the default fit (reg=None), ConvexReLU*CV(random_state=0), GridSearchCV over the *same* reg grid
(ConvexReLU*(reg, random_state=0), the same folds: KFold / StratifiedKFold(cv), as check_cv
gives) and scikit-learn's MLP at its defaults. CPU seconds (process_time) and wall seconds;
test score (R^2 / accuracy) and the chosen reg. friedman1: make_friedman1(n_samples=1000,
noise=1.0, random_state=0).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine, make_friedman1
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import convexnn as cn

PROBLEMS = ("diabetes", "friedman1", "breast_cancer", "wine")


def data(name: str):
    if name == "friedman1":
        X, y = make_friedman1(n_samples=1000, noise=1.0, random_state=0)
    else:
        X, y = {"diabetes": load_diabetes, "breast_cancer": load_breast_cancer,
                "wine": load_wine}[name](return_X_y=True)
    reg = name in ("diabetes", "friedman1")
    return (*train_test_split(X, y, test_size=0.25, random_state=0,
                              stratify=None if reg else y), reg)


def timed(fit):
    c, w = time.process_time(), time.perf_counter()
    model = fit()
    return model, time.process_time() - c, time.perf_counter() - w


def run(name: str, cv: int, n_regs: int) -> list[list]:
    Xtr, Xte, ytr, yte, is_reg = data(name)
    Est = cn.ConvexReLURegressor if is_reg else cn.ConvexReLUClassifier
    EstCV = cn.ConvexReLURegressorCV if is_reg else cn.ConvexReLUClassifierCV
    MLP = MLPRegressor if is_reg else MLPClassifier
    rows = []
    m, c, w = timed(lambda: make_pipeline(StandardScaler(), Est(random_state=0)).fit(Xtr, ytr))
    rows.append([name, "default (reg=None)", c, w, m.score(Xte, yte), m[-1].reg_])
    m, c, w = timed(lambda: make_pipeline(StandardScaler(), EstCV(
        cv=cv, n_regs=n_regs, random_state=0)).fit(Xtr, ytr))
    rows.append([name, "ConvexReLU*CV", c, w, m.score(Xte, yte), m[-1].reg_])
    regs = list(m[-1].regs_)
    g, c, w = timed(lambda: GridSearchCV(
        make_pipeline(StandardScaler(), Est(random_state=0)),
        {Est.__name__.lower() + "__reg": regs}, cv=cv).fit(Xtr, ytr))
    rows.append([name, "GridSearchCV, same regs", c, w, g.score(Xte, yte),
                 g.best_params_[Est.__name__.lower() + "__reg"]])
    m, c, w = timed(lambda: make_pipeline(StandardScaler(), MLP(random_state=0)).fit(Xtr, ytr))
    rows.append([name, "sklearn MLP", c, w, m.score(Xte, yte), None])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--n-regs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    print("| problem | model | CPU s | wall s | test score | reg |\n|---|---|---|---|---|---|")
    for name in a.problems.split(","):
        for r in run(name, a.cv, a.n_regs):
            reg = "-" if r[5] is None else f"{r[5]:.4g}"
            print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.4f} | {reg} |",
                  flush=True)


if __name__ == "__main__":
    main()
