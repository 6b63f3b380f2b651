"""Benchmarks: they start the real gateway, drive it over HTTP and print JSON."""
