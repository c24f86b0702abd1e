"""Input validation shared by all estimators: clear errors, never a silent wrong answer."""

from __future__ import annotations

import numbers

import numpy as np
import torch

__all__ = ["check_X", "check_X_y", "check_reg", "check_positive_int", "resolve_dtype",
           "resolve_device", "to_tensor", "add_intercept"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64,
           torch.float32: torch.float32, torch.float64: torch.float64,
           np.float32: torch.float32, np.float64: torch.float64}


def resolve_dtype(dtype) -> torch.dtype:
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    if isinstance(dtype, np.dtype) and dtype.type in _DTYPES:
        return _DTYPES[dtype.type]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def resolve_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'cpu', 'cuda' (or 'cuda:N'), got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but CUDA is not available")
    return dev


def _as_float_array(A, name: str) -> np.ndarray:
    if isinstance(A, torch.Tensor):
        A = A.detach().cpu().numpy()
    if hasattr(A, "toarray") and not isinstance(A, np.ndarray):  # scipy sparse
        raise TypeError(f"{name}: sparse input is not supported; pass a dense array")
    arr = np.asarray(A)
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {arr.dtype}")
    if arr.dtype == object:
        arr = arr.astype(np.float64)  # a non-numeric entry raises TypeError here
    if arr.dtype.kind in "US":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def check_X(X, *, n_features: int | None = None, name: str = "X",
            owner: str = "the estimator") -> np.ndarray:
    """A finite 2-D float array with at least one sample (and ``n_features`` columns)."""
    arr = _as_float_array(X, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}. "
                         "Reshape your data with X.reshape(-1, 1) for a single feature.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: 0 sample(s) (shape={arr.shape}) while a minimum of 1 "
                         "is required.")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is "
                         "required.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, but {owner} is expecting "
                         f"{n_features} features as input")
    return arr


def check_X_y(X, y, *, multi_output: bool = True) -> tuple[np.ndarray, np.ndarray]:
    Xa = check_X(X)
    if y is None:
        raise ValueError("this estimator requires y to be passed, but the target y is None")
    ya = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
    if ya.ndim not in (1, 2) or (ya.ndim == 2 and not multi_output and ya.shape[1] != 1):
        raise ValueError(f"y must be 1-D (n_samples,) or 2-D (n_samples, n_outputs), got shape "
                         f"{ya.shape}")
    if ya.shape[0] != Xa.shape[0]:
        raise ValueError(f"X and y have inconsistent numbers of samples: {Xa.shape[0]} != "
                         f"{ya.shape[0]}")
    return Xa, ya


def check_reg(reg) -> float:
    if isinstance(reg, bool) or not isinstance(reg, numbers.Real):
        raise ValueError(f"reg must be a positive number, got {reg!r}")
    if not np.isfinite(reg) or reg <= 0:
        raise ValueError(f"reg must be > 0 (weight decay), got {reg!r}")
    return float(reg)


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def to_tensor(A: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    A = np.ascontiguousarray(A)
    if not A.flags.writeable:  # torch cannot wrap read-only memory
        A = A.copy()
    return torch.as_tensor(A, dtype=dtype, device=device)


def add_intercept(X: torch.Tensor) -> torch.Tensor:
    """Append a column of ones (the first-layer bias, regularised like the weights)."""
    return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], 1)
