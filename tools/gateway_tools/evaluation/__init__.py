"""Evaluation charts: what `gateway eval` measured, drawn (matplotlib, a tools dependency)."""
