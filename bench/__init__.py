"""Benchmarks and paper reproductions for focal-fusion (run from the repository root)."""
