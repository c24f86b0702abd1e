"""Two-layer CNN with global sum (or average) pooling: conv → ReLU → pool → linear, the network
that :func:`convexnn.formulations.copositive_cnn.fit_exact_cnn` returns (export to torch, file
I/O without pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cnn import LinearReadout

__all__ = ["SumPoolCNN", "GlobalPool", "POOLINGS"]

POOLINGS = ("sum", "avg")


# ========================================================================= container
class GlobalPool(nn.Module):
    """Global sum (or mean) over all spatial positions: (N, m, *spatial) → (N, m)."""

    def __init__(self, kind: str = "sum"):
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {kind!r}")
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(2)
        return x.sum(2) if self.kind == "sum" else x.mean(2)


@dataclass
class SumPoolCNN(LinearReadout):
    """conv (m filters, bias) → ReLU → global sum (or mean) pooling → Linear (no bias).

    ``weight`` is (m, C, k) for 1-D signals or (m, C, k, k) for images; objective
    ``L(f(X), Y) + (β/2)(||weight||² + ||bias||² + ||linear_weight||²)``.
    """

    weight: Tensor
    bias: Tensor  # (m,)
    linear_weight: Tensor  # (c, m)
    stride: int = 1
    padding: int = 0
    pooling: str = "sum"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.weight.ndim not in (3, 4):
            raise ValueError("weight must be (m, C, k) or (m, C, k, k)")
        if self.weight.shape[0] == 0:  # all-zero model: one zero filter
            z = torch.zeros(1, *self.weight.shape[1:], dtype=self.weight.dtype,
                            device=self.weight.device)
            self.weight, self.bias = z, torch.zeros(1, dtype=z.dtype, device=z.device)
            self.linear_weight = torch.zeros(self.linear_weight.shape[0], 1, dtype=z.dtype,
                                             device=z.device)

    @property
    def n_filters(self) -> int:
        return int(self.weight.shape[0])

    @property
    def kernel_size(self) -> int:
        return int(self.weight.shape[-1])

    def _input(self, X) -> Tensor:
        Xt = X if isinstance(X, Tensor) else torch.as_tensor(np.asarray(X))
        Xt = Xt.to(dtype=self.weight.dtype, device=self.weight.device)
        if self.weight.ndim == 3 and Xt.ndim == 2:
            Xt = Xt[:, None]
        return Xt

    def features(self, X) -> Tensor:
        """Pooled activations (N, m)."""
        conv = F.conv1d if self.weight.ndim == 3 else F.conv2d
        pre = conv(self._input(X), self.weight, self.bias, stride=self.stride,
                   padding=self.padding)
        return GlobalPool(self.pooling)(torch.relu(pre))

    def to_torch(self) -> nn.Module:
        """``Sequential(Conv1d/Conv2d, ReLU, GlobalPool, Linear(bias=False))``."""
        m, C = self.weight.shape[:2]
        Conv = nn.Conv1d if self.weight.ndim == 3 else nn.Conv2d
        fk = {"dtype": self.weight.dtype, "device": self.weight.device}
        conv = Conv(C, m, self.kernel_size, stride=self.stride, padding=self.padding, bias=True,
                    **fk)
        lin = nn.Linear(m, self.linear_weight.shape[0], bias=False, **fk)
        with torch.no_grad():
            conv.weight.copy_(self.weight)
            conv.bias.copy_(self.bias)
            lin.weight.copy_(self.linear_weight)
        return nn.Sequential(conv, nn.ReLU(), GlobalPool(self.pooling), lin)

    @classmethod
    def from_torch(cls, model: nn.Sequential) -> SumPoolCNN:
        """Inverse of :meth:`to_torch` (a ``Sequential(Conv, ReLU, GlobalPool, Linear)``)."""
        conv, _, pool, lin = model
        b = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels,
                                                                  dtype=conv.weight.dtype)
        return cls(conv.weight.detach().clone(), b.detach().clone(),
                   lin.weight.detach().clone(), int(conv.stride[0]), int(conv.padding[0]),
                   pool.kind)

    def to(self, device=None, dtype=None) -> SumPoolCNN:
        return SumPoolCNN(self.weight.to(device=device, dtype=dtype),
                          self.bias.to(device=device, dtype=dtype),
                          self.linear_weight.to(device=device, dtype=dtype), self.stride,
                          self.padding, self.pooling)

    def save(self, path: str | Path) -> None:
        arrays = {k: getattr(self, k).detach().cpu().numpy()
                  for k in ("weight", "bias", "linear_weight")}
        meta = {"format": "convexnn.SumPoolCNN", "version": 1, "stride": self.stride,
                "padding": self.padding, "pooling": self.pooling}
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> SumPoolCNN:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["__meta__"]).decode())
            if meta.get("format") != "convexnn.SumPoolCNN":
                raise ValueError(f"{path}: not a SumPoolCNN file")
            t = {k: torch.from_numpy(np.array(data[k])) for k in ("weight", "bias",
                                                                    "linear_weight")}
        return cls(t["weight"], t["bias"], t["linear_weight"], meta["stride"], meta["padding"],
                   meta["pooling"])
