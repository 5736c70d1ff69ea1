"""Benchmarks that print their figures; run with `make bench` (never part of `make test`)."""
