"""The sandboxed class grader: ``python -m autograder.grade ASSIGNMENT`` (``cli``).

``run`` grades one assignment (intake, ledger, runner, gradebook, feedback, report); a runner grades each
submission with ``worker.grade_one`` on this machine (``run.LocalRunner``) or on Dask workers
(``dask_backend``); ``kernels`` pre-starts sandboxed kernels and judges; ``policy`` decides each cell's score;
``nbgrader_server`` runs nbgrader from a warm fork server; ``intake``, ``active_content``, ``gradebook_io``,
``ledger`` and ``report`` are the steps around it. Kept free of imports, so that
``python -m autograder.grade`` starts its fork server first.
"""
