"""Helpers shared by test modules (no fixtures here: conftest files hold those)."""
