"""The SDP relaxation's pipeline: solve (interior point, ADMM, CVXPY, low rank) → certify →
network (:mod:`convexnn.formulations.sdp` holds the mathematics)."""

from .admm import solve_admm
from .fit import fit_sdp
from .ipm import solve_ipm

__all__ = ["fit_sdp", "solve_ipm", "solve_admm"]
