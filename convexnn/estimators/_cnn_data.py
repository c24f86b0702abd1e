"""Input and target checks of the CNN estimators (images, 2-D X with ``input_shape``, labels)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import DataConversionWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets

__all__ = ["check_images", "is_flat", "reshape_flat", "check_class_labels", "check_targets"]


def check_images(X, *, shape: tuple | None = None) -> np.ndarray:
    """A finite float array (N, C, H, W); (N, H, W) gains a channel axis."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if hasattr(X, "toarray") and not isinstance(X, np.ndarray):
        raise TypeError("images: sparse input is not supported")
    arr = np.asarray(X)
    if arr.dtype.kind == "c":
        raise ValueError("Complex data not supported: images are complex")
    if arr.dtype == object or arr.dtype.kind not in "fiub":
        raise ValueError(f"images must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (N, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("images is empty: got 0 samples")
    if not np.isfinite(arr).all():
        raise ValueError("images contain NaN or infinity")
    if shape is not None and tuple(arr.shape[1:]) != tuple(shape):
        raise ValueError(f"images have shape {arr.shape[1:]} per sample, but the estimator was "
                         f"fitted on {tuple(shape)}")
    return arr


def is_flat(X) -> bool:
    """True for 2-D (or lower) inputs: feature matrices, sparse matrices, lists of rows."""
    nd = getattr(X, "ndim", None)
    if nd is None:
        try:
            nd = np.asarray(X, dtype=object).ndim
        except ValueError:  # ragged lists
            return True
    return nd <= 2


def reshape_flat(Xa: np.ndarray, input_shape) -> np.ndarray:
    """(N, d) → (N, C, H, W) with ``input_shape`` (C, H, W) / (H, W); None → (1, 1, d)."""
    d = Xa.shape[1]
    if input_shape is None:
        shape = (1, 1, d)
    else:
        try:
            shape = tuple(int(s) for s in input_shape)
        except (TypeError, ValueError) as err:
            raise ValueError(f"input_shape must be (C, H, W) or (H, W), got "
                             f"{input_shape!r}") from err
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) or (H, W) of positive sizes, got "
                             f"{input_shape!r}")
    if int(np.prod(shape)) != d:
        raise ValueError(f"input_shape {tuple(shape)} has {int(np.prod(shape))} entries but X "
                         f"has {d} features")
    return Xa.reshape(Xa.shape[0], *shape)


def _column(y: np.ndarray) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; it is "
                      "flattened", DataConversionWarning, stacklevel=4)
        return y.ravel()
    return y


def check_class_labels(y, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, index of each label) for 1-D labels; NaN, continuous and complex labels are
    rejected with a ``ValueError``."""
    y = _column(np.asarray(y))
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y must be 1-D with {n} labels, got shape {y.shape}")
    if y.dtype.kind == "c":
        raise ValueError("Complex data not supported: y (class labels) is complex")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y (class labels) contains NaN or infinity")
    if y.dtype == object and any(isinstance(v, float) and not np.isfinite(v) for v in y):
        raise ValueError("y (class labels) contains NaN or infinity")
    check_classification_targets(y)  # continuous labels → "Unknown label type"
    enc = LabelEncoder().fit(y)
    if len(enc.classes_) < 2:
        raise ValueError(f"y has only one class ({enc.classes_[0]!r}); a classifier needs at "
                         "least two")
    return enc.classes_, enc.transform(y)


def check_targets(y, n: int) -> np.ndarray:
    """Finite float regression targets (N,) or (N, c)."""
    y = np.asarray(y)
    if y.dtype.kind == "c":
        raise ValueError("Complex data not supported: y is complex")
    if y.dtype == object:  # numbers held as objects are fine; anything else is not
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Unknown label type: y must be numeric ({err})") from err
    if y.dtype.kind not in "fiub":
        raise ValueError(f"y must be numeric, got dtype {y.dtype}")
    y = y.astype(np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"y must be (N,) or (N, c) with N = {n}, got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinity")
    return y
