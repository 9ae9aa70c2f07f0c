"""Benchmarks run by hand: `.venv/bin/python -m tests.benchmarks.<name>`."""
