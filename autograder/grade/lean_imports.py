"""Imported first by the grader's own processes (``autograder.grade`` and nbgrader's fork server in
``autograder.grade.nbgrader_server``), never by kernels: it keeps one slow, unused import out of them.

nbformat validates notebooks with jsonschema, and importing jsonschema imports ``rfc3987_syntax`` when it is
installed, which compiles a Lark grammar on import: about 1 s of CPU in every process, paid before nbgrader
can do anything. It serves only jsonschema's "iri" and "iri-reference" string formats; neither nbformat's
schemas nor nbgrader use any ``format`` keyword, and jsonschema checks formats only when asked to. A ``None``
in ``sys.modules`` is Python's way to make ``import rfc3987_syntax`` fail, which jsonschema expects (the
package is optional) and handles by not registering those two formats.
"""
import sys

sys.modules.setdefault("rfc3987_syntax", None)
