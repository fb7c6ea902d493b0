r"""JupyterHub for the course: instructors release, collect and grade; students fetch, work and submit.

    sudo COURSE_HUB_INSTRUCTORS=ada COURSE_HUB_STUDENTS=bob,eve \
        jupyterhub -f autograder/hub/jupyterhub_config.py

Settings, read from the hub's environment:

- ``COURSE_HUB_INSTRUCTORS``, ``COURSE_HUB_STUDENTS``: comma-separated user names (both may log in).
- ``COURSE_HUB_EXCHANGE``: nbgrader's exchange, a folder every user's server sees with mode 1777 (sticky,
  world-writable), default ``/srv/nbgrader/exchange``. On Kubernetes, where no such shared filesystem is at
  hand, use ngshare (``ngshare_exchange``) instead of the default exchange.
- ``COURSE_HUB_DATA``: the Oxford-IIIT Pet folder, shared read-only (a read-only mount or root-owned 0755),
  default ``/srv/data/pets``; every server gets it as ``COURSE_DATA``, so nobody downloads 800 MB.
- ``COURSE_HUB_GPU=1``: offer a CPU and a GPU profile (KubeSpawner's ``profile_list``); notebook 05 wants the
  GPU.

Each server gets ``JUPYTER_CONFIG_PATH`` pointing at this folder's ``instructor/`` or ``student/``, whose
``nbgrader_config.py`` sets the course (``COURSE_ID``, from the course's own ``nbgrader_config.py``), the
exchange and, for instructors, the course folder (``~/freezing-course`` unless ``COURSE_ROOT`` says otherwise:
a clone of the course repository).

This file sets what the course needs and leaves the rest to the deployment: a real authenticator
(this file allows only the listed users), the spawner (LocalProcessSpawner with system users by default), TLS.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from traitlets.config.loader import PyFileConfigLoader

if TYPE_CHECKING:
    from jupyterhub.spawner import Spawner

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

HERE = Path(__file__).resolve().parent
# The course id is written once, in the course's own nbgrader_config.py; servers get it as COURSE_ID.
COURSE_ID = (PyFileConfigLoader("nbgrader_config.py", str(HERE.parents[1])).load_config()
             .CourseDirectory.course_id)


def _names(variable: str) -> set[str]:
    return {name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()}


INSTRUCTORS = _names("COURSE_HUB_INSTRUCTORS")
STUDENTS = _names("COURSE_HUB_STUDENTS")
EXCHANGE = os.environ.get("COURSE_HUB_EXCHANGE", "/srv/nbgrader/exchange")
DATA = os.environ.get("COURSE_HUB_DATA", "/srv/data/pets")
if INSTRUCTORS & STUDENTS:
    raise ValueError(f"both instructor and student: {sorted(INSTRUCTORS & STUDENTS)}")

c.Authenticator.allowed_users = INSTRUCTORS | STUDENTS


def role(spawner: Spawner) -> str:
    """``"instructor"`` or ``"student"`` for the user whose server ``spawner`` starts."""
    return "instructor" if spawner.user.name in INSTRUCTORS else "student"


def config_path(spawner: Spawner) -> str:
    return str(HERE / role(spawner))


c.Spawner.environment = {
    "JUPYTER_CONFIG_PATH": config_path,  # a callable: JupyterHub calls it with the spawner
    "COURSE_HUB_EXCHANGE": EXCHANGE,
    "COURSE_DATA": DATA,
    "COURSE_ID": COURSE_ID,
}
c.Spawner.default_url = "/lab"

# The formgrader is a page of the instructor's own server. Since JupyterHub 4.1 single-user servers forbid
# being framed by another path of the same host (Content-Security-Policy frame-ancestors), so the formgrader's
# frame in JupyterLab stays blank: open /user/<instructor>/formgrader in its own tab, or serve users from
# subdomains (c.JupyterHub.subdomain_host). Do not loosen the policy: it stops one user's page from framing
# another's.

if os.environ.get("COURSE_HUB_GPU") == "1":
    c.KubeSpawner.profile_list = [
        {"display_name": "CPU: notebooks 01-04", "slug": "cpu", "default": True},
        {"display_name": "GPU: notebook 05 (one GPU)", "slug": "gpu",
         "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "1"}}},
    ]
