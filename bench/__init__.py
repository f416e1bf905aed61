"""Benchmarks for kms: `python -m bench [--quick] [--json OUT]` (see bench/__main__.py)."""
