"""``load_estimator``: read back any estimator written by ``save`` (JSON + npz, no pickle).

The network archive's format tag names the family (:func:`convexnn.model_io.estimator_family`);
each family's loader checks the metadata against the network and raises one
:class:`convexnn.model_io.ModelFileError` (a ``ValueError``) naming the file. Every loader ends
in :func:`_restore`: parameters (deprecated aliases renamed), certificate, class state.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..model_io import (
    MissingModelFileError,
    ModelFileError,
    check_estimator_meta,
    check_meta_against,
    estimator_family,
    read_estimator_meta,
    read_network_file,
)

__all__ = ["load_estimator"]


def load_estimator(path: str | Path):
    """Load an estimator saved by ``save`` (JSON + npz; no code is executed)."""
    family = estimator_family(path)
    if family == "cnn":
        return load_cnn_estimator(path)
    if family == "parallel":
        return load_parallel_estimator(path)
    return _load_two_layer(path)


def _restore(cls, meta: dict, network):
    """An estimator of ``cls`` with the saved parameters, network, certificate and state."""
    from ..certificates import Certificate

    est = cls(**cls._current_params(meta["params"]))
    est.network_ = network
    est.n_features_in_ = int(meta["n_features_in"])
    est.certificate_ = Certificate(**meta["certificate"])
    est._load_extra(meta["extra"])
    return est


def _load_two_layer(path: str | Path):
    from ..networks import load_network
    from .two_layer import ConvexReLUClassifier, ConvexReLURegressor

    cv = _cv_class(path)
    if cv is not None:
        return _load_cv(path, cv)
    classes = {c.__name__: c for c in (ConvexReLURegressor, ConvexReLUClassifier)}
    meta = read_estimator_meta(path, classes)  # checked: one ValueError naming the file
    return _restore(classes[meta["class"]], meta, load_network(path))


def _cv_class(path: str | Path):
    """The CV estimator class named in ``path``.json, or None (any other or no file)."""
    from .cv import ConvexReLUClassifierCV, ConvexReLURegressorCV

    try:
        meta = json.loads(Path(str(path) + ".json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    name = meta.get("class") if isinstance(meta, dict) else None
    return {c.__name__: c for c in (ConvexReLURegressorCV, ConvexReLUClassifierCV)}.get(name)


def _load_cv(path: str | Path, cls):
    """A ``ConvexReLU*CV`` file: a two-layer network, checked as the refit's class (the
    metadata checks tell a classifier by its name ending in "Classifier") with the CV class's
    parameters; the CV state (``regs``, ``cv_scores``) is checked by ``cls._load_extra``."""
    from ..networks import load_network

    jpath = Path(str(path) + ".json")
    meta = _read_json(path)
    _, arrays = read_network_file(path)
    checked_as = cls.__name__.removesuffix("CV")
    check_estimator_meta(jpath, {**meta, "class": checked_as}, arrays, {checked_as: cls})
    try:
        return _restore(cls, meta, load_network(path))
    except (ValueError, KeyError, TypeError) as err:
        raise ModelFileError(f"{jpath}: not a loadable convexnn CV estimator "
                             f"({type(err).__name__}: {err})") from err


def load_cnn_estimator(path: str | Path):
    """Load a CNN estimator saved by ``save`` (called by :func:`load_estimator`)."""
    from ..networks.cnn import load_cnn
    from .cnn import ConvexCNNClassifier, ConvexCNNRegressor

    classes = {c.__name__: c for c in (ConvexCNNClassifier, ConvexCNNRegressor)}
    try:
        meta = _read_json(path)
        params = dict(meta["params"])
        if isinstance(params.get("input_shape"), list):  # JSON has no tuples
            params["input_shape"] = tuple(params["input_shape"])
        est = _restore(classes[meta["class"]], {**meta, "params": params}, load_cnn(path))
        est.input_shape_ = tuple(int(s) for s in meta["input_shape"])
        est._flat = bool(meta["flat"])
    except ModelFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelFileError(f"{path}: not a loadable convexnn CNN estimator "
                             f"({type(err).__name__}: {err})") from err
    if not math.prod(est.input_shape_) == est.n_features_in_:
        raise ModelFileError(f"{path}: input_shape {est.input_shape_} does not match "
                             f"n_features_in {est.n_features_in_}")
    return est


def load_parallel_estimator(path: str | Path):
    """Load a parallel-network estimator saved by ``save`` (called by :func:`load_estimator`)."""
    from ..networks.base import read_npz
    from ..networks.parallel import load_parallel_network
    from ..networks.parallel_tree import load_tree_parallel_network
    from .parallel import ConvexParallelReLUClassifier, ConvexParallelReLURegressor

    classes = {c.__name__: c for c in (ConvexParallelReLURegressor, ConvexParallelReLUClassifier)}
    meta = _read_json(path)
    try:
        tree = read_npz(path)[0].get("format") == "convexnn.TreeParallelReLUNetwork"
        net = (load_tree_parallel_network if tree else load_parallel_network)(path)
        arrays = (net.first_layer_weights, net.first_layer_bias, net.output_weights,
                  net.edge_weights if tree else net.second_layer_weights)
        if not all(bool(torch.isfinite(a).all()) for a in arrays if a is not None):
            raise ValueError("non-finite (NaN or infinite) network weights")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as err:
        raise ModelFileError(f"{path}: not a readable convexnn parallel network "
                             f"({type(err).__name__}: {err})") from err
    jpath = Path(str(path) + ".json")
    check_meta_against(jpath, meta, net.n_features, net.n_outputs, classes)
    try:
        return _restore(classes[meta["class"]], meta, net)
    except (ValueError, KeyError, TypeError) as err:
        raise ModelFileError(f"{jpath}: not a loadable convexnn parallel estimator "
                             f"({type(err).__name__}: {err})") from err


def _read_json(path: str | Path) -> dict:
    jpath = Path(str(path) + ".json")
    if not jpath.is_file():
        raise MissingModelFileError(f"{path}: metadata file {jpath} not found")
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{jpath}: not valid JSON metadata ({err})") from err
    if not isinstance(meta, dict):
        raise ModelFileError(f"{jpath}: metadata must be a JSON object")
    return meta


