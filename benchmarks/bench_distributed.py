"""1 vs 2 processes (torch.distributed, gloo, one thread each) on one compute-bound problem.

Row-sharded gated program (:func:`convexnn.distributed.fit_gated_distributed`, FISTA) and ReLU
descent (:func:`convexnn.distributed.fit_relu_distributed`) on planted data, n x d standardised.
Prints wall seconds, iterations, seconds per iteration and the speed-up of 2 processes; the
objectives of both runs (the ReLU descent's trajectory depends on the summation order, so its
two runs may stop at different iterations: compare seconds per iteration as well).

    python benchmarks/bench_distributed.py [--n 40000] [--d 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _data(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, 8)) / np.sqrt(d)
    y = np.maximum(X @ W, 0).sum(1) - np.maximum(X @ W, 0).sum(1).mean()
    y += 0.1 * rng.standard_normal(n)
    return torch.tensor(X), torch.tensor(y[:, None])


def _worker(rank, world, init, n, d, which, out):
    torch.set_num_threads(1)
    from convexnn.distributed import fit_gated_distributed, fit_relu_distributed

    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        X, Y = _data(n, d)
        rows = np.array_split(np.arange(n), world)[rank]
        reg = 1e-3 * n
        dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        if which == "gated":
            _, cert, res = fit_gated_distributed(X[rows], Y[rows], reg, n_patterns=100,
                                                 tol=1e-4, max_iter=3000)
            its = res.n_iter
        else:
            _, cert, info = fit_relu_distributed(X[rows], Y[rows], reg, n_neurons=100,
                                                 search_rounds=2)
            its = info["n_iter"]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if rank == 0:
            np.savez(out, wall=wall, cpu=cpu, its=its, primal=cert.primal, gap=cert.relative_gap)
    finally:
        dist.destroy_process_group()


def run(world: int, n: int, d: int, which: str) -> dict:
    tmp = tempfile.mkdtemp()
    out = os.path.join(tmp, "res.npz")
    mp.spawn(_worker, args=(world, os.path.join(tmp, "init"), n, d, which, out), nprocs=world,
             join=True)
    r = np.load(out)
    return {k: float(r[k]) for k in r.files}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40000)
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--which", default="gated,relu")
    args = ap.parse_args()
    print(f"n = {args.n}, d = {args.d}, medians of {args.repeat}, one thread per process, "
          f"load {os.getloadavg()[0]:.1f}")
    print("| program | processes | wall s | iterations | ms / iteration | objective | rel gap | "
          "speed-up (wall) | speed-up (per iteration) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for which in args.which.split(","):
        res = {}
        for world in (1, 2):
            runs = [run(world, args.n, args.d, which) for _ in range(args.repeat)]
            med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
            med["per_it"] = float(np.median([r["wall"] / max(r["its"], 1) for r in runs]))
            res[world] = med
        for world in (1, 2):
            m = res[world]
            sp = res[1]["wall"] / m["wall"]
            spi = res[1]["per_it"] / m["per_it"]
            print(f"| {which} | {world} | {m['wall']:.2f} | {m['its']:.0f} | "
                  f"{1e3 * m['per_it']:.2f} | {m['primal']:.8g} | {m['gap']:.2e} | "
                  f"{sp:.2f}x | {spi:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
