"""nbgrader settings of a student's server on the course hub (JUPYTER_CONFIG_PATH points here): which course,
where the exchange is, and who the student is. Assignments are fetched into the student's home.

The student id is the hub's user name (JUPYTERHUB_USER, set by the hub). Left alone, nbgrader's exchange takes
the operating-system account's name, which is the same for every student wherever the spawner runs all servers
under one account (containers as ``jovyan``, which nbgrader special-cases, or any other shared account): every
submission would then be filed under that one name and collect would keep only the last.
"""
import os

c = get_config()  # noqa: F821

c.CourseDirectory.course_id = os.environ["COURSE_ID"]  # set by the hub (jupyterhub_config.py)
c.Exchange.root = os.environ.get("COURSE_HUB_EXCHANGE", "/srv/nbgrader/exchange")
if os.environ.get("JUPYTERHUB_USER"):
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
