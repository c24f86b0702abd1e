"""Pipelines: compose patterns → program → solver → certificate → network into a FitResult."""
