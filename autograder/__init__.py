"""Instructor tooling, one subpackage each: ``grade`` (the sandboxed class grader,
``python -m autograder.grade``), ``sandbox`` (bubblewrap and limits around a kernel), ``judge`` (the process
the tests run in), ``publish`` (release, strip, links, student edition, the ready-answer check) and ``hub/``
(JupyterHub configuration files).

Run from the repository root, e.g. ``python -m autograder.publish.release``. Students never import this
package.
"""
