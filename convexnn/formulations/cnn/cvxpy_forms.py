"""Independent CVXPY models of the CNN programs (numpy loops over positions; small problems,
used by ``solve(..., solver="cvxpy")`` and the tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # annotations only (the program modules import this one)
    from .circular import CircularCNNProgram
    from .conv import ConvTwoLayerProgram
    from .three_layer import ThreeLayerCNNProgram

from ...losses import get_loss

__all__ = ["np_patches", "cvxpy_two_layer", "cvxpy_loss", "cvxpy_circular", "cvxpy_three_layer"]


def np_patches(images: np.ndarray, k: int, stride: int, padding: int,
                intercept: bool) -> np.ndarray:
    """Patches (N, K, h) by explicit slicing (independent of ``unfold``)."""
    N, C, H, W = images.shape
    Xp = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (H + 2 * padding - k) // stride + 1
    wo = (W + 2 * padding - k) // stride + 1
    out = []
    for i in range(ho):
        for j in range(wo):
            blk = Xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k].reshape(N, -1)
            if intercept:
                blk = np.concatenate([blk, np.ones((N, 1))], 1)
            out.append(blk)
    return np.stack(out, 1)


def cvxpy_two_layer(prog: ConvTwoLayerProgram):
    import cvxpy as cp

    X = np_patches(prog.images.detach().cpu().double().numpy(), prog.kernel_size, prog.stride,
                    prog.padding, prog.intercept)
    G = prog.G.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    win = prog.win.index.numpy()
    N = X.shape[0]
    V = {}
    cone_cons = {}
    Zcols = [0] * prog.c
    cons, pen = [], 0
    for p in range(prog.P):
        g = G[:, p]
        for q in range(prog.a):
            ks = win[q]
            pre = np.stack([X[:, k] @ g for k in ks], 1)  # (N, Kq)
            if prog.pooling == "max":
                kst = pre.argmax(1)
                act = (pre[np.arange(N), kst] >= 0).astype(float)
                Xs = np.stack([X[n, ks[kst[n]]] for n in range(N)])
                E = act[:, None] * Xs
                rows = []
                for n in range(N):
                    for j, k in enumerate(ks):
                        if j == kst[n]:
                            rows.append((2 * act[n] - 1) * Xs[n])
                        else:
                            rows.append(Xs[n] - X[n, k])
                B = np.array(rows)
                flat = np.arange(N * len(ks))  # rows ordered (n, j): flat = n·Kq + j
            else:
                D = (pre >= 0).astype(float)
                E = prog.win.weight * sum(D[:, j:j + 1] * X[:, k] for j, k in enumerate(ks))
                B = np.concatenate([(2 * D[:, j:j + 1] - 1) * X[:, k] for j, k in enumerate(ks)])
                # rows ordered (j, n): flat = n·Kq + j
                flat = (np.arange(N)[None, :] * len(ks) + np.arange(len(ks))[:, None]).ravel()
            for c in range(prog.c):
                vs = []
                for s in range(prog.S):
                    v = cp.Variable(prog.h)
                    V[(s, p, q, c)] = v
                    vs.append(v)
                    if prog.activation == "relu":
                        cons.append(B @ v >= 0)
                        cone_cons[(s, p, q, c)] = (cons[-1], flat)
                if prog.nuclear:
                    V[("E", p, q, c)] = E
                else:
                    pen = pen + sum(cp.norm(v, 2) for v in vs)
                z = E @ (vs[0] - vs[1]) if prog.S == 2 else E @ vs[0]
                Zcols[c] = Zcols[c] + z
    if prog.nuclear:
        for p in range(prog.P):
            Mp = cp.vstack([cp.reshape(V[(0, p, q, c)], (1, prog.h), order="C")
                            for q in range(prog.a) for c in range(prog.c)])
            pen = pen + cp.normNuc(Mp)
    Z = cp.hstack([cp.reshape(z, (N, 1), order="C") for z in Zcols])
    problem = cp.Problem(cp.Minimize(cvxpy_loss(prog.loss.name, Z, Y) + prog.reg * pen), cons)

    def assemble() -> Tensor:
        x = np.zeros(prog.shape)
        for key, v in V.items():
            if key[0] != "E":
                s, p, q, c = key
                x[s, p, q, c] = v.value
        return torch.as_tensor(x, dtype=prog.Y.dtype, device=prog.Y.device)

    def duals() -> dict:
        """{(s, p, q, c): (flat row indices, multipliers ≥ 0)} of the cone constraints."""
        return {k: (flat, np.maximum(np.asarray(con.dual_value).ravel(), 0.0))
                for k, (con, flat) in cone_cons.items()}

    assemble.duals = duals
    return problem, assemble


def cvxpy_loss(name: str, Z, Y: np.ndarray):
    """The named loss as a CVXPY expression (:meth:`convexnn.losses.Loss.cvxpy`)."""
    return get_loss(name).cvxpy(Z, Y)


def cvxpy_circular(prog: CircularCNNProgram):
    import cvxpy as cp

    X = prog.X.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    G = prog.G.detach().cpu().double().numpy()
    N, d = X.shape
    # independent spectral penalty: ||F e||_1 / sqrt(d) via numpy's DFT matrix (real/imag parts)
    dims = prog.spatial
    Fm = np.eye(d)
    Fm = np.fft.fftn(Fm.reshape(d, *dims), axes=tuple(range(1, len(dims) + 1))).reshape(d, d).T
    Fm = Fm / np.sqrt(d)  # unitary DFT matrix: ê = Fm @ e
    Fr, Fi = Fm.real, Fm.imag
    cons, pen = [], 0
    Zcols = [0] * prog.c
    E = {}
    for p in range(prog.P):
        D = (X @ G[:, p] >= 0).astype(float)
        for c in range(prog.c):
            es = []
            for s in range(2):
                e = cp.Variable(d)
                E[(s, p, c)] = e
                es.append(e)
                cons.append(cp.multiply(2 * D - 1, X @ e) >= 0)
                pen = pen + cp.sum(cp.norm(cp.vstack([Fr @ e, Fi @ e]), 2, axis=0)) / np.sqrt(d)
            Zcols[c] = Zcols[c] + cp.multiply(D, X @ (es[0] - es[1]))
    Z = cp.hstack([cp.reshape(z, (N, 1), order="C") for z in Zcols])
    problem = cp.Problem(cp.Minimize(cvxpy_loss(prog.loss.name, Z, Y) + prog.reg * pen), cons)

    def assemble() -> Tensor:
        x = torch.zeros(prog.shape, dtype=prog.Y.dtype, device=prog.Y.device)
        for (s, p, c), e in E.items():
            et = torch.as_tensor(e.value, dtype=prog.Y.dtype, device=prog.Y.device)
            x[s, p, c] = torch.einsum("d,dft->ft", et, prog.R)
        return x

    return problem, assemble


def cvxpy_three_layer(prog: ThreeLayerCNNProgram):
    import cvxpy as cp

    X = np_patches(prog.images.detach().cpu().double().numpy(), prog.kernel_size, prog.stride,
                    prog.padding, prog.intercept)
    G = prog.G.detach().cpu().double().numpy()
    Y = prog.Y.detach().cpu().double().numpy()
    Mout = prog.Mout.detach().cpu().double().numpy()
    N = X.shape[0]
    cons, pen = [], 0
    Zcols = [0] * prog.c
    V = {}
    for l in range(prog.L):
        for e, eps in enumerate((1.0, -1.0)):
            for c in range(prog.c):
                Hexpr = 0
                for k in range(prog.K):
                    for g in range(prog.Gn):
                        D = (X[:, k] @ G[:, g] >= 0).astype(float)
                        for s in range(2):
                            v = cp.Variable(prog.h)
                            V[(l, e, c, k, g, s)] = v
                            cons.append(cp.multiply(2 * D - 1, X[:, k] @ v) >= 0)
                            pen = pen + cp.norm(v, 2)
                            Hexpr = Hexpr + (1 if s == 0 else -1) * cp.multiply(D, X[:, k] @ v)
                cons.append(cp.multiply(2 * Mout[:, l] - 1, Hexpr) >= 0)
                Zcols[c] = Zcols[c] + eps * cp.multiply(Mout[:, l], Hexpr)
    Z = cp.hstack([cp.reshape(z, (N, 1), order="C") for z in Zcols])
    problem = cp.Problem(cp.Minimize(cvxpy_loss(prog.loss.name, Z, Y) + prog.reg * pen), cons)

    def assemble() -> Tensor:
        x = np.zeros(prog.shape)
        for (l, e, c, k, g, s), v in V.items():
            x[l, e, c, k, g, s] = v.value
        return torch.as_tensor(x, dtype=prog.Y.dtype, device=prog.Y.device)

    return problem, assemble

