"""The judge: the graded tests run here, in a process of their own, never in the student's kernel.

``process`` is the judge (``python -m autograder.judge.process SOCKET``, started sandboxed by ``launch``);
``kernel_boot`` starts the grading kernel and ``kernel_server`` answers the judge from inside it; ``wire`` is
what they say to each other (frames, handles, limits); ``judged_execute`` is nbgrader's execute step that
sends each test cell to the judge instead of the kernel.
"""
