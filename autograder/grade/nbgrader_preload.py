"""What nbgrader's fork server (``autograder.grade.nbgrader_server``) loads once, so that no submission's
nbgrader pays for it.

Each submission's ``nbgrader autograde`` is a fresh fork of that server: whatever the server imported or built
is already there. Measured per submission before this (2-core machine, 01_layers): about 0.1 s compiling
nbformat's JSON schema validators, 0.07 s importing IPython, 0.05 s importing SQLAlchemy's SQLite dialect.
"""
import autograder.grade.lean_imports  # noqa: F401  (first: before anything imports jsonschema)

# isort: split
import IPython  # noqa: F401,E402
import nbgrader.apps.autogradeapp  # noqa: F401,E402
import nbgrader.apps.nbgraderapp  # noqa: F401,E402
import nbgrader.converters.autograde  # noqa: F401,E402
import sqlalchemy.dialects.sqlite  # noqa: F401,E402
from nbformat.validator import get_validator  # noqa: E402

import autograder.judge.judged_execute  # noqa: F401,E402
import autograder.judge.wire  # noqa: F401,E402

# the two validators nbgrader asks for: strict, and relaxed for its own metadata
for relaxed in (False, True):
    get_validator(4, 5, relax_add_props=relaxed)
