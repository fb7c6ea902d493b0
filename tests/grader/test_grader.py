"""The class grader against the adversarial corpus (tests/support/adversarial.py), run as an instructor runs
it.

One `python -m autograder.grade 01_layers` grades every attack in a scratch course with two workers. Then:
each attack earns exactly what an honest grader gives; nothing outside the grader's own outputs changed in
the course folder (hashed before and after), in the real home folder, or on the network; the export refuses
forged extra credit; the report names what broke. Needs bubblewrap (`.ci/run` installs it).
"""
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from autograder.grade.intake import shown_id
from autograder.grade.run import EXIT_SOME_NOT_GRADED
from autograder.publish.layout import ROOT
from tests.support.adversarial import ASSIGNMENT, ATTACKS, EXERCISES, build, make
from tests.support.grading import new_course, read_scores

pytestmark = pytest.mark.slow
PROTECTED = ("source", "release", "submitted", "nbgrader_config.py")


def tree_hash(course):
    """sha256 over every file (path and bytes) under the folders the grader must never change."""
    h = hashlib.sha256()
    for name in PROTECTED:
        root = Path(course) / name
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                h.update(str(path.relative_to(course)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class Listener:
    """A TCP server on the host's loopback that records every connection made to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            self.connections.append(addr)
            conn.close()


def grade_cli(course, *extra, env=None):
    cmd = [sys.executable, "-m", "autograder.grade", ASSIGNMENT, "--course", str(course), "--workers", "2",
           "--cell-timeout", "10", "--notebook-timeout", "150", "--memory-gb", "6", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def graded(tmp_path_factory, record_timing):
    """(course, scores, results, cli output, hashes before/after, listener, home canary) after one grading
    run."""
    import time

    course = new_course(tmp_path_factory.mktemp("adversarial") / "course", ASSIGNMENT)
    listener = Listener()
    canary = Path.home() / f".grader-canary-{secrets.token_hex(4)}"
    fill = {"course": str(course), "home_canary": str(canary), "port": listener.port}
    for attack in ATTACKS:
        make(attack, course / "submitted" / (attack.folder or attack.name) / ASSIGNMENT, fill)
    before = tree_hash(course)
    start = time.perf_counter()
    proc = grade_cli(course)
    record_timing(f"class grader: {len(ATTACKS)} adversarial submissions, 2 workers",
                  time.perf_counter() - start)
    # Some attacks are not gradable (rejected): the command says so with its exit status, after grading the
    # rest.
    assert proc.returncode == EXIT_SOME_NOT_GRADED, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = tree_hash(course)
    by_id = {r["student"]: r
             for r in json.loads((course / "reports" / ASSIGNMENT / "results.json").read_text())}
    results = {a.name: by_id.get(shown_id(a.folder or a.name)) for a in ATTACKS}
    scores = read_scores(course, ASSIGNMENT, [a.folder or a.name for a in ATTACKS])
    scores = {a.name: scores[a.folder or a.name] for a in ATTACKS}
    yield course, scores, results, proc.stdout + proc.stderr, before, after, listener, canary
    listener.sock.close()
    canary.unlink(missing_ok=True)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_earns_what_an_honest_grader_gives(graded, attack):
    """Per exercise, the gradebook holds exactly the points the attack's honest answers deserve."""
    _, scores, results, *_ = graded
    result = results[attack.name]
    assert result is not None, f"{attack.name} is missing from the report"
    accepted = attack.status if isinstance(attack.status, tuple) else (attack.status,)
    assert result["status"] in accepted, (f"{attack.name} ({attack.why}): {result['status']}: "
                                          f"{result['reason']}")
    got = scores[attack.name]
    if not attack.recorded:
        assert got is None, f"{attack.name}: an id the grader refuses reached the gradebook"
        return
    if attack.status == "rejected":
        assert result["reason"], f"{attack.name}: rejected without a reason"
        assert got is not None and all(score == 0 for score, _, _ in got.values()), got
        return
    earned = {ex: sum(got[gid][0] for gid in gids) for ex, gids in EXERCISES.items()}
    assert earned == attack.earns, (f"{attack.name} ({attack.why}):\n  expected {attack.earns}\n"
                                    f"  got {earned}\n  {result['failed']}")
    assert not any(needs for _, _, needs in got.values()), "nothing may be left needing a manual grade"


def test_nothing_outside_the_graders_outputs_changed(graded):
    """source/, release/, submitted/ and the config hash the same before and after grading."""
    _, _, _, _, before, after, _, _ = graded
    assert before == after


def test_no_connection_reached_the_host_and_home_is_untouched(graded):
    """The network attack never connected; the home-folder attack wrote nothing there."""
    *_, listener, canary = graded
    assert listener.connections == []
    assert not canary.exists()


def test_reasons_are_recorded_for_crashes_and_time_limits(graded):
    """Crashed and timed-out submissions say why; what the judge refused or lost is flagged for the
    instructor, and nothing is flagged for honest or merely wrong work, however the kernel was patched."""
    _, _, results, *_ = graded
    assert "kernel died" in results["os_exit"]["reason"]
    assert "cell time limit" in results["infinite_loop"]["reason"]
    assert "cell time limit" in results["sleep_forever"]["reason"]
    assert "duplicated or split" in results["duplicated_cell"]["reason"]
    flagged = {name: "; ".join(r["flags"]) for name, r in results.items()}
    for name, words in [("huge_answer", "over"), ("deep_answer", ""), ("many_values_answer", "values"),
                        ("malformed_tensors", "do not fit"), ("hang_in_a_call", "no answer in time"),
                        ("exit_in_a_call", "did not answer")]:
        assert flagged[name] and words in flagged[name], f"{name}: {flagged[name]!r}"
    for name in ("honest_solution", "honest_wrong", "patch_tensor_eq", "patch_math_isclose", "gc_reach",
                 "values_that_equal_everything", "rebind_test_fixtures"):
        assert flagged[name] == "", f"{name} flagged: {flagged[name]}"
    assert "did not answer" in results["exit_in_a_call"]["failed"]["params_reached_visible"]


def test_the_report_times_each_test_in_the_judge(graded):
    """results.json gives every test cell's seconds in the judge: short for honest work, the judge's time
    limit (the cell limit, 10 s here) for a call that never returns, nothing for a test that never ran."""
    _, _, results, *_ = graded
    tests = sorted(gid for ids in EXERCISES.values() for gid in ids)
    honest = results["honest_solution"]["test_seconds"]
    assert sorted(honest) == tests and all(0 <= s < 5 for s in honest.values()), honest
    hung = results["hang_in_a_call"]["test_seconds"]
    assert 10 <= hung["params_reached_visible"] < 20 and hung["params_reached_hidden"] < 1, hung
    assert results["invalid_json"]["test_seconds"] == {}


def test_the_tests_never_reach_the_kernel(graded):
    """The hidden tests ran (their cells are graded), yet a search of the kernel's whole memory after them
    finds no line of any test: the tests' sources stay in the judge."""
    course = graded[0]
    import nbformat

    nb = nbformat.read(course / "autograded" / "search_memory_for_tests" / ASSIGNMENT
                       / f"{ASSIGNMENT}.ipynb", 4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "hidden test text in the kernel's memory: none" in text, text[-2000:]


def test_output_flood_is_cut(graded):
    """20 MB printed by a cell does not end up in the autograded notebook."""
    course = graded[0]
    path = course / "autograded" / "output_flood" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert path.stat().st_size < 2 * 2**20


def test_report_table_plot_and_feedback(graded):
    """The report ranks tests by failure rate, lists what broke, has its plot; feedback exists for graded
    work."""
    course = graded[0]
    text = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    assert "| count_params_hidden |" in text and "os_exit" in text and "invalid_json" in text
    assert (course / "reports" / ASSIGNMENT / "failure_rates.png").stat().st_size > 1000
    assert (course / "feedback" / "honest_solution" / ASSIGNMENT / f"{ASSIGNMENT}.html").exists()


def test_report_lists_every_submission_not_graded_with_its_reason(graded):
    """Each rejected attack appears in the report with its reason; the honest ones are graded."""
    course, _, results, *_ = graded
    text = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    for attack in ATTACKS:
        if attack.status == "rejected":
            assert (f"**{shown_id(attack.folder or attack.name)}**: rejected. "
                    f"{results[attack.name]['reason']}" in text)
    assert results["honest_solution"]["status"] == results["honest_wrong"]["status"] == "graded"


def test_a_failed_test_shows_its_assertion_message_in_the_feedback(graded):
    """The judge's failure reaches the student as IPython would show it: the test's line and its message."""
    course, _, results, *_ = graded
    why = results["honest_wrong"]["failed"]["count_params_visible"]
    assert why.startswith("AssertionError: ") and "26" in why
    html = (course / "feedback" / "honest_wrong" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "AssertionError" in html and "expected 26 parameters" in html


def test_no_secret_is_copied_through_a_link(graded):
    """A submission_secret.txt that links to an instructor's file is not followed: nothing is copied."""
    course = graded[0]
    assert not (course / "autograded" / "secret_link" / ASSIGNMENT / "submission_secret.txt").exists()


def test_export_writes_grades_and_refuses_forged_extra_credit(graded):
    """grades.csv has every student at most the maximum; extra credit no instructor listed blocks the
    export."""
    import csv

    from nbgrader.api import Gradebook

    from autograder.grade.gradebook_io import ExportRefused, db_url
    from autograder.grade.run import export

    course = graded[0]
    rows = list(csv.DictReader((course / "grades.csv").open()))
    assert {r["student_id"] for r in rows} >= {a.folder or a.name for a in ATTACKS if a.recorded}
    assert all(float(r["score"]) <= float(r["max_score"]) for r in rows)
    with Gradebook(db_url(course)) as gb:
        grade = gb.find_grade("count_params_hidden", ASSIGNMENT, ASSIGNMENT, "write_gradebook")
        grade.extra_credit = 50
        gb.db.commit()
    try:
        with pytest.raises(ExportRefused,
                           match="write_gradebook/01_layers/count_params_hidden: extra credit 50"):
            export(course, "refused.csv")
        (course / "extra_credit.csv").write_text("student,assignment,grade_id,points\n"
                                                 "write_gradebook,01_layers,count_params_hidden,50\n")
        assert export(course, "allowed.csv").exists(), "extra credit the instructor listed is exported"
    finally:
        with Gradebook(db_url(course)) as gb:
            gb.find_grade("count_params_hidden", ASSIGNMENT, ASSIGNMENT,
                          "write_gradebook").extra_credit = None
            gb.db.commit()
        (course / "extra_credit.csv").unlink(missing_ok=True)


def test_refuses_without_a_sandbox(tmp_path):
    """With no bubblewrap on PATH the grader stops with what to do; it does not run student code
    unsandboxed."""
    course = new_course(tmp_path / "course", ASSIGNMENT)
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    proc = grade_cli(course, env=env)
    assert proc.returncode != 0
    assert "bubblewrap is not installed" in proc.stderr and "--unsafe-no-sandbox" in proc.stderr


def test_same_scores_every_time(tmp_path):
    """Grading the same two submissions three times gives identical per-cell scores (seeded kernels)."""
    from tests.support.adversarial import Attack, full

    course = new_course(tmp_path / "course", ASSIGNMENT)
    # Right or wrong by a coin toss at each call: only seeded kernels give it the same score every time.
    noisy = Attack("coin_toss", "a random answer", full(), cells={"grad_norms_solution": (
        "import torch\ndef grad_norms(model):\n    scale = 1.0 if torch.rand(()).item() < 0.5 else 2.0\n"
        "    return {n: scale * p.grad.norm().item() for n, p in model.named_parameters()"
        " if p.grad is not None}\n")})
    students = [a for a in ATTACKS if a.name == "honest_solution"] + [noisy]
    for attack in students:
        folder = course / "submitted" / attack.name / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / f"{ASSIGNMENT}.ipynb").write_bytes(build(attack, {"course": "", "home_canary": "",
                                                                    "port": 0}))
    runs = []
    for _ in range(3):
        proc = grade_cli(course, "--no-feedback", "--no-export")
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(read_scores(course, ASSIGNMENT, [a.name for a in students]))
    assert runs[0] == runs[1] == runs[2]


def test_sandbox_sees_folders_bound_under_tmp(tmp_path):
    """A course cloned under /tmp stays visible in the sandbox: its private /tmp is mounted before the
    binds."""
    from autograder.sandbox.policy import bwrap_argv

    root, work, runtime = tmp_path / "course-root", tmp_path / "work", tmp_path / "runtime"
    for folder in (root / "course", root / "autograder", work, runtime):
        folder.mkdir(parents=True)
    (root / "course" / "marker.txt").write_text("visible")
    (tmp_path / "secret.txt").write_text("not bound")
    script = (f"print(open('{root / 'course' / 'marker.txt'}').read(), "
              f"__import__('os').path.exists('{tmp_path / 'secret.txt'}'))")
    proc = subprocess.run(bwrap_argv(work, runtime, root=root) + [sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["visible", "False"]


def test_sandbox_gets_a_copy_of_the_font_cache_never_the_file(tmp_path):
    """The font list the grader hands each kernel is a copy in the kernel's private /tmp: readable there, and
    what the kernel writes to it never reaches the grader's file, which every kernel of the class receives."""
    import os

    from autograder.sandbox.policy import bwrap_argv

    work, runtime = tmp_path / "work", tmp_path / "runtime"
    work.mkdir()
    runtime.mkdir()
    fonts = tmp_path / "fontlist-v1.json"
    fonts.write_text('{"fonts": []}')
    fd = os.open(fonts, os.O_RDONLY)
    script = ("p = '/tmp/matplotlib/fontlist-v1.json'; print(open(p).read()); "
              "open(p, 'w').write('poisoned'); print(open(p).read())")
    try:
        proc = subprocess.run(bwrap_argv(work, runtime, files=[(fd, "/tmp/matplotlib/fontlist-v1.json")])
                              + [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              pass_fds=(fd,))
    finally:
        os.close(fd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['{"fonts":', '[]}', "poisoned"]
    assert fonts.read_text() == '{"fonts": []}'
