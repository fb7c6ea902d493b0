"""nbgrader configuration for this course. The course root is the directory nbgrader runs in (this one).

Assignments live in source/<NN_name>/<NN_name>.ipynb; `make release` writes release/; submitted/,
autograded/, feedback/ and gradebook.db are student data and never committed.
Each setting below is checked by a test in tests/grader/test_nbgrader_config.py or
tests/grader/test_autograde.py.
"""
c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "freezing-course"

# Only notebooks are released. nbgrader copies every other file in source/<assignment>/ to students and
# over each submission at autograde, so nothing else may live there
# (tests/publish/test_release.py::test_layout_refuses_extra_files_in_an_assignment enforces it).
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".DS_Store"]

# Time limits, on purpose. nbgrader's default of 30 s per cell kills a training cell on a slow machine.
# Graded notebooks run small in grading mode (course.grading_mode(), which reads NBGRADER_EXECUTION),
# so each cell needs seconds; 180 s leaves room for a loaded JupyterHub node and still stops a runaway
# loop. The kernel gets 120 s to start (torch imports slowly on a cold shared filesystem).
c.Execute.timeout = 180
c.Execute.startup_timeout = 120

# A deleted test cell is put back from the gradebook and run, instead of leaving the submission
# "needs manual grade" forever.
c.OverwriteCells.add_missing_cells = True

# nbgrader gives 0 to a test cell that printed anything on stderr. torch and torchvision print warnings
# there, which are not failures: Python warnings (`file.py:12: UserWarning: ...`) and C++ ones
# (`[W1124 10:00:00.000 file.cpp:12] Warning: ...`). Drop those outputs before grading. A failing assert
# is an error output, never a stderr stream, so no failure can hide behind this.
# (The student's Validate button has no IgnorePattern step and nbgrader 0.9 does not let config add one;
# `import course` under nbgrader therefore shows Python warnings on stdout, so Validate agrees with grading.)
WARNING_PATTERN = r"(?m)^(\S.*:\d+: [A-Za-z]*Warning: |\[W\d{4} )"
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = WARNING_PATTERN
