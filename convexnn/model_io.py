"""Checks for saved model files: a bad file gives one ``ValueError`` naming it, never a raw
zipfile / numpy / json / KeyError exception.

Formats (no pickle anywhere, so reading executes no code):

* a network (:meth:`convexnn.networks.TwoLayerNetwork.save`) is an ``.npz`` archive of float
  arrays plus ``__meta__``, a uint8 array holding UTF-8 JSON
  ``{"format": "convexnn.TwoLayerNetwork", "version": 1, "activation": "relu" | "gated"}``;
* an estimator (``save`` of every estimator) is its network's archive at ``path`` plus
  ``path.json`` with ``class``, ``params``, ``n_features_in``, ``certificate`` and ``extra``
  (class-specific state: ``reg``, ``classes`` or ``y_1d``, ...); CNN estimators add
  ``input_shape`` and ``flat``. The archive's format tag names the family
  (:func:`estimator_family`).

:func:`read_network_file` and :func:`read_estimator_meta` read and check everything that the
loaders rely on: archive integrity, format tag and version, required arrays, shapes, dtypes,
finiteness, and the agreement between the JSON metadata and the arrays.
"""

from __future__ import annotations

import json
import numbers
import zipfile
import zlib
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np

from .certificates import Certificate

__all__ = ["ModelFileError", "MissingModelFileError", "read_network_file", "check_network_arrays",
           "read_estimator_meta", "check_estimator_meta", "check_meta_against", "NETWORK_FORMAT",
           "NETWORK_VERSION", "estimator_family"]

NETWORK_FORMAT = "convexnn.TwoLayerNetwork"
NETWORK_VERSION = 1
_REQUIRED = ("first_layer_weights", "first_layer_bias", "second_layer_weights")
_OPTIONAL = ("gate_weights", "gate_bias", "output_bias", "input_offset", "input_scale")
_FLOATS = (np.float32, np.float64)


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message names the file and the problem."""


class MissingModelFileError(ModelFileError, FileNotFoundError):
    """The model file (or its JSON metadata) does not exist."""


def _fail(path, problem: str, err: BaseException | None = None) -> ModelFileError:
    return ModelFileError(f"{path}: {problem}" + (f" ({type(err).__name__}: {err})" if err else ""))


# ---------------------------------------------------------------------------- networks
def read_network_file(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check a saved network: returns (metadata, arrays), arrays as numpy copies.

    Raises :class:`ModelFileError` (a ``ValueError``) naming ``path`` for a missing, truncated
    or non-npz file, a wrong format tag, missing/unknown arrays, inconsistent shapes, a
    non-float dtype or a non-finite value.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingModelFileError(f"{path}: no such model file")
    try:
        data = np.load(p, allow_pickle=False)
        if not hasattr(data, "files"):  # a bare .npy array, not an archive
            raise _fail(path, "not a readable convexnn model file (an .npy array, not .npz)")
        with data:
            arrays = {k: np.array(data[k]) for k in data.files}  # reads (and CRC-checks) all
    except ModelFileError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error,
            RuntimeError) as err:
        raise _fail(path, "not a readable convexnn model file", err) from err
    meta = _network_meta(path, arrays.pop("__meta__", None))
    check_network_arrays(path, meta["activation"], arrays)
    return meta, arrays


def _network_meta(path, raw: np.ndarray | None) -> dict:
    if raw is None:
        raise _fail(path, "not a convexnn model file (no __meta__ entry)")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _fail(path, f"__meta__ must be a 1-D uint8 array, got {raw.dtype} {raw.shape}")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, "__meta__ is not valid UTF-8 JSON", err) from err
    if not isinstance(meta, dict) or meta.get("format") != NETWORK_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else meta
        raise _fail(path, f"not a {NETWORK_FORMAT} file (format tag {got!r})")
    version = meta.get("version")
    if not _is_int(version) or not 1 <= version <= NETWORK_VERSION:
        raise _fail(path, f"unsupported format version {version!r} (this convexnn reads "
                          f"version {NETWORK_VERSION})")
    if meta.get("activation") not in ("relu", "gated"):
        raise _fail(path, f"activation must be 'relu' or 'gated', got {meta.get('activation')!r}")
    return meta


def check_network_arrays(path: str | Path, activation: str, arrays: dict[str, np.ndarray]) -> None:
    """Names, shapes ((m,d), (m,), (c,m), gates (m,d)/(m,), output_bias (c,), input_offset and
    input_scale (d,)), one float dtype, finiteness; raises :class:`ModelFileError`."""
    missing = [k for k in _REQUIRED if k not in arrays]
    if activation == "gated":
        missing += [k for k in ("gate_weights", "gate_bias") if k not in arrays]
    if missing:
        raise _fail(path, f"missing arrays {missing}")
    unknown = sorted(set(arrays) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(path, f"unexpected arrays {unknown}")
    W1 = arrays["first_layer_weights"]
    if W1.ndim != 2 or W1.shape[1] == 0:
        raise _fail(path, f"first_layer_weights must be (m, d) with d >= 1, got {W1.shape}")
    m, d = W1.shape
    W2 = arrays["second_layer_weights"]
    if W2.ndim != 2 or W2.shape[1] != m or W2.shape[0] == 0:
        raise _fail(path, f"second_layer_weights must be (c, {m}) with c >= 1, got {W2.shape}")
    c = W2.shape[0]
    expected = {"first_layer_bias": (m,), "gate_weights": (m, d), "gate_bias": (m,),
                "output_bias": (c,), "input_offset": (d,), "input_scale": (d,)}
    for name, shape in expected.items():
        if name in arrays and arrays[name].shape != shape:
            raise _fail(path, f"{name} must have shape {shape}, got {arrays[name].shape}")
    dtypes = {a.dtype for a in arrays.values()}
    if any(dt.type not in _FLOATS for dt in dtypes) or len(dtypes) > 1:
        got = {k: str(a.dtype) for k, a in arrays.items()}
        raise _fail(path, f"arrays must share one float32/float64 dtype, got {got}")
    bad = [k for k, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise _fail(path, f"non-finite (NaN or infinite) values in {bad}")


# -------------------------------------------------------------------------- estimators
_FAMILIES = {  # archive format tag -> (family, its estimator class names)
    **{fmt: ("cnn", ("ConvexCNNClassifier", "ConvexCNNRegressor")) for fmt in
       ("convexnn.ConvNetwork", "convexnn.CircularCNN", "convexnn.ThreeLayerCNN")},
    **{fmt: ("parallel", ("ConvexParallelReLURegressor", "ConvexParallelReLUClassifier")) for fmt
       in ("convexnn.ParallelReLUNetwork", "convexnn.TreeParallelReLUNetwork")},
}


def estimator_family(path: str | Path) -> str | None:
    """``"cnn"`` or ``"parallel"`` for an estimator file of that family (a class of the family
    in the JSON ``class`` field and its network format tag in the archive); None otherwise (the
    two-layer loader then reports what is wrong)."""
    try:
        meta = json.loads(Path(str(path) + ".json").read_text(encoding="utf-8"))
        with np.load(path, allow_pickle=False) as data:
            fmt = json.loads(bytes(data["__meta__"]).decode()).get("format")
    except (OSError, ValueError, KeyError, AttributeError, UnicodeDecodeError,
            zipfile.BadZipFile, zlib.error):
        return None
    if fmt in _FAMILIES and isinstance(meta, dict) and meta.get("class") in _FAMILIES[fmt][1]:
        return _FAMILIES[fmt][0]
    return None


def read_estimator_meta(path: str | Path, classes: dict[str, type]) -> dict:
    """Read ``path``.json and check it and its agreement with the arrays in ``path``.

    ``classes`` maps the known estimator class names to classes; ``params`` must be
    parameters of the named class. Returns the
    metadata dict; raises :class:`ModelFileError` (a ``ValueError``) naming the file.
    """
    jpath = Path(str(path) + ".json")
    if not jpath.is_file():
        raise MissingModelFileError(f"{path}: metadata file {jpath} not found (an estimator "
                                    "is saved as the model file plus <model file>.json)")
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(jpath, "not valid JSON metadata", err) from err
    _, arrays = read_network_file(path)
    check_estimator_meta(jpath, meta, arrays, classes)
    return meta


def check_estimator_meta(jpath: str | Path, meta, arrays: dict[str, np.ndarray],
                         classes: dict[str, type]) -> None:
    """Check the JSON metadata of an estimator against its (already checked) network arrays."""
    m, d = arrays["first_layer_weights"].shape
    check_meta_against(jpath, meta, d, arrays["second_layer_weights"].shape[0], classes)


def check_meta_against(jpath: str | Path, meta, n_inputs: int, n_outputs: int,
                       classes: dict[str, type]) -> None:
    """Check estimator metadata against a network of ``n_inputs`` features and ``n_outputs``
    outputs: keys, class, parameters, certificate, classes / y_1d."""
    if not isinstance(meta, dict):
        raise _fail(jpath, f"metadata must be a JSON object, got {type(meta).__name__}")
    missing = [k for k in ("class", "params", "n_features_in", "certificate", "extra")
               if k not in meta]
    if missing:
        raise _fail(jpath, f"metadata lacks {missing}")
    name = meta["class"]
    if name not in classes:
        raise _fail(jpath, f"unknown estimator class {name!r} (expected one of "
                           f"{sorted(classes)})")
    params, extra = meta["params"], meta["extra"]
    for key, val in (("params", params), ("extra", extra), ("certificate", meta["certificate"])):
        if not isinstance(val, dict):
            raise _fail(jpath, f"{key!r} must be a JSON object, got {type(val).__name__}")
    unknown = sorted(set(params) - set(classes[name]().get_params()))
    if unknown:
        raise _fail(jpath, f"params {unknown} are not parameters of {name}")
    _check_certificate(jpath, meta["certificate"])
    d, c = n_inputs, n_outputs
    n_in = meta["n_features_in"]
    if not _is_int(n_in) or n_in != d:
        raise _fail(jpath, f"n_features_in is {n_in!r} but the network has {d} input features")
    if name.endswith("Classifier"):
        _check_classifier(jpath, params, extra, c)
    else:
        _check_regressor(jpath, extra, c)


def _check_classifier(jpath, params: dict, extra: dict, c: int) -> None:
    cls = extra.get("classes")
    if not isinstance(cls, list) or len(cls) < 2:
        raise _fail(jpath, "classifier metadata needs extra.classes, a list of >= 2 labels "
                           f"(got {cls!r}; is this a regressor's file?)")
    if not all(isinstance(v, (str, numbers.Real)) for v in cls):
        raise _fail(jpath, "extra.classes must hold strings or numbers")
    arr = np.asarray(cls)
    if len(np.unique(arr)) != len(arr) or not np.array_equal(np.unique(arr), arr):
        raise _fail(jpath, "extra.classes must be distinct and sorted (as fit stores them)")
    loss = params.get("loss")
    if loss in (None, "auto"):
        loss = "logistic" if len(cls) == 2 else "cross_entropy"
    if loss == "logistic" and len(cls) != 2:
        raise _fail(jpath, f"loss 'logistic' is binary but extra.classes has {len(cls)} labels")
    want = 1 if loss == "logistic" else len(cls)
    if c != want:
        raise _fail(jpath, f"the network has {c} outputs but a {loss!r} classifier over "
                           f"{len(cls)} classes needs {want}")


def _check_regressor(jpath, extra: dict, c: int) -> None:
    y_1d = extra.get("y_1d")
    if not isinstance(y_1d, bool):
        raise _fail(jpath, "regressor metadata needs extra.y_1d (true/false), got "
                           f"{y_1d!r}; is this a classifier's file?")
    if y_1d and c != 1:
        raise _fail(jpath, f"extra.y_1d is true but the network has {c} outputs")


def _check_certificate(jpath, cert: dict) -> None:
    spec = {f.name: f for f in fields(Certificate)}
    missing = [k for k, f in spec.items() if f.default is MISSING and k not in cert]
    unknown = sorted(set(cert) - set(spec))
    if missing or unknown:
        raise _fail(jpath, f"certificate fields: missing {missing}, unknown {unknown}")
    optional = ("search_bound", "max_violation", "global_bound")
    for k, v in cert.items():
        if k in ("scope", "problem"):
            ok = isinstance(v, str)
        elif k == "left_program":
            ok = isinstance(v, bool)
        else:
            ok = (v is None and k in optional) or (
                isinstance(v, numbers.Real) and not isinstance(v, bool))
        if not ok:
            raise _fail(jpath, f"certificate field {k!r} has the wrong type ({v!r})")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
