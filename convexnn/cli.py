"""Command line: ``convexnn fit data.csv --target y [...]`` and ``convexnn demo``.

``fit`` reads a CSV file with a header row: the ``--target`` column is the label (numbers or,
for classification, any strings), every other column a numeric feature. It prints one JSON
object on stdout: ``train_score`` and ``test_score`` (accuracy or R², see ``metric``; the test
score is null without ``--test-size``) and the fit's certificate. A user error (missing file,
bad CSV, unknown column, invalid option, a fit rejected by the estimator) prints one line
``convexnn: error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from typing import NoReturn

import numpy as np

__all__ = ["main", "read_csv", "UserError"]


class UserError(Exception):
    """A problem with the user's input or options (reported in one line, no traceback)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors: one line too
        _die(f"{message} (see '{self.prog} --help')")


def _die(message: str) -> NoReturn:
    print(f"convexnn: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


# ------------------------------------------------------------------------------- data
def read_csv(path: str, target: str,
             classification: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read ``path`` (header row, comma separated) into (X, y, feature names).

    Features must be finite numbers. The target is float for regression; for classification
    integer-valued numbers become int labels and anything else stays a string label.
    Raises :class:`UserError` naming the file, line and column of the first problem.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = [(reader.line_num, r) for r in reader if any(v.strip() for v in r)]
    except FileNotFoundError as err:
        raise UserError(f"{path}: no such file") from err
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: cannot read as CSV ({err})") from err
    if not rows:
        raise UserError(f"{path}: empty file (expected a header row and data rows)")
    header = [h.strip() for h in rows[0][1]]
    if "" in header:
        raise UserError(f"{path}: the header row has an empty column name "
                        f"(column {header.index('') + 1})")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise UserError(f"{path}: duplicate column names {dup}")
    if target not in header:
        raise UserError(f"{path}: target column {target!r} not found (columns: "
                        f"{', '.join(header)})")
    if len(header) < 2:
        raise UserError(f"{path}: no feature columns besides the target {target!r}")
    body = rows[1:]
    if not body:
        raise UserError(f"{path}: no data rows after the header")
    for line, r in body:
        if len(r) != len(header):
            raise UserError(f"{path}: line {line} has {len(r)} fields but the header has "
                            f"{len(header)}")
    lines = [line for line, _ in body]
    cells = np.array([[v.strip() for v in r] for _, r in body], dtype=str).reshape(
        len(body), len(header))
    features = [h for h in header if h != target]
    X = np.column_stack([_numeric(path, cells[:, header.index(h)], h, lines, "feature")
                         for h in features])
    col = cells[:, header.index(target)]
    if not classification:
        return X, _numeric(path, col, target, lines, "target"), features
    empty = np.flatnonzero(col == "")
    if empty.size:
        raise UserError(f"{path}: target column {target!r} is empty at line {lines[empty[0]]}")
    try:
        num = col.astype(np.float64)
    except ValueError:
        return X, col, features  # string labels
    if np.isfinite(num).all() and (num == np.round(num)).all():
        return X, num.astype(np.int64), features
    return X, col, features


def _numeric(path: str, col: np.ndarray, name: str, lines: list[int], role: str) -> np.ndarray:
    out = np.empty(len(col))
    for i, v in enumerate(col):
        try:
            out[i] = float(v)
        except ValueError:
            what = "a missing value" if v == "" else f"a non-numeric value {str(v)!r}"
            hint = (" (use --task classification for labels)" if role == "target"
                    else " (features must be numbers)")
            raise UserError(f"{path}: {role} column {name!r} has {what} at line "
                            f"{lines[i]}{hint}") from None
        if not math.isfinite(out[i]):
            raise UserError(f"{path}: {role} column {name!r} has a non-finite value {str(v)!r} at "
                            f"line {lines[i]}")
    return out


# ------------------------------------------------------------------------------- fit
def _fit(args: argparse.Namespace) -> int:
    from .estimators import ConvexReLUClassifier, ConvexReLURegressor

    classification = args.task == "classification"
    if not classification and args.loss not in (None, "squared"):
        raise UserError(f"--loss {args.loss} needs --task classification (regression uses "
                        "the squared loss)")
    X, y, _ = read_csv(args.data, args.target, classification)
    Xtr, ytr, Xte, yte = X, y, None, None
    if args.test_size > 0:
        from sklearn.model_selection import train_test_split

        try:
            Xtr, Xte, ytr, yte = train_test_split(
                X, y, test_size=args.test_size, random_state=args.seed,
                stratify=y if classification else None)
        except ValueError as err:
            raise UserError(f"--test-size {args.test_size}: cannot split the {len(y)} rows of "
                            f"{args.data} ({err})") from err
    common = {"activation": args.activation, "random_state": args.seed, "tol": args.tol,
              "max_time": args.max_time}
    if args.reg is not None:  # else the estimator's own default
        common["reg"] = args.reg
    if args.n_patterns is not None:
        common["n_patterns"] = args.n_patterns
    if classification:
        est = ConvexReLUClassifier(loss=args.loss or "cross_entropy", **common)
    else:
        est = ConvexReLURegressor(**common)
    try:
        est.fit(Xtr, ytr)
    except ValueError as err:
        raise UserError(f"cannot fit {args.data}: {err}") from err
    out = {"task": args.task, "metric": "accuracy" if classification else "r2",
           "n_train": len(ytr), "n_test": 0 if yte is None else len(yte),
           "train_score": float(est.score(Xtr, ytr)),
           "test_score": None if yte is None else float(est.score(Xte, yte)),
           **est.certificate_.as_dict()}
    print(json.dumps(out, indent=2))
    if args.save:
        try:
            est.save(args.save)
        except OSError as err:
            raise UserError(f"cannot save to {args.save} ({err})") from err
        print(f"saved to {args.save} (+ .json)", file=sys.stderr)  # stdout stays pure JSON
    return 0


def _fraction(s: str) -> float:
    try:
        f = float(s)
    except ValueError:
        f = math.nan
    if not 0.0 <= f < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {s!r}")
    return f


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="convexnn", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{fit,demo}")
    f = sub.add_parser("fit", help="fit a two-layer network on a CSV file (header row)",
                       description="Fit a two-layer ReLU network to global optimality over "
                                   "sampled activation patterns and print its certificate.")
    f.add_argument("data", help="CSV file with a header row; all non-target columns are "
                                "numeric features")
    f.add_argument("--target", required=True, help="name of the target (label) column")
    f.add_argument("--task", choices=["regression", "classification"], default="regression",
                   help="regression (numeric target, R² score) or classification (any labels, "
                        "accuracy); default: %(default)s")
    f.add_argument("--loss", choices=["cross_entropy", "logistic", "squared"],
                   help="classification loss (default cross_entropy; logistic is binary only)")
    f.add_argument("--reg", type=float, default=None,
                   help="weight decay β > 0 (default: the estimator's default)")
    f.add_argument("--n-patterns", type=int, default=None,
                   help="number of sampled activation patterns (default: the estimator's)")
    f.add_argument("--activation", choices=["relu", "gated"], default="relu",
                   help="relu (cone-constrained program) or gated (gated ReLU); "
                        "default: %(default)s")
    f.add_argument("--tol", type=float, default=1e-6,
                   help="stop at this relative duality gap; default: %(default)s")
    f.add_argument("--max-time", type=float, default=None,
                   help="wall-clock limit of the solver in seconds (default: none)")
    f.add_argument("--test-size", type=_fraction, default=0.0, metavar="FRACTION",
                   help="hold out this fraction of rows (stratified for classification) and "
                        "report test_score; default 0 = no split")
    f.add_argument("--seed", type=int, default=0,
                   help="random seed for pattern sampling and the split; default: %(default)s")
    f.add_argument("--save", metavar="PATH",
                   help="save the fitted model to PATH (.npz) and PATH.json")
    sub.add_parser("demo", help="run the digits demo (examples/demo.py, source tree only)",
                   description="Run the digits demo shipped in examples/demo.py.")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (user errors exit with status 2)."""
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "fit":
            return _fit(args)
        return _demo()
    except UserError as err:
        _die(str(err))


def _demo() -> int:
    import runpy
    from pathlib import Path

    demo = Path(__file__).resolve().parent.parent / "examples" / "demo.py"
    if not demo.exists():
        raise UserError("the demo ships with the source tree (examples/demo.py)")
    runpy.run_path(str(demo), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
