"""Shared tensor kernels (no model knowledge)."""
