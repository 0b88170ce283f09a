"""Mutation testing tools of our own, for the code that mutmut leaves alone."""
