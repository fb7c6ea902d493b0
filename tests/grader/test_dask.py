"""The class grader on Dask (``--backend dask``): a real scheduler and real workers on 127.0.0.1, no mock.

One class (honest, wrong, crashing and adversarial submissions, one over the size limit) is graded twice in
identical scratch courses: by the local backend and on a Dask cluster of two workers, one of which is
SIGKILLed while it holds a submission. The gradebooks must agree cell for cell and every submission must be
graded exactly once. Then: running the command again grades only what is missing; a worker whose environment
differs, and a scheduler no worker joins, are refused with the reason. Needs bubblewrap (``.ci/run`` installs
it).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from autograder.grade.run import EXIT_SOME_NOT_GRADED
from autograder.publish.layout import ROOT
from tests.support.adversarial import ASSIGNMENT, ATTACKS, make
from tests.support.grading import new_course, read_scores
from tests.support.servers import DaskCluster, SlurmNode, free_port

pytestmark = pytest.mark.slow
CLASS = ("honest_solution", "honest_wrong", "os_exit", "patch_exec", "call_the_judge", "write_gradebook",
         "duplicated_cell", "invalid_json")
# the solution with 1 MiB of prose: graded locally, refused by --max-submission-mb 0.5
OVERSIZE = "big_notebook"


def grade_cli(course, *extra, env=None):
    cmd = [sys.executable, "-m", "autograder.grade", ASSIGNMENT, "--course", str(course),
           "--cell-timeout", "10", "--notebook-timeout", "150", "--memory-gb", "6", "--no-feedback", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)


def make_class(course):
    fill = {"course": str(course), "home_canary": str(course / "canary"), "port": free_port()}
    attacks = {a.name: a for a in ATTACKS}
    for name in CLASS:
        make(attacks[name], course / "submitted" / name / ASSIGNMENT, fill)
    nb = nbformat.reads((course / "submitted" / "honest_solution" / ASSIGNMENT
                         / f"{ASSIGNMENT}.ipynb").read_text(), as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("padding " * (2**20 // 8)))
    (course / "submitted" / OVERSIZE / ASSIGNMENT).mkdir(parents=True)
    nbformat.write(nb, course / "submitted" / OVERSIZE / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")


def results_of(course):
    return json.loads((Path(course) / "reports" / ASSIGNMENT / "results.json").read_text())


def kill_a_busy_worker(cluster, killed, stop_event):
    """SIGKILL the first worker process seen holding a submission for 3 s (its kernel is running by then);
    ``killed`` gets the worker's address and the task it held."""
    with cluster.client() as client:
        seen = {}
        while not stop_event.is_set():
            for address, keys in client.processing().items():
                for key in keys:
                    if str(key).startswith("grade-"):
                        seen.setdefault((address, key), time.monotonic())
                        if time.monotonic() - seen[(address, key)] >= 3:
                            pid = client.run(os.getpid, workers=[address])[address]
                            os.kill(pid, signal.SIGKILL)
                            killed.update(address=address, task=str(key), pid=pid)
                            return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def two_backends(tmp_path_factory, record_timing):
    """(local course, dask course, dask command's output, what was killed, cluster) after grading both."""
    root = tmp_path_factory.mktemp("dask")
    courses = {}
    for name in ("local", "dask"):
        courses[name] = new_course(root / name, ASSIGNMENT)
        make_class(courses[name])
    start_s = time.perf_counter()
    local = grade_cli(courses["local"], "--workers", "2")
    record_timing("class grader, local backend: 9 submissions, 2 workers", time.perf_counter() - start_s)
    assert local.returncode == EXIT_SOME_NOT_GRADED, local.stdout[-3000:] + local.stderr[-3000:]
    cluster = DaskCluster(root)
    try:
        cluster.add_worker("w1")
        cluster.add_worker("w2")
        with cluster.client() as client:
            client.wait_for_workers(2, timeout=120)
        killed, done = {}, threading.Event()
        killer = threading.Thread(target=kill_a_busy_worker, args=(cluster, killed, done), daemon=True)
        killer.start()
        start_s = time.perf_counter()
        remote = grade_cli(courses["dask"], "--backend", "dask", "--scheduler", cluster.address,
                           "--max-submission-mb", "0.5")
        record_timing("class grader, dask backend: 9 submissions, 2 workers, one SIGKILLed",
                      time.perf_counter() - start_s)
        done.set()
        killer.join()
        yield courses["local"], courses["dask"], remote, killed, cluster
    finally:
        cluster.close()


def test_dask_gradebook_equals_local_cell_for_cell(two_backends):
    """The same class, the same scores in every cell, whichever backend graded it (one worker killed
    mid-run)."""
    local, remote_course, remote, killed, _ = two_backends
    assert remote.returncode == EXIT_SOME_NOT_GRADED, remote.stdout[-3000:] + remote.stderr[-3000:]
    assert killed, "no worker was seen holding a submission for 3 s: nothing was killed"
    students = [*CLASS]
    assert read_scores(remote_course, ASSIGNMENT, students) == read_scores(local, ASSIGNMENT, students)
    records = [{r["student"]: r for r in results_of(c) if r["student"] != OVERSIZE}
               for c in (local, remote_course)]
    by_backend = [{student: r["status"] for student, r in rec.items()} for rec in records]
    why = {student: [f"{rec[student]['status']}: {rec[student]['reason']}" if student in rec else "absent"
                     for rec in records]
           for student in by_backend[0].keys() | by_backend[1].keys()
           if by_backend[0].get(student) != by_backend[1].get(student)}
    assert by_backend[0] == by_backend[1], f"local vs dask, status and reason: {why}"
    assert by_backend[1]["honest_solution"] == "graded" and by_backend[1]["invalid_json"] == "rejected"


def test_every_submission_graded_exactly_once_despite_the_killed_worker(two_backends):
    """Each student appears once in the results and has one submission in the gradebook; the submission the
    killed worker held was graded by another one."""
    from nbgrader.api import Gradebook

    _, course, remote, killed, _ = two_backends
    results = results_of(course)
    assert sorted(r["student"] for r in results) == sorted([*CLASS, OVERSIZE])
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        subs = [s.student.id for s in gb.find_assignment(ASSIGNMENT).submissions]
    assert len(subs) == len(set(subs)) and set(subs) == {*CLASS, OVERSIZE}, subs
    held = next(s for s in [*CLASS, OVERSIZE] if f"-{s}-" in killed["task"])
    record = next(r for r in results if r["student"] == held)
    assert record["status"] in ("graded", "crashed") and record["where"] != killed["address"], record
    places = {r["where"] for r in results if r["where"]}
    assert all(p.startswith("tcp://127.0.0.1:") for p in places) and len(places) >= 2, places
    report = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    assert "(dask backend)" in report and "## Where submissions were graded" in report


def test_a_notebook_over_the_size_limit_is_refused_alone(two_backends):
    """Over --max-submission-mb: rejected with the reason, 0 points; graded by the local backend (no such
    limit)."""
    local, course, *_ = two_backends
    record = next(r for r in results_of(course) if r["student"] == OVERSIZE)
    assert record["status"] == "rejected" and "over the 0.5 MiB" in record["reason"], record
    assert next(r for r in results_of(local) if r["student"] == OVERSIZE)["status"] == "graded"


def test_running_again_grades_only_what_changed(two_backends):
    """A second run reuses every final grade; a resubmitted notebook is graded again; --force grades all
    again."""
    _, course, _, _, cluster = two_backends
    before = read_scores(course, ASSIGNMENT, [*CLASS])
    again = grade_cli(course, "--backend", "dask", "--scheduler", cluster.address,
                      "--max-submission-mb", "0.5")
    assert ("7 submissions graded before and unchanged since were not graded again"
            in again.stderr), again.stderr[-2000:]
    assert read_scores(course, ASSIGNMENT, [*CLASS]) == before
    # honest_wrong resubmits the solution: only it (and what is never final: rejections) is graded again.
    shutil.copy2(course / "submitted" / "honest_solution" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
                 course / "submitted" / "honest_wrong" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    third = grade_cli(course, "--backend", "dask", "--scheduler", cluster.address,
                      "--max-submission-mb", "0.5")
    assert "6 submissions graded before" in third.stderr, third.stderr[-2000:]
    after = read_scores(course, ASSIGNMENT, ["honest_wrong", "honest_solution"])
    assert after["honest_wrong"] == after["honest_solution"] != before["honest_wrong"]
    with cluster.client() as client:  # the workers stay up; what each run sent them is gone with the run
        kept = client.run(_materials_kept)
    assert kept and not any(kept.values()), kept


def _materials_kept():
    """On a worker: the assignment materials it still holds unpacked (autograder.grade.dask_backend's
    state)."""
    from autograder.grade import dask_backend

    state = dask_backend._state
    return [] if state is None else ([str(p) for p in (state.folder / "material").glob("*")]
                                     + list(state.materials))


def test_workers_with_another_environment_or_none_at_all_are_refused(two_backends, tmp_path):
    """No worker within --worker-timeout: a clear error. A worker running another copy of the course package:
    refused, naming the difference, before anything is graded (the local backend's graded course is left as it
    was: its results file is not rewritten)."""
    course = two_backends[0]
    before = (course / "reports" / ASSIGNMENT / "results.json").read_bytes()
    cluster = DaskCluster(tmp_path)
    try:
        lonely = grade_cli(course, "--backend", "dask", "--scheduler", cluster.address,
                           "--worker-timeout", "3")
        assert (lonely.returncode == 1
                and "no Dask worker joined the scheduler" in lonely.stderr), lonely.stderr[-2000:]
        other = tmp_path / "other"
        for package in ("course", "autograder"):
            shutil.copytree(ROOT / package, other / package, ignore=shutil.ignore_patterns("__pycache__"))
        with (other / "course" / "models.py").open("a") as f:
            f.write("\n# a change the grader's machine does not have\n")
        cluster.add_worker("stranger", env=dict(os.environ, PYTHONPATH=str(other)), cwd=other)
        refused = grade_cli(course, "--backend", "dask", "--scheduler", cluster.address)
        assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
        assert ("environments differ" in refused.stderr
                and "course package" in refused.stderr), refused.stderr[-2000:]
        assert (course / "reports" / ASSIGNMENT / "results.json").read_bytes() == before
    finally:
        cluster.close()


def test_what_a_task_carries_and_brings_back(two_backends, tmp_path):
    """The material holds the assignment's source, the config and the gradebook copy, nothing of
    submitted/, release/ or autograded/; files coming back cannot land outside their folder; environments
    differ in words."""
    from autograder.grade.dask_backend import _unpack, differences, environment, material

    course = two_backends[0]
    mat = material(course, ASSIGNMENT, course / "gradebook.db")
    assert ({"nbgrader_config.py", "gradebook.db", f"source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"}
            <= set(mat["files"]))
    assert not [name for name in mat["files"] if name.startswith(("submitted", "release", "autograded"))]
    assert material(course, ASSIGNMENT, course / "gradebook.db")["digest"] == mat["digest"]
    with pytest.raises(ValueError, match="outside its folder"):
        _unpack({"../escape.txt": b"x"}, tmp_path / "back")
    assert not (tmp_path / "escape.txt").exists()
    env = environment()
    assert {"torch", "nbgrader", "distributed", "course package", "autograder package"} <= set(env)
    assert differences(env, dict(env, torch="0.0")) == [f"torch {env['torch']} here, 0.0 there"]


def test_grading_through_slurm_with_dask_jobqueue(two_backends, tmp_path):
    """`--cluster slurm`: a one-node Slurm cluster started here runs the Dask worker as a batch job,
    configured as README's jobqueue.yaml says; the gradebook equals the local backend's for the same
    submissions."""
    local = two_backends[0]
    node = SlurmNode(tmp_path / "slurm")
    try:
        (tmp_path / "dask").mkdir()
        (tmp_path / "dask" / "jobqueue.yaml").write_text(json.dumps({"jobqueue": {"slurm": {
            "queue": "debug", "cores": 1, "processes": 1, "memory": "4GiB", "walltime": "00:20:00",
            "python": sys.executable, "log-directory": str(tmp_path / "jobs"),
            "scheduler-options": {"host": "127.0.0.1"}, "worker-extra-args": ["--memory-limit", "0"],
            "job-script-prologue": [f"export PYTHONPATH={ROOT} DASK_DISTRIBUTED__WORKER__DAEMON=False"]}}}))
        course = new_course(tmp_path / "course", ASSIGNMENT)
        students = ["honest_wrong"]
        fill = {"course": str(course), "home_canary": str(course / "canary"), "port": free_port()}
        for attack in ATTACKS:
            if attack.name in students:
                make(attack, course / "submitted" / attack.name / ASSIGNMENT, fill)
        graded = grade_cli(course, "--backend", "dask", "--cluster", "slurm", "--workers", "1",
                           env=dict(node.env, DASK_CONFIG=str(tmp_path / "dask")))
        assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
        assert read_scores(course, ASSIGNMENT, students) == read_scores(local, ASSIGNMENT, students)
        assert all(r["where"].startswith("tcp://") for r in results_of(course))
        assert list((tmp_path / "jobs").glob("dask-worker-*.err")), "no Slurm job ran a worker"
    finally:
        node.close()
