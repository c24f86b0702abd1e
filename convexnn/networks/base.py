"""What every network container shares: inputs as tensors of the weights' dtype and device, and
the ``.npz`` + JSON file format (arrays plus a ``__meta__`` JSON record; no pickle, so loading
executes no code)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["as_tensor", "save_npz", "read_npz"]


def as_tensor(X, like: Tensor) -> Tensor:
    """``X`` (array-like or tensor) with the dtype and device of ``like``."""
    if isinstance(X, Tensor):
        return X.to(dtype=like.dtype, device=like.device)
    return torch.as_tensor(np.asarray(X), dtype=like.dtype, device=like.device)


def save_npz(path: str | Path, arrays: dict[str, Tensor], meta: dict) -> None:
    """Write the tensors ``arrays`` and the JSON record ``meta`` to one ``.npz`` file."""
    out = {k: v.detach().cpu().numpy() for k, v in arrays.items()}
    out["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **out)


def read_npz(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """``(meta, tensors)`` of a file written by :func:`save_npz` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        t = {k: torch.from_numpy(np.array(data[k])) for k in data.files if k != "__meta__"}
    return meta, t
