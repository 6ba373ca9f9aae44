"""Benchmarks as library APIs (scripts that drive them live in ``benchmarks/``)."""
