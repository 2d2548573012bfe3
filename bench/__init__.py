"""Benchmarks: not tests; each prints its figures, the last line one JSON object."""
