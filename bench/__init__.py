"""Benchmarks: each measures the project against a reference run in the same process and machine."""
