"""nbgrader settings of an instructor's server on the course hub (JUPYTER_CONFIG_PATH points here).

The course folder is a clone of the course repository, ``~/freezing-course`` unless ``COURSE_ROOT`` says
otherwise; its own ``nbgrader_config.py`` (time limits, warnings on stderr) is loaded too, because nbgrader
reads config only from Jupyter's config path and the server's working folder, not from the course folder.
"""
import os

c = get_config()  # noqa: F821

root = os.path.abspath(os.path.expanduser(os.environ.get("COURSE_ROOT", "~/freezing-course")))
if os.path.isfile(os.path.join(root, "nbgrader_config.py")):
    load_subconfig(os.path.join(root, "nbgrader_config.py"))  # noqa: F821
c.CourseDirectory.root = root
c.CourseDirectory.course_id = os.environ["COURSE_ID"]  # set by the hub (jupyterhub_config.py)
c.Exchange.root = os.environ.get("COURSE_HUB_EXCHANGE", "/srv/nbgrader/exchange")
