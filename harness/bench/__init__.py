"""Benchmarks of the library's hot spots; each module is runnable with ``python -m harness.bench.<name>``."""
