"""Prometheus metrics of the workers (README "Metrics")."""
