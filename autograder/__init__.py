"""Instructor tooling: release generation, notebook stripping and the sandboxed class grader (autograder.grade).

Run from the repository root, e.g. ``python -m autograder.release``. Students never import this package.
"""
