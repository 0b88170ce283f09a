"""Benchmarks of the bank against the limits of its database: `python -m bench`."""
