"""scikit-learn compatible estimators (thin: validate, pick formulation and solver, fit)."""
