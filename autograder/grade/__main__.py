"""``python -m autograder.grade``: the class grader's command (``autograder.grade.cli``)."""
import autograder.grade.lean_imports  # noqa: F401, I001  (first: before anything imports jsonschema)

# Then start the fork server that runs nbgrader (autograder.grade.nbgrader_server): it spends ~1.3 s importing
# nbgrader in its own process while this one imports what it needs, instead of after.
from autograder.grade.nbgrader_server import start_nbgrader_server  # noqa: E402

start_nbgrader_server()

from autograder.grade.cli import main  # noqa: E402

main()
