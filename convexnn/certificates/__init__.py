"""Duality-gap certificates: the :class:`Certificate` record and the scaled dual bound every
formulation reports (:mod:`.certificate`), and :func:`~.global_.certify`, a proven lower bound
on the global optimum for *any* two-layer ReLU network (:mod:`.global_`).

Only :mod:`.certificate` is re-exported here: it sits below the formulations, which import it;
:mod:`.global_` runs the exact copositive solve and so sits above them (``tests/test_layers.py``).
Import ``certify`` from :mod:`convexnn` or :mod:`convexnn.certificates.global_`."""

from .certificate import SCOPE_GLOBAL, SCOPE_SAMPLED, Certificate, relative, scaled_dual

__all__ = ["Certificate", "scaled_dual", "relative", "SCOPE_SAMPLED", "SCOPE_GLOBAL"]
