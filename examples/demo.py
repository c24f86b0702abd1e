"""convexnn demo: digits, certified convex training vs Adam on the same objective.

Trains a two-layer (gated-ReLU) network on scikit-learn's bundled digits by solving its convex
program, prints test accuracy and the duality-gap certificate, then trains the same model
(same gates, same width, same objective) and a plain ReLU network of the same width with
full-batch Adam, and writes a convergence plot (demo_convergence.png).
Objective: 1/2 ||f(X) − Y||² (one-hot Y, summed over samples) + reg/2 · ||weights||².
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import convexnn as cn

REG, N_PATTERNS, SEED = 1.0, 50, 0


def adam(module: torch.nn.Module, X, Y, epochs: int, lr: float):
    """Full-batch Adam on loss + reg/2 ||params||²; returns (objective trace, seconds trace)."""
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    objs, secs, t0 = [], [], time.perf_counter()
    for _ in range(epochs):
        opt.zero_grad()
        obj = 0.5 * ((module(X) - Y) ** 2).sum() + 0.5 * REG * sum(
            (p ** 2).sum() for p in module.parameters())
        obj.backward()
        opt.step()
        objs.append(obj.item())
        secs.append(time.perf_counter() - t0)
    return objs, secs


def main() -> int:
    torch.manual_seed(SEED)
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.25, random_state=SEED)
    print(f"digits: {len(Xtr)} train / {len(Xte)} test samples, {X.shape[1]} features")

    t0 = time.perf_counter()
    clf = cn.ConvexReLUClassifier(reg=REG, loss="squared", activation="gated",
                                  n_patterns=N_PATTERNS, tol=1e-3, max_time=120,
                                  random_state=SEED).fit(Xtr, ytr)
    t_convex = time.perf_counter() - t0
    cert = clf.certificate_
    print(f"\nconvex (gated ReLU, {clf.network_.n_neurons} neurons): test accuracy "
          f"{clf.score(Xte, yte):.4f}, fit {t_convex:.1f}s, stop: {clf.stop_reason_}")
    print(f"certificate: objective {cert.primal:.6f} >= optimum >= {cert.dual:.6f}  "
          f"(relative gap {cert.relative_gap:.2e}, scope: optimal over the {cert.scope})")

    Xt = torch.as_tensor(Xtr)
    Yt = torch.as_tensor(np.eye(10)[np.searchsorted(clf.classes_, ytr)])
    m = clf.network_.n_neurons
    # the same gated model, randomly initialised, trained by Adam
    same = clf.network_.to_torch()
    for p in same.parameters():
        torch.nn.init.normal_(p, std=0.1)
    objs_g, secs_g = adam(same, Xt, Yt, epochs=1500, lr=1e-2)
    # a plain ReLU network of the same width
    relu = torch.nn.Sequential(torch.nn.Linear(64, m), torch.nn.ReLU(),
                               torch.nn.Linear(m, 10, bias=False)).double()
    objs_r, secs_r = adam(relu, Xt, Yt, epochs=1500, lr=1e-2)
    labels = np.searchsorted(clf.classes_, yte)
    with torch.no_grad():
        acc_g = (same(torch.as_tensor(Xte)).argmax(1).numpy() == labels).mean()
        acc_r = (relu(torch.as_tensor(Xte)).argmax(1).numpy() == labels).mean()
    print(f"\nAdam, same gated model : objective {objs_g[-1]:.6f} "
          f"({'above' if objs_g[-1] > cert.dual else 'BELOW'} the certified lower bound), "
          f"test accuracy {acc_g:.4f}, {secs_g[-1]:.1f}s")
    print(f"Adam, ReLU net width {m}: objective {objs_r[-1]:.6f}, test accuracy {acc_r:.4f}, "
          f"{secs_r[-1]:.1f}s  (a different model class: not bounded by the certificate)")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return 0
    h = clf.history_
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].semilogy(h["seconds"], h["relative_gap"], "o-", ms=3)
    ax[0].set(xlabel="seconds", ylabel="certified relative duality gap", title="convex solver")
    ax[1].semilogy(secs_g, np.array(objs_g) - cert.dual, label="Adam, same gated model")
    ax[1].semilogy(h["seconds"], np.array(h["objective"]) - cert.dual, "o-", ms=3,
                   label="convex solver")
    ax[1].set(xlabel="seconds", ylabel="objective − certified lower bound",
              title="same objective, same model")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig("demo_convergence.png", dpi=120)
    print("\nwrote demo_convergence.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
