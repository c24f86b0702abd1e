r"""Containers for the convolutional networks read back from the convex CNN programs.

* :class:`ConvNetwork` — conv (m filters, bias) → ReLU (or gated ReLU) → pooling → Flatten →
  Linear (no bias)::

      f(x) = A · vec( pool( σ(conv(x; U, b)) ) ),
      objective  L(f(X), Y) + (β/2)(||U||² + ||b||² + ||A||²)

  pooling: ``"avg"`` / ``"max"`` with ``pool_size`` p (``AvgPool2d(p)`` / ``MaxPool2d(p)``)
  or global (``pool_size=None``: ``AdaptiveAvgPool2d(1)`` / ``AdaptiveMaxPool2d(1)``), or
  ``"none"``. Gated: σ(conv_u)(x)_k = 1[x_kᵀ g ≥ 0]·x_kᵀ u with a fixed gate conv (g, h); with
  max pooling the gated value is taken at the gate's first arg-max in each window.
* :class:`CircularCNN` — single-channel input, per neuron j: circular conv with a full-size
  filter W1_j (||W1_j|| ≤ 1), ``n_circular − 1`` further circular convs with unit-norm filters
  (read back as identity/delta filters), a full-size "valid" conv WL_j (one value), ReLU,
  output weights Wout[:, j]. Objective L + (β/2)(||WL||² + ||Wout||²) with the unit-norm
  constraint on the circular filters (checked).
* :class:`ThreeLayerCNN` — conv (m1 filters, bias) → ReLU → Flatten → Linear(m1·K → m2) → ReLU
  → Linear(m2 → c); objective L + β R with the ℓ1 path regulariser
  R = Σ_{t,j2,j1,k} |W3[t,j2]| |W2[j2,(j1,k)]| ||(U_{j1}, b_{j1})||.

``to_torch()`` returns modules with identical outputs; files are ``.npz`` + JSON (no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import Loss, get_loss
from ..patterns.patches import pooling_windows
from .base import read_npz, save_npz

__all__ = ["LinearReadout", "ConvNetwork", "CircularCNN", "ThreeLayerCNN", "GatedConvModule",
           "load_cnn"]


def _as_images(X, like: Tensor) -> Tensor:
    X = X if isinstance(X, Tensor) else torch.as_tensor(np.asarray(X))
    X = X.to(dtype=like.dtype, device=like.device)
    if X.ndim == 3:
        X = X[:, None]
    return X


def _targets(Y, Z: Tensor) -> Tensor:
    Yt = Y if isinstance(Y, Tensor) else torch.as_tensor(np.asarray(Y))
    Yt = Yt.to(dtype=Z.dtype, device=Z.device)
    return Yt[:, None] if Yt.ndim == 1 else Yt


def _pool_module(pooling: str, pool_size: int | None) -> nn.Module:
    if pooling == "none":
        return nn.Identity()
    if pooling == "avg":
        return nn.AdaptiveAvgPool2d(1) if pool_size is None else nn.AvgPool2d(pool_size)
    return nn.AdaptiveMaxPool2d(1) if pool_size is None else nn.MaxPool2d(pool_size)


def _windows(H: int, W: int, pool_size: int | None, pooling: str) -> Tensor:
    return pooling_windows((H, W), pooling, pool_size).index


class GatedConvModule(nn.Module):
    """Gated conv layer + pooling + Flatten + Linear (the exported gated CNN)."""

    def __init__(self, net: ConvNetwork):
        super().__init__()
        self.net = net.to(device=net.weight.device, dtype=net.weight.dtype)
        self.register_buffer("weight", net.weight.detach().clone())
        self.register_buffer("bias", net.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.net.forward(x)


class LinearReadout:
    """forward / penalty / objective of a convolutional network with a bias-free linear
    readout: needs ``features(X)``, ``weight``, ``bias`` and ``linear_weight``."""

    def forward(self, X) -> Tensor:
        return self.features(X) @ self.linear_weight.T

    __call__ = forward

    def penalty(self) -> Tensor:
        return (self.weight ** 2).sum() + (self.bias ** 2).sum() + (self.linear_weight ** 2).sum()

    def objective(self, X, Y, reg: float, loss: str | Loss = "squared") -> float:
        """Non-convex objective ``loss(f(X), Y) + (reg/2)·(||U||² + ||b||² + ||A||²)``."""
        Z = self.forward(X)
        return float((get_loss(loss).value(Z, _targets(Y, Z)) + 0.5 * reg * self.penalty())
                     .detach())


@dataclass
class ConvNetwork(LinearReadout):
    """Two-layer CNN read back from :class:`~convexnn.formulations.cnn.ConvTwoLayerProgram`."""

    weight: Tensor  # (m, C, k, k)
    bias: Tensor  # (m,)
    linear_weight: Tensor  # (c, m * a)
    kernel_size: int = 3
    stride: int = 1
    padding: int = 0
    pooling: str = "avg"
    pool_size: int | None = None
    activation: str = "relu"
    gate_weight: Tensor | None = None  # (m, C, k, k)
    gate_bias: Tensor | None = None  # (m,)

    def __post_init__(self) -> None:
        if self.weight.shape[0] == 0:  # an all-zero model: one zero filter, no contribution
            C, k = self.weight.shape[1], self.kernel_size
            z = torch.zeros(1, C, k, k, dtype=self.weight.dtype, device=self.weight.device)
            self.weight = z
            self.bias = torch.zeros(1, dtype=z.dtype, device=z.device)
            a = 1 if self.linear_weight.shape[1] == 0 else self.linear_weight.shape[1]
            self.linear_weight = torch.zeros(self.linear_weight.shape[0], a, dtype=z.dtype,
                                             device=z.device)
            if self.activation == "gated":
                self.gate_weight, self.gate_bias = z.clone(), self.bias.clone()
        if self.activation not in ("relu", "gated"):
            raise ValueError(f"activation must be 'relu' or 'gated', got {self.activation!r}")
        if self.activation == "gated" and (self.gate_weight is None or self.gate_bias is None):
            raise ValueError("a gated network needs gate_weight and gate_bias")

    @property
    def n_filters(self) -> int:
        return int(self.weight.shape[0])

    def _conv(self, X: Tensor, W: Tensor, b: Tensor) -> Tensor:
        return F.conv2d(X, W, b, stride=self.stride, padding=self.padding)

    def features(self, X) -> Tensor:
        """Pooled activations, flattened (N, m·a) in ``nn.Flatten`` order."""
        X = _as_images(X, self.weight)
        pre = self._conv(X, self.weight, self.bias)
        if self.activation == "relu":
            act = torch.relu(pre)
            pooled = _pool_module(self.pooling, self.pool_size)(act)
            return pooled.flatten(1)
        gpre = self._conv(X, self.gate_weight, self.gate_bias)
        if self.pooling != "max":
            act = pre * (gpre >= 0).to(pre.dtype)
            return _pool_module(self.pooling, self.pool_size)(act).flatten(1)
        # gated max: value at the gate's first arg-max in each window
        N, m, H, W = pre.shape
        idx = _windows(H, W, self.pool_size, "max").to(pre.device)  # (a, Kq)
        gw = gpre.flatten(2)[:, :, idx]  # (N, m, a, Kq)
        kst = torch.argmax(gw, dim=3, keepdim=True)
        gval = torch.gather(gw, 3, kst)[..., 0]
        val = torch.gather(pre.flatten(2)[:, :, idx], 3, kst)[..., 0]
        return (val * (gval >= 0).to(val.dtype)).flatten(1)


    def to_torch(self) -> nn.Module:
        """``Sequential(Conv2d, ReLU, pool, Flatten, Linear)``; gated: :class:`GatedConvModule`."""
        if self.activation == "gated":
            return GatedConvModule(self)
        m, C, k, _ = self.weight.shape
        fk = {"dtype": self.weight.dtype, "device": self.weight.device}
        conv = nn.Conv2d(C, m, k, stride=self.stride, padding=self.padding, bias=True, **fk)
        lin = nn.Linear(self.linear_weight.shape[1], self.linear_weight.shape[0], bias=False, **fk)
        with torch.no_grad():
            conv.weight.copy_(self.weight)
            conv.bias.copy_(self.bias)
            lin.weight.copy_(self.linear_weight)
        model = nn.Sequential(conv, nn.ReLU(), _pool_module(self.pooling, self.pool_size),
                              nn.Flatten(), lin)
        return model.to(dtype=self.weight.dtype, device=self.weight.device)

    def to(self, device=None, dtype=None) -> ConvNetwork:
        def mv(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return ConvNetwork(mv(self.weight), mv(self.bias), mv(self.linear_weight),
                           self.kernel_size, self.stride, self.padding, self.pooling,
                           self.pool_size, self.activation, mv(self.gate_weight),
                           mv(self.gate_bias))

    def save(self, path: str | Path) -> None:
        arrays = {"weight": self.weight, "bias": self.bias, "linear_weight": self.linear_weight}
        if self.activation == "gated":
            arrays.update(gate_weight=self.gate_weight, gate_bias=self.gate_bias)
        meta = {"format": "convexnn.ConvNetwork", "version": 1, "kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding, "pooling": self.pooling,
                "pool_size": self.pool_size, "activation": self.activation}
        save_npz(path, arrays, meta)


@dataclass
class CircularCNN:
    """Circular CNN (one ReLU), read back from
    :class:`~convexnn.formulations.cnn.CircularCNNProgram`."""

    first_filters: Tensor  # (m, *spatial), ||·|| ≤ 1 each
    last_filters: Tensor  # (m, *spatial)
    output_weights: Tensor  # (c, m)
    n_circular: int = 1

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.first_filters.shape[1:])

    def _signals(self, X) -> Tensor:
        X = X if isinstance(X, Tensor) else torch.as_tensor(np.asarray(X))
        X = X.to(dtype=self.first_filters.dtype, device=self.first_filters.device)
        sp = self.spatial
        if X.ndim == len(sp) + 2:
            X = X[:, 0]
        return X.reshape(X.shape[0], *sp)

    def forward(self, X) -> Tensor:
        with torch.no_grad():
            return self.to_torch()(self._signals(X)[:, None])

    __call__ = forward

    def penalty(self) -> Tensor:
        return (self.last_filters ** 2).sum() + (self.output_weights ** 2).sum()

    def objective(self, X, Y, reg: float, loss: str | Loss = "squared") -> float:
        """``loss + (reg/2)(||WL||² + ||Wout||²)``; requires ||W1_j|| ≤ 1 (checked)."""
        nrm = torch.linalg.vector_norm(self.first_filters.flatten(1), dim=1)
        if bool((nrm > 1 + 1e-8).any()):
            raise ValueError("circular filters must have norm <= 1 (the model's constraint)")
        Z = self.forward(X)
        return float((get_loss(loss).value(Z, _targets(Y, Z)) + 0.5 * reg * self.penalty())
                     .detach())

    def to_torch(self) -> nn.Module:
        """CircularPad → Conv(1→m) → [CircularPad → grouped Conv (delta)]* → grouped valid Conv →
        ReLU → Flatten → Linear(m, c); all convs without bias."""
        sp = self.spatial
        m = max(int(self.first_filters.shape[0]), 1)
        W1, WL, Wo = self.first_filters, self.last_filters, self.output_weights
        if self.first_filters.shape[0] == 0:
            W1 = torch.zeros(1, *sp, dtype=W1.dtype, device=W1.device)
            WL = W1.clone()
            Wo = torch.zeros(Wo.shape[0], 1, dtype=W1.dtype, device=W1.device)
        two_d = len(sp) == 2
        Conv = nn.Conv2d if two_d else nn.Conv1d
        Pad = nn.CircularPad2d if two_d else nn.CircularPad1d
        pads = []
        for s in reversed(sp):  # torch pad order: last dim first
            left = (s - 1) // 2
            pads += [left, s - 1 - left]
        fk = {"dtype": W1.dtype, "device": W1.device}
        layers = [Pad(tuple(pads)), Conv(1, m, sp, bias=False, **fk)]
        with torch.no_grad():
            layers[1].weight.copy_(W1[:, None])
        delta = torch.zeros(m, 1, *sp, dtype=W1.dtype, device=W1.device)
        delta[(slice(None), 0) + tuple((s - 1) // 2 for s in sp)] = 1.0
        for _ in range(self.n_circular - 1):
            cv = Conv(m, m, sp, groups=m, bias=False, **fk)
            with torch.no_grad():
                cv.weight.copy_(delta)
            layers += [Pad(tuple(pads)), cv]
        last = Conv(m, m, sp, groups=m, bias=False, **fk)
        out = nn.Linear(m, Wo.shape[0], bias=False, **fk)
        with torch.no_grad():
            last.weight.copy_(WL[:, None])
            out.weight.copy_(Wo)
        layers += [last, nn.ReLU(), nn.Flatten(), out]
        return nn.Sequential(*layers).to(dtype=W1.dtype, device=W1.device)

    def save(self, path: str | Path) -> None:
        save_npz(path, {"first_filters": self.first_filters, "last_filters": self.last_filters,
                        "output_weights": self.output_weights},
                 {"format": "convexnn.CircularCNN", "version": 1, "n_circular": self.n_circular})


@dataclass
class ThreeLayerCNN:
    """Three-layer CNN (two ReLU layers) read back from
    :class:`~convexnn.formulations.cnn.ThreeLayerCNNProgram`."""

    weight: Tensor  # (m1, C, k, k)
    bias: Tensor  # (m1,)
    hidden_weight: Tensor  # (m2, m1 * K)
    output_weight: Tensor  # (c, m2)
    kernel_size: int = 3
    stride: int = 1
    padding: int = 0

    def forward(self, X) -> Tensor:
        X = _as_images(X, self.weight)
        a1 = torch.relu(F.conv2d(X, self.weight, self.bias, stride=self.stride,
                                 padding=self.padding)).flatten(1)
        return torch.relu(a1 @ self.hidden_weight.T) @ self.output_weight.T

    __call__ = forward

    def path_norm(self) -> Tensor:
        m1 = self.weight.shape[0]
        un = torch.sqrt((self.weight.reshape(m1, -1) ** 2).sum(1) + self.bias ** 2)  # (m1,)
        K = self.hidden_weight.shape[1] // max(m1, 1)
        inner = (self.hidden_weight.abs().reshape(-1, m1, K) * un[None, :, None]).sum((1, 2))
        return (self.output_weight.abs().sum(0) * inner).sum()

    def objective(self, X, Y, reg: float, loss: str | Loss = "squared") -> float:
        """``loss + reg · R`` with the ℓ1 path regulariser R (module docstring)."""
        Z = self.forward(X)
        return float(get_loss(loss).value(Z, _targets(Y, Z)) + reg * self.path_norm())

    def to_torch(self) -> nn.Module:
        m1, C, k, _ = self.weight.shape
        fk = {"dtype": self.weight.dtype, "device": self.weight.device}
        conv = nn.Conv2d(C, m1, k, stride=self.stride, padding=self.padding, bias=True, **fk)
        l2 = nn.Linear(self.hidden_weight.shape[1], self.hidden_weight.shape[0], bias=False, **fk)
        l3 = nn.Linear(self.output_weight.shape[1], self.output_weight.shape[0], bias=False, **fk)
        with torch.no_grad():
            conv.weight.copy_(self.weight)
            conv.bias.copy_(self.bias)
            l2.weight.copy_(self.hidden_weight)
            l3.weight.copy_(self.output_weight)
        return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), l2, nn.ReLU(), l3).to(
            dtype=self.weight.dtype, device=self.weight.device)

    def save(self, path: str | Path) -> None:
        save_npz(path, {"weight": self.weight, "bias": self.bias,
                        "hidden_weight": self.hidden_weight, "output_weight": self.output_weight},
                 {"format": "convexnn.ThreeLayerCNN", "version": 1,
                  "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding})


def load_cnn(path: str | Path):
    """Load any CNN container saved by ``save`` (``allow_pickle=False``)."""
    meta, t = read_npz(path)
    fmt = meta.get("format")
    if fmt == "convexnn.ConvNetwork":
        return ConvNetwork(t["weight"], t["bias"], t["linear_weight"], meta["kernel_size"],
                           meta["stride"], meta["padding"], meta["pooling"], meta["pool_size"],
                           meta["activation"], t.get("gate_weight"), t.get("gate_bias"))
    if fmt == "convexnn.CircularCNN":
        return CircularCNN(t["first_filters"], t["last_filters"], t["output_weights"],
                           meta["n_circular"])
    if fmt == "convexnn.ThreeLayerCNN":
        return ThreeLayerCNN(t["weight"], t["bias"], t["hidden_weight"], t["output_weight"],
                             meta["kernel_size"], meta["stride"], meta["padding"])
    raise ValueError(f"{path}: not a convexnn CNN file (format {fmt!r})")
