"""Instructor tooling: release generation, notebook stripping and (later) class grading.

Run from the repository root, e.g. ``python -m autograder.release``. Students never import this package.
"""
