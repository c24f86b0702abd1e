"""Command line: ``convexnn fit data.csv --target y [...]`` and ``convexnn demo``."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _fit(args: argparse.Namespace) -> int:
    from .estimators import ConvexReLUClassifier, ConvexReLURegressor

    data = np.genfromtxt(args.data, delimiter=",", names=True, dtype=float)
    names = list(data.dtype.names)
    if args.target not in names:
        raise SystemExit(f"target column {args.target!r} not in {names}")
    X = np.column_stack([data[c] for c in names if c != args.target])
    y = data[args.target]
    common = {"reg": args.reg, "n_patterns": args.n_patterns, "activation": args.activation,
              "random_state": args.seed, "tol": args.tol, "max_time": args.max_time}
    if args.task == "classification":
        est = ConvexReLUClassifier(loss=args.loss or "cross_entropy", **common)
    else:
        est = ConvexReLURegressor(**common)
    est.fit(X, y)
    print(json.dumps({"score": float(est.score(X, y)), **est.certificate_.as_dict()}, indent=2))
    if args.save:
        est.save(args.save)
        print(f"saved to {args.save} (+ .json)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="convexnn", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit a two-layer network on a CSV file (header row)")
    f.add_argument("data")
    f.add_argument("--target", required=True)
    f.add_argument("--task", choices=["regression", "classification"], default="regression")
    f.add_argument("--loss", choices=["cross_entropy", "logistic", "squared"])
    f.add_argument("--reg", type=float, default=1e-3)
    f.add_argument("--n-patterns", type=int, default=100)
    f.add_argument("--activation", choices=["relu", "gated"], default="relu")
    f.add_argument("--tol", type=float, default=1e-6)
    f.add_argument("--max-time", type=float, default=None)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--save")
    sub.add_parser("demo", help="run the digits demo")
    args = p.parse_args(argv)
    if args.cmd == "fit":
        return _fit(args)
    import runpy
    from pathlib import Path

    demo = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
    if not demo.exists():
        raise SystemExit("the demo ships with the source tree (examples/demo.py)")
    runpy.run_path(str(demo), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
