"""Benchmarks run on demand (``python -m benchmarks.<name>``); they print figures and assert nothing
about time. ``tests/unit/test_benchmarks.py`` runs each at a tiny size so that they keep working."""
