"""Observability: Prometheus metrics recorded at the service boundary."""
