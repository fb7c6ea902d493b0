"""Benchmarks run on demand (``python -m tests.benchmarks.<name>``); they print figures and assert nothing
about time. ``tests/test_benchmarks.py`` runs each at a tiny size so that they keep working."""
