"""Benchmarks run by hand: `.venv/bin/python -m benchmarks.<name>`."""
