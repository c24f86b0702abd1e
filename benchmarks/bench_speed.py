"""Issue 20 benchmark: the gated-ReLU program's solvers, memory against n, and scale.

Run:  python benchmarks/bench_speed.py [--parts asm] [--quick] [--out FILE.md]

reg in parts S and M: 0.1 · reg_max (reg_max = max_p ||Xᵀ D_p Y||, the zero network's threshold).

Part A (a) — CPU seconds (one thread, float64) to a certified relative gap ≤ 1e-4 on the same
gated program (same X, gates, reg = ``--reg`` · reg_max, squared loss, a ones column):
``solve(prog)`` (auto), FISTA and ADMM
side by side in this process, each capped at ``--limit`` seconds.
Part S (s) — the gated program at d = 100, P = 1000 gates, float32, n = 10^4, 10^5 (…),
FISTA (the default) to a certified 1e-3: seconds, iterations and peak RSS of a fresh process;
next to it the default ReLU fit (``ConvexReLURegressor(dtype="float32", max_time=…)``: the
dual-guided descent, certified over the network's own patterns) on the same data, also in a
fresh process. Peak RSS there: ru_maxrss at the end minus ru_maxrss after the set-up (the data;
gated: also the gate sampling).
Part M (m) — peak RSS of the default gated solve (``solve_with_search``, one round) against n
(d = 20, P = 400), in a fresh process each (glibc ``MALLOC_MMAP_THRESHOLD_`` = 1 MiB so that
freed chunks are returned and the peak is the real one), next to the size of X and of one
n x P float64 array.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from _common import print_and_save
from sklearn.datasets import load_digits

from convexnn.formulations.two_layer import TwoLayerProgram, solve
from convexnn.patterns import sample_gates

TOL = 1e-4

_CHILD = """
import resource, time, torch
torch.set_num_threads(1)
from convexnn.formulations.two_layer import TwoLayerProgram, solve, solve_with_search
from convexnn.patterns import sample_gates
n, d, P, dt, mode = {n}, {d}, {P}, torch.{dtype}, "{mode}"
g = torch.Generator().manual_seed(0)
X = torch.randn(n, d, generator=g, dtype=dt)
w = torch.randn(d, 3, generator=g, dtype=dt) / d ** 0.5
Y = (X @ w).clamp_min(0).sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g, dtype=dt)
pats = sample_gates(X, P, 0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t, w0 = time.process_time(), time.perf_counter()
prog = TwoLayerProgram(X, Y, pats, 1.0, "squared", "gated", **{kw})
prog.reg = {reg} * float(prog.dual_norms(prog.rmatvec(Y)[None]).max())  # fraction of reg_max
if mode == "search":
    prog, x, cert, info = solve_with_search(prog, rounds=1, max_iter=30, tol={tol})
    it = sum(r.n_iter for r in info["results"])
else:
    x, cert, res = solve(prog, tol={tol}, max_time={limit})
    it = res.n_iter
cpu, wall = time.process_time() - t, time.perf_counter() - w0
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(cpu, it, cert.relative_gap, peak, pats.n_patterns, wall)
"""

# the default ReLU fit on the same data as _CHILD's (the estimator: standardisation, reg =
# 0.1·reg_max by neuron search, dual-guided descent, certificate over the network's patterns)
_RELU_CHILD = """
import json, resource, time, torch
torch.set_num_threads(1)
from convexnn import ConvexReLURegressor
n, d = {n}, {d}
g = torch.Generator().manual_seed(0)
X = torch.randn(n, d, generator=g, dtype=torch.float32)
w = torch.randn(d, 3, generator=g, dtype=torch.float32) / d ** 0.5
Y = (X @ w).clamp_min(0).sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)
X, y = X.numpy(), Y[:, 0].numpy()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t, w0 = time.process_time(), time.perf_counter()
m = ConvexReLURegressor(dtype="float32", max_time={limit}, random_state=0).fit(X, y)
cpu, wall = time.process_time() - t, time.perf_counter() - w0
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
c = m.certificate_
print(json.dumps(dict(cpu=cpu, wall=wall, it=m.n_iter_, gap=c.relative_gap, peak=peak,
                      scope=c.scope, problem=c.problem, P=c.n_patterns, stop=m.stop_reason_,
                      neurons=m.network_.n_neurons, violation=c.max_violation)))
"""


def child(n: int, d: int, P: int, dtype: str, mode: str, tol: float, limit: float,
          reg: float, mask_cache: int | None = None) -> list[float]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576", "OMP_NUM_THREADS": "1"}
    kw = {} if mask_cache is None else {"mask_cache_limit": mask_cache}
    code = _CHILD.format(n=n, d=d, P=P, dtype=dtype, mode=mode, tol=tol, limit=limit, reg=reg,
                         kw=kw)
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return [float(v) for v in out]


def relu_child(n: int, d: int, limit: float) -> dict:
    """The default ReLU fit in a fresh process; on failure, what happened (exit status and
    the last line of its stderr)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576", "OMP_NUM_THREADS": "1"}
    code = _RELU_CHILD.format(n=n, d=d, limit=limit)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or [""])[-1]
        return {"failed": f"exit status {r.returncode}: {tail[:200]}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def synthetic(n: int, d: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, 3)) / np.sqrt(d)
    y = np.maximum(X @ W, 0).sum(1) + 0.1 * rng.standard_normal(n)
    return X, y


def timed(prog: TwoLayerProgram, solver: str, limit: float):
    t = time.process_time()
    _, cert, res = solve(prog, solver=solver, tol=TOL, max_time=limit, max_iter=10 ** 6)
    cpu = time.process_time() - t
    ok = cert.relative_gap <= TOL
    return (f"{cpu:.2f}" if ok else f"> {cpu:.1f} (gap {cert.relative_gap:.1e})"), res.n_iter


def part_a(quick: bool, limit: float, repeat: int, frac: float) -> str:
    cases = [("2000 x 50", *synthetic(2000), 100), ("2000 x 50", *synthetic(2000), 500)]
    Xd, yd = load_digits(return_X_y=True)
    cases.append(("digits 1797 x 64", Xd / 16.0, (yd >= 5) * 2.0 - 1.0, 100))
    if quick:
        cases = cases[:1]
    rows = ["| case | P | auto | fista | admm | iterations (auto/fista/admm) |",
            "|---|---|---|---|---|---|"]
    for name, X, y, P in cases:
        Xt = torch.as_tensor(X, dtype=torch.float64)
        Xa = torch.cat([Xt, torch.ones(len(X), 1, dtype=Xt.dtype)], 1)
        Yt = torch.as_tensor(y, dtype=torch.float64)[:, None]
        pats = sample_gates(Xa, P, 0, kind="data", intercept_column=True)
        prog = TwoLayerProgram(Xa, Yt, pats, 1.0, "squared", "gated", intercept=True)
        prog.reg = frac * float(prog.dual_norms(prog.rmatvec(Yt)[None]).max())
        cells, its = [], []
        for solver in ("auto", "fista", "admm"):
            runs = [timed(prog, solver, limit) for _ in range(repeat if solver != "admm" else 1)]
            runs.sort(key=lambda r: float(r[0].split()[-1]) if r[0][0] != ">" else 1e9)
            cells.append(runs[len(runs) // 2][0])
            its.append(str(runs[len(runs) // 2][1]))
        rows.append(f"| {name} | {pats.n_patterns} | " + " | ".join(cells) + " | "
                    + "/".join(its) + " |")
        print(rows[-1], flush=True)
    return "\n".join(rows) + "\n"


def part_s(sizes: list[int], limit: float, relu_limit: float, mask_cache: int | None) -> str:
    rows = ["| n | fit | CPU s | wall s | iterations | rel gap | certificate over | "
            "peak RSS above set-up MB | X MB |", "|---|---|---|---|---|---|---|---|---|"]
    notes = {}
    for n in sizes:
        xmb = f"{n * 100 * 4 / 2**20:.0f}"
        cpu, it, gap, peak, P, wall = child(n, 100, 1000, "float32", "solve", 1e-3, limit, 0.1,
                                      mask_cache)
        rows.append(f"| {n} | gated, FISTA | {cpu:.1f} | {wall:.1f} | {int(it)} | {gap:.1e} | "
                    f"{int(P)} sampled gates | {peak:.0f} | {xmb} |")
        print(rows[-1], flush=True)
        r = relu_child(n, 100, relu_limit)
        if "failed" in r:
            rows.append(f"| {n} | ReLU, default descent | failed | | | | | | {xmb} |")
            notes[n] = f"ReLU at n = {n}: {r['failed']}"
        else:
            rows.append(f"| {n} | ReLU, default descent | {r['cpu']:.1f} | {r['wall']:.1f} | "
                        f"{r['it']} | {r['gap']:.1e} | the network's own {r['P']} patterns "
                        f"({r['neurons']} neurons) | {r['peak']:.0f} | {xmb} |")
            notes[n] = (f"ReLU at n = {n}: stop: {r['stop']}; scope: {r['scope']}; problem: "
                        f"{r['problem']}; max violation of the neuron search "
                        f"{r['violation']:.3g}·reg")
        print(rows[-1], flush=True)
        print(notes[n], flush=True)
    return "\n".join(rows) + "\n\n" + "\n".join(f"- {v}" for v in notes.values()) + "\n"


def part_m(sizes: list[int]) -> str:
    rows = ["| n | P | peak RSS MB (default gated path) | X MB | n x P float64 MB |",
            "|---|---|---|---|---|"]
    for n in sizes:
        _, _, _, peak, P, _ = child(n, 20, 400, "float64", "search", 1e-6, 600, 0.1)
        rows.append(f"| {n} | {int(P)} | {peak:.0f} | {n * 20 * 8 / 2**20:.1f} | "
                    f"{n * P * 8 / 2**20:.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="asm")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--limit", type=float, default=20.0, help="seconds per solve (part a)")
    ap.add_argument("--scale-limit", type=float, default=300.0, help="seconds per fit (part s)")
    ap.add_argument("--relu-limit", type=float, default=600.0,
                    help="max_time of the ReLU fit (part s)")
    ap.add_argument("--mask-cache-limit", type=float, default=None,
                    help="part s, gated: TwoLayerProgram's mask_cache_limit (n·P entries "
                         "below which the bool masks are cached; default: the library's)")
    ap.add_argument("--sizes", default="10000,100000", help="n for part s")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reg", type=float, default=0.1, help="part a: reg as a fraction of reg_max")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    text = f"Command: `python benchmarks/bench_speed.py {' '.join(sys.argv[1:])}`\n\n"
    if "a" in args.parts:
        text += (f"### A. Gated program, CPU s (one thread, float64) to a certified {TOL:g} "
                 f"(reg = {args.reg:g}·reg_max; median of {args.repeat}; ADMM once; capped at "
                 f"{args.limit:g} s wall)\n\n"
                 + part_a(args.quick, args.limit, args.repeat, args.reg) + "\n")
    if "s" in args.parts:
        sizes = [int(v) for v in args.sizes.split(",")][: 1 if args.quick else None]
        mc = None if args.mask_cache_limit is None else int(args.mask_cache_limit)
        text += ("### S. Scale: gated program, FISTA (default), float32, to a certified 1e-3 "
                 "(reg = 0.1·reg_max), and the default ReLU fit (float32, max_time "
                 f"{args.relu_limit:g} s); d = 100, P = 1000\n\n"
                 + part_s(sizes, args.scale_limit, args.relu_limit, mc) + "\n")
    if "m" in args.parts:
        sizes = [20000, 40000] if args.quick else [20000, 40000, 80000, 160000]
        text += "### M. Peak RSS against n\n\n" + part_m(sizes) + "\n"
    print_and_save(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
