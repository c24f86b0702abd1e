"""Parameter validation of the estimators: the parameters every family shares
(:func:`check_common_params`) and each family's own (two-layer, CNN, parallel)."""

from __future__ import annotations

import importlib
import inspect
import math

import numpy as np

from .._validation import check_positive_int, check_reg, resolve_device, resolve_dtype

__all__ = ["METHODS", "backend", "check_common_params", "check_two_layer_params",
           "check_nonnegative_int", "CNN_METHODS", "check_cnn_params", "PARALLEL_PATTERNS",
           "check_parallel_params"]

#: method name -> "module:function" of a fitting backend returning a FitResult.
METHODS: dict[str, str] = {
    "exact": "convexnn.formulations.copositive:fit_exact",
    "svd": "convexnn.formulations.copositive:fit_svd",
    "relaxation": "convexnn.formulations.copositive:fit_relaxation",
    "column_generation": "convexnn.formulations.copositive:fit_column_generation",
    "sdp": "convexnn.formulations.sdp:fit_sdp",
}
_SOLVERS = ("auto", "descent", "admm", "fista", "al", "active_set", "cvxpy")


def backend(method: str):
    """The fitting function registered for ``method``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected 'convex' or one of "
                         f"{sorted(METHODS)}")
    mod, fn = METHODS[method].split(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"method {method!r} is not available: {err}") from err


_DEFAULTS = {"n_patterns": None, "gate_kind": "data", "gates": None, "solver": "auto",
             "cvxpy_solver": None, "method_options": None, "search_rounds": None,
             "tol": 1e-6, "max_iter": 10000, "max_time": None, "verbose": 0}
#: the parameters each path reads (a non-default value of any other one is an error); a
#: registered method reads those its function takes
_USES = {
    "descent": {"n_patterns", "search_rounds", "tol", "max_time", "verbose"},
    "program": {"n_patterns", "gate_kind", "gates", "solver", "search_rounds", "cvxpy_solver",
                "tol", "max_iter", "max_time", "verbose"},
}



def check_nonnegative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _check_seconds(value, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(
            value, (int, float)) or not (math.isfinite(value) and value > 0)):
        raise ValueError(f"{name} must be None or a finite number > 0 (seconds), got {value!r}")


def check_common_params(est) -> None:
    """The shared vocabulary: ``reg`` (None: chosen from the data), ``n_patterns``,
    ``max_iter``, ``tol``, ``max_time``, ``verbose``, ``fit_intercept``, ``activation``
    (where the family has it), ``dtype`` and ``device``."""
    if est.reg is not None:
        check_reg(est.reg)
    if est.n_patterns is not None:
        check_positive_int(est.n_patterns, "n_patterns")
    check_positive_int(est.max_iter, "max_iter")
    if isinstance(est.tol, bool) or not isinstance(est.tol, (int, float)) or not (
            math.isfinite(est.tol) and est.tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {est.tol!r}")
    _check_seconds(est.max_time, "max_time")
    check_nonnegative_int(est.verbose, "verbose")
    fit_intercept = est._param("fit_intercept")
    if not isinstance(fit_intercept, (bool, np.bool_)):
        raise ValueError(f"{est._param_label('fit_intercept')} must be True or False, got "
                         f"{fit_intercept!r}")
    if getattr(est, "activation", "relu") not in ("relu", "gated"):
        raise ValueError(f"activation must be 'relu' or 'gated', got {est.activation!r}")
    resolve_dtype(est.dtype)
    resolve_device(est.device)


def check_two_layer_params(est) -> None:
    """Validate a two-layer estimator's parameters as scikit-learn does; a non-default value
    of a parameter its configuration does not read is an error naming it."""
    check_common_params(est)
    if est.search_rounds is not None:
        check_nonnegative_int(est.search_rounds, "search_rounds")
    if est.solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {_SOLVERS}, got {est.solver!r}")
    if est.solver == "descent" and est.activation != "relu":
        raise ValueError("solver='descent' trains ReLU networks; use activation='relu'")
    if est.method != "convex" and est.method not in METHODS:
        raise ValueError(f"unknown method {est.method!r}; expected 'convex' or one of "
                         f"{sorted(METHODS)}")
    if est.warn_gap is not None and (isinstance(est.warn_gap, bool) or not isinstance(
            est.warn_gap, (int, float)) or not est.warn_gap >= 0):
        raise ValueError(f"warn_gap must be None or a number >= 0, got {est.warn_gap!r}")
    if est.gate_kind not in ("gaussian", "data"):
        raise ValueError(f"gate_kind must be 'gaussian' or 'data', got {est.gate_kind!r}")
    if est.method_options is not None and not isinstance(est.method_options, dict):
        raise ValueError(f"method_options must be None or a dict, got "
                         f"{est.method_options!r}")
    path = est._path()
    if path in _USES:
        used = _USES[path]
        if est.solver != "cvxpy" and est.solver != "active_set":
            used = used - {"cvxpy_solver"}
        if est.method_options is not None:
            raise ValueError("method_options is only used by method='exact', 'svd', "
                             "'relaxation', 'column_generation' or 'sdp'")
    else:  # a registered method: its function's own signature decides
        accepted = set(inspect.signature(backend(est.method)).parameters)
        used = {k for k in _DEFAULTS if k in accepted} | {"method_options"}
        if "solver" in accepted or est.method == "sdp":
            used |= {"solver", "cvxpy_solver"}
        if est.activation != "relu":
            raise ValueError(f"method={est.method!r} fits ReLU networks; "
                             "activation='gated' is not available with it")
    for name, default in _DEFAULTS.items():
        value = getattr(est, name)
        changed = value is not None if default is None else value != default
        if changed and name not in used:
            raise ValueError(f"{name}={value!r} is not used by this configuration "
                             f"(method={est.method!r}, activation={est.activation!r}, "
                             f"solver={est.solver!r}); leave it at its default")


# ------------------------------------------------------------------------------ CNN
CNN_METHODS = ("cone", "shared", "circular", "three_layer")


def _reject_unused(est, names, why: str) -> None:
    """A non-default value (the ``__init__`` default) of any of ``names`` is an error naming
    it: the configuration ``why`` does not read it."""
    defaults = inspect.signature(type(est).__init__).parameters
    for name in names:
        value, default = est._param(name), defaults[name].default
        if value is not default and value != default:
            raise ValueError(f"{est._param_label(name)}={value!r} is not used by this "
                             f"configuration ({why}); leave it at its default")


def check_cnn_params(est) -> None:
    """The CNN estimators' parameters (after :func:`check_common_params`); a non-default value
    of a parameter the chosen program does not read is an error naming it."""
    from ..patterns.patches import POOLINGS

    if est.reg is None:
        raise ValueError("the CNN estimators need an explicit reg > 0 (weight decay)")
    check_common_params(est)
    for name in ("kernel_size", "stride", "n_circular", "n_outer"):
        check_positive_int(getattr(est, name), name)
    check_nonnegative_int(est.padding, "padding")
    if est.pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {est.pooling!r}")
    if est.pool_size is not None:
        check_positive_int(est.pool_size, "pool_size")
    if est.n_patterns is None:
        raise ValueError("n_patterns must be a positive integer, got None")
    if est.patterns not in ("sample", "enumerate"):
        raise ValueError(f"patterns must be 'sample' or 'enumerate', got {est.patterns!r}")
    method = est._param("method")
    if method not in CNN_METHODS:
        raise ValueError(f"{est._param_label('method')} must be one of {CNN_METHODS}, got "
                         f"{method!r}")
    if method != "cone" and est.activation != "relu":
        raise ValueError(f"method={method!r} is a ReLU program; use activation='relu' "
                         "(gated CNNs: method='cone')")
    if method == "circular":
        _reject_unused(est, ("kernel_size", "stride", "padding", "pooling", "pool_size",
                             "fit_intercept"), "method='circular': full-size circular filters, "
                       "no pooling, no bias")
    if method == "three_layer":
        _reject_unused(est, ("pooling", "pool_size"), "method='three_layer' has no pooling")
    if method != "circular":
        _reject_unused(est, ("n_circular",), f"method={method!r}")
    if method != "three_layer":
        _reject_unused(est, ("n_outer",), f"method={method!r}")
    if est.pooling == "none":
        _reject_unused(est, ("pool_size",), "pooling='none'")
    if est.patterns == "enumerate":
        _reject_unused(est, ("n_patterns", "gate_kind"), "patterns='enumerate'")
    if est.solver == "cvxpy":
        _reject_unused(est, ("max_iter", "max_time"), "solver='cvxpy' runs to its own "
                       "stopping rule")


# ------------------------------------------------------------------------- parallel
#: pattern strategies of the parallel estimators -> the pipeline's method names
PARALLEL_PATTERNS = {"search": "cg", "sample": "sampled", "enumerate": "exhaustive"}


def check_parallel_params(est) -> None:
    """The parallel estimators' parameters (after :func:`check_common_params`)."""
    from ..pipelines.parallel import SOLVERS

    check_common_params(est)
    check_positive_int(est.depth, "depth")
    if est.depth < 2:
        raise ValueError(f"depth must be >= 2 (input, hidden layers, output), got {est.depth!r}")
    check_positive_int(est.width, "width")
    check_positive_int(est.max_blocks, "max_blocks")
    check_positive_int(est.n_starts, "n_starts")
    if est.n_patterns is None:
        raise ValueError("n_patterns must be a positive integer, got None")
    if est.rank is not None:
        check_positive_int(est.rank, "rank")
    if est.max_new is not None:
        check_positive_int(est.max_new, "max_new")
    check_nonnegative_int(est._param("search_rounds"), est._param_label("search_rounds"))
    if est.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {est.solver!r}")
    patterns = est._param("patterns")
    if patterns not in PARALLEL_PATTERNS:
        raise ValueError(f"{est._param_label('patterns')} must be one of "
                         f"{tuple(PARALLEL_PATTERNS)}, got {patterns!r}")
    _reject_unused_parallel(est, patterns)


def _reject_unused_parallel(est, patterns: str) -> None:
    """Non-default values of the parameters ``patterns``, ``solver`` and ``depth`` leave unread
    are errors naming them."""
    why = f"patterns={patterns!r}"
    if patterns != "search":
        # n_starts also sizes the search that estimates reg_max (reg=None)
        _reject_unused(est, ("search_rounds", "max_new")
                       + (("n_starts",) if est.reg is not None else ()), why)
    if patterns != "enumerate":
        _reject_unused(est, ("max_blocks",), why)
    else:
        _reject_unused(est, ("n_patterns", "gate_kind"), why + ": every block is used")
    if patterns != "sample" or est.solver != "al":
        _reject_unused(est, ("max_iter",), f"{why}, solver={est.solver!r}: only "
                       "patterns='sample' with solver='al' has an iteration limit")
    if est.solver == "cvxpy":  # CVXPY runs to its own stopping rule
        _reject_unused(est, ("tol",) + (("max_time",) if patterns != "search" else ()),
                       f"solver='cvxpy', {why}: CVXPY runs to its own stopping rule")
    if est.depth == 2 and est.width != 1:  # one neuron per sub-network
        _reject_unused(est, ("width",), "depth=2: one neuron per sub-network")
