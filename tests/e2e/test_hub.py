"""The course on a real JupyterHub on loopback: the hub's REST API and nbgrader drive release, fetch, submit,
collect, autograde and feedback with this course's notebooks, using autograder/hub/'s configuration.

The hub runs with DummyAuthenticator and SimpleLocalProcessSpawner (every server as this user, homes in a
temporary folder) and configurable-http-proxy from npm (`make hubproxy`, which `make test` runs). A service
token starts the servers of the instructor and two students the configuration lists; the instructor generates
and releases 01_layers through the formgrader's API; each student fetches it through nbgrader's assignment
API, writes answers through the Contents API and submits; the instructor collects; the class grader
(sandboxed) grades; the instructor releases feedback and each student fetches it. Everything started is
stopped.
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from traitlets.config.loader import PyFileConfigLoader

from autograder.publish.layout import ROOT, nbgrader_env, scratch_course
from tests.fixtures.submissions.a01_layers import COUNT_IGNORES_TRAINABLE_ONLY
from tests.support.grading import Case, build_submission

HUB_DIR = ROOT / "autograder" / "hub"
CHP = Path(os.environ.get("COURSE_CHP",
                          ROOT / "build" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"))
ASSIGNMENT = "01_layers"
COURSE = "freezing-course"
STUDENTS = {"student1": Case("solution", "reference"),
            "student2": Case("wrong", "count_params ignores trainable_only",
                             replace={"count_params_solution": COUNT_IGNORES_TRAINABLE_ONLY})}
TEST_CONFIG = """
import os, sys
c = get_config()
load_subconfig({hub_config!r})
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"] if os.getuid() == 0 else []
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.JupyterHub.db_url = "sqlite:///" + {state!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {state!r} + "/cookie_secret"
c.JupyterHub.services = [{{"name": "course-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "course-test", "services": ["course-test"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"]}}]
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Hub:
    """A running hub and a session that speaks to it with the service token."""

    def __init__(self, url, token, proc, log):
        self.url, self.proc, self.log = url, proc, log
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"

    def api(self, method, path, **kw):
        r = self.http.request(method, f"{self.url}/hub/api{path}", timeout=60, **kw)
        assert r.status_code < 300, f"{method} /hub/api{path}: {r.status_code} {r.text}\n{self.tail()}"
        return r.json() if r.text else None

    def user(self, method, name, path, **kw):
        """A request to user ``name``'s own server, through the proxy."""
        r = self.http.request(method, f"{self.url}/user/{name}{path}", timeout=300, **kw)
        assert r.status_code < 300, \
            f"{method} /user/{name}{path}: {r.status_code} {r.text[:500]}\n{self.tail()}"
        return r.json() if r.text else None

    def start_server(self, name, timeout=150):
        self.api("POST", f"/users/{name}/server")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api("GET", f"/users/{name}").get("servers", {}).get("")
            if server and server.get("ready"):
                return
            assert self.proc.poll() is None, f"the hub exited\n{self.tail()}"
            time.sleep(0.5)
        raise TimeoutError(f"{name}'s server did not start in {timeout} s\n{self.tail()}")

    def tail(self):
        return "hub log (end):\n" + self.log.read_text()[-3000:] if self.log.exists() else ""


@pytest.fixture
def hub(tmp_path):
    """A JupyterHub on loopback with the course's configuration; stopped, with all it started, afterwards."""
    if not CHP.exists():
        pytest.fail(f"configurable-http-proxy not found at {CHP}: "
                    "run `make hubproxy` (npm), or set COURSE_CHP")
    homes, state, exchange, data = (tmp_path / n for n in ("home", "state", "exchange", "data"))
    for folder in (homes, state, data):
        folder.mkdir()
    exchange.mkdir(mode=0o1777)
    exchange.chmod(0o1777)  # nbgrader's exchange: world-writable with the sticky bit, as on a real hub
    # The instructor's course: a clone of this repository's course (config and source/) in their home.
    scratch_course(homes / "instructor" / COURSE)
    port, api_port, hub_port = _free_ports(3)
    token = secrets.token_hex(16)
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(TEST_CONFIG.format(
        hub_config=str(HUB_DIR / "jupyterhub_config.py"), homes=str(homes), state=str(state), port=port,
        hub_port=hub_port, api_port=api_port, chp=str(CHP), token=token,
        singleuser=str(Path(sys.executable).with_name("jupyterhub-singleuser"))))
    env = nbgrader_env(dict(os.environ, COURSE_HUB_INSTRUCTORS="instructor",
                            COURSE_HUB_STUDENTS=",".join(STUDENTS), COURSE_HUB_EXCHANGE=str(exchange),
                            COURSE_HUB_DATA=str(data)))
    log = tmp_path / "hub.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("jupyterhub")), "-f", str(config)],
                                cwd=state, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    h = Hub(f"http://127.0.0.1:{port}", token, proc, log)
    h.paths = {"homes": homes, "exchange": exchange}
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if h.http.get(f"{h.url}/hub/api/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, f"the hub did not start\n{h.tail()}"
            time.sleep(0.5)
        yield h
    finally:
        for name in ["instructor", *STUDENTS]:
            try:
                h.http.delete(f"{h.url}/hub/api/users/{name}/server", timeout=30)
            except requests.RequestException:
                pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True,
                                   text=True).stdout.split()
        for pid in leftovers:
            os.kill(int(pid), signal.SIGKILL)
        assert not leftovers, f"processes left running after the hub stopped: {leftovers}"
        for p in (port, api_port, hub_port):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", p)) != 0, f"port {p} still listening"


@pytest.mark.slow
def test_release_fetch_submit_collect_grade_feedback_on_a_real_hub(hub):
    """The whole cycle through the hub: both students get their notebook, their submissions are collected
    and graded (10/10 for the right answers, 7/10 for a wrong count_params), and each fetches their own
    feedback."""
    course_root = hub.paths["homes"] / "instructor" / COURSE
    # the hub made an account for every user the course configuration lists
    assert {u["name"] for u in hub.api("GET", "/users")} == {"instructor", *STUDENTS}
    for name in ["instructor", *STUDENTS]:
        hub.start_server(name)

    # instructor: generate and release through the formgrader's API
    assert hub.user("POST", "instructor", f"/formgrader/api/assignment/{ASSIGNMENT}/assign")["success"]
    assert hub.user("POST", "instructor", f"/formgrader/api/assignment/{ASSIGNMENT}/release")["success"]
    assert (hub.paths["exchange"] / COURSE / "outbound" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    # students do not get a formgrader (autograder/hub/student/jupyter_server_config.py)
    assert hub.http.get(f"{hub.url}/user/student1/formgrader/api/status", timeout=30).status_code == 404

    args = {"course_id": COURSE, "assignment_id": ASSIGNMENT}
    for name, case in STUDENTS.items():
        listed = hub.user("GET", name, "/assignments", params={"course_id": COURSE})
        assert [a["assignment_id"] for a in listed["value"]
                if a["status"] == "released"] == [ASSIGNMENT], listed
        hub.user("POST", name, "/assignments/fetch", params=args)
        path = f"/api/contents/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
        fetched = hub.user("GET", name, path)["content"]
        assert any(c["metadata"].get("nbgrader", {}).get("grade_id") == "count_params_solution"
                   for c in fetched["cells"]), "the fetched notebook is the course's 01_layers"
        answers = json.loads(json.dumps(build_submission(case, ASSIGNMENT)))
        hub.user("PUT", name, path, json={"type": "notebook", "format": "json", "content": answers})
        submitted = hub.user("POST", name, "/assignments/submit", params=args)
        assert submitted.get("success", True) is not False, submitted

    collected = hub.user("POST", "instructor", f"/formgrader/api/assignment/{ASSIGNMENT}/collect")
    assert collected["success"], collected
    for name in STUDENTS:
        assert (course_root / "submitted" / name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()

    # the instructor grades the class with the sandboxed class grader (from a terminal in their server)
    run = subprocess.run([sys.executable, "-m", "autograder.grade", ASSIGNMENT, "--course", str(course_root),
                          "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    scores = {s["student"]: s["score"] for s in
              hub.user("GET", "instructor", f"/formgrader/api/submissions/{ASSIGNMENT}")}
    assert scores == {"student1": 10.0, "student2": 7.0}, scores

    released = hub.user("POST", "instructor", f"/formgrader/api/assignment/{ASSIGNMENT}/release_feedback")
    assert released["success"], released
    for name, score in scores.items():
        hub.user("POST", name, "/assignments/fetch_feedback", params=args)
        pages = list((hub.paths["homes"] / name / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html"))
        assert len(pages) == 1, f"{name}: feedback pages {pages}"
        assert f"Score: {score:.1f} / 10.0" in pages[0].read_text(), f"{name}'s feedback shows another score"


def test_hub_configuration_gives_each_role_its_settings(monkeypatch):
    """Loaded as JupyterHub loads it: only listed users allowed, each server told where the exchange and the
    shared data are, instructors and students pointed at their own nbgrader settings, GPU profiles only when
    asked; and the per-role nbgrader configs set the course, the exchange and the instructor's course
    folder."""
    monkeypatch.setenv("COURSE_HUB_INSTRUCTORS", "ada")
    monkeypatch.setenv("COURSE_HUB_STUDENTS", "bob, eve")
    monkeypatch.setenv("COURSE_HUB_DATA", "/srv/shared/pets")
    monkeypatch.delenv("COURSE_HUB_GPU", raising=False)
    config = PyFileConfigLoader("jupyterhub_config.py", str(HUB_DIR)).load_config()
    assert config.Authenticator.allowed_users == {"ada", "bob", "eve"}
    envs = config.Spawner.environment
    assert envs["COURSE_DATA"] == "/srv/shared/pets" \
        and envs["COURSE_HUB_EXCHANGE"] == "/srv/nbgrader/exchange"

    def spawner(name):
        return type("S", (), {"user": type("U", (), {"name": name})()})()

    assert envs["JUPYTER_CONFIG_PATH"](spawner("ada")) == str(HUB_DIR / "instructor")
    assert envs["JUPYTER_CONFIG_PATH"](spawner("bob")) == str(HUB_DIR / "student")
    assert "profile_list" not in config.KubeSpawner
    monkeypatch.setenv("COURSE_HUB_GPU", "1")
    gpu = PyFileConfigLoader("jupyterhub_config.py", str(HUB_DIR)).load_config()
    assert any("nvidia.com/gpu" in json.dumps(p) for p in gpu.KubeSpawner.profile_list)
    monkeypatch.setenv("COURSE_HUB_STUDENTS", "ada")
    with pytest.raises(ValueError, match="both instructor and student"):
        PyFileConfigLoader("jupyterhub_config.py", str(HUB_DIR)).load_config()

    monkeypatch.setenv("COURSE_HUB_STUDENTS", "bob")
    hub = PyFileConfigLoader("jupyterhub_config.py", str(HUB_DIR)).load_config()
    assert hub.Spawner.environment["COURSE_ID"] == COURSE, \
        "the course id comes from the course's nbgrader_config.py"
    monkeypatch.setenv("COURSE_ID", hub.Spawner.environment["COURSE_ID"])
    monkeypatch.setenv("COURSE_ROOT", str(ROOT))
    monkeypatch.setenv("COURSE_HUB_EXCHANGE", "/shared/exchange")
    teacher = PyFileConfigLoader("nbgrader_config.py", str(HUB_DIR / "instructor")).load_config()
    assert teacher.CourseDirectory.root == str(ROOT) and teacher.Exchange.root == "/shared/exchange"
    assert teacher.Execute.timeout == 180, "the course's own nbgrader_config.py is loaded as well"
    monkeypatch.setenv("JUPYTERHUB_USER", "bob")
    student = PyFileConfigLoader("nbgrader_config.py", str(HUB_DIR / "student")).load_config()
    assert student.CourseDirectory.course_id == COURSE and "root" not in student.CourseDirectory
    assert student.CourseDirectory.student_id == "bob", \
        "the hub's user name, not the OS account's, is the student id"
