"""Grade one submission in a private scratch course; the real gradebook is never touched here.

The parent (``autograder.grade.run``) gives each worker a sanitised copy of the notebook and a copy of the
gradebook. The worker runs the real ``nbgrader autograde`` in its scratch course, with the kernel in the
sandbox (``autograder.sandbox``) and the test cells run by the worker's judge
(``autograder.judge.judged_execute``, ``autograder.judge.process``), then decides each test cell's score from
what the judge said about it:

- a test cell earns its points only if the judge ran the gradebook's source of that test and it passed;
- when the kernel died or the notebook ran out of time, nbgrader keeps nothing; the judge's results still say
  which tests ran and passed before that, so those keep their points and the rest get 0 with the reason.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.grade.kernels import Slot
from autograder.grade.nbgrader_server import run_nbgrader
from autograder.grade.policy import decide
from autograder.grade.result import Result
from autograder.judge.launch import Judge
from autograder.publish.layout import ROOT
from autograder.sandbox.launcher import private_uid_of, write_kernelspec
from autograder.sandbox.policy import KERNEL_NAME, Limits

WORKER_CONFIG = '''
# --- added by autograder.grade.worker for one sandboxed submission ---
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import (IgnorePattern, LimitOutput, SaveAutoGrades, AssignLatePenalties,
                                    CheckCellMetadata)
from {judged_execute} import JudgedExecute
c.Autograde.autograde_preprocessors = [JudgedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.ExecutePreprocessor.kernel_name = "{kernel}"
c.Execute.timeout = {cell_s}
c.Execute.execute_retries = 0
c.KernelManager.transport = "ipc"
c.KernelManager.ip = "{runtime}/kernel"
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
c.JudgedExecute.output_cap = {output}
c.JudgedExecute.judge_socket = {judge!r}
c.JudgedExecute.runtime_dir = {runtime!r}
c.JudgedExecute.kernel_uid = {uid}
c.JudgedExecute.results_path = {results!r}
c.JudgedExecute.test_seconds = {cell_s}
'''


@dataclass
class Job:
    """One submission to grade, as the parent describes it to ``grade_one`` (locally, or in a Dask task).

    course: the folder holding ``source/<assignment>/`` and ``nbgrader_config.py``; gradebook: a copy of the
    gradebook (never the real one); notebook: the sanitised submission; limits: the sandbox's; cells:
    ``{grade_id: (max_score, is_test)}`` (``gradebook_io.graded_cells``); timestamp: the submission's, or
    None.
    """

    student: str
    assignment: str
    course: Path
    gradebook: Path
    notebook: Path
    limits: Limits
    cells: dict
    seed: int = 0
    unsafe_no_sandbox: bool = False
    timestamp: str | None = None


def _nbgrader_scores(gradebook_url: str, assignment: str,
                     student: str) -> tuple[dict[str, tuple[float | None, bool]] | None, float]:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(gradebook_url) as gb:
        try:
            nb = gb.find_submission_notebook(assignment, assignment, student)
        except MissingEntry:
            return None, 0.0
        return ({g.name: (g.auto_score, g.needs_manual_grade) for g in nb.grades},
                float(nb.late_submission_penalty or 0))


def grade_one(job: Job, slot: Slot, judge: Judge) -> Result:
    """Grade one submission described by ``job`` with the pre-started kernel ``slot`` and the worker's
    ``judge`` (``autograder.judge.launch.Judge``); returns a Result. Stops the slot's kernel."""
    from autograder.judge import (
        judged_execute,  # nbgrader's step; imports nbgrader, so only once grading starts
    )

    judge.wait_ready()
    start = time.perf_counter()
    student, assignment, limits = job.student, job.assignment, job.limits
    try:
        ws = slot.ws
        course = ws / "course"
        (course / "source").mkdir(parents=True)
        shutil.copytree(Path(job.course) / "source" / assignment, course / "source" / assignment)
        shutil.copy2(job.gradebook, course / "gradebook.db")
        submitted = course / "submitted" / student / assignment
        submitted.mkdir(parents=True)
        shutil.copy2(job.notebook, submitted / f"{assignment}.ipynb")
        if job.timestamp:
            (submitted / "timestamp.txt").write_text(job.timestamp)
        results_path = ws / "judge.jsonl"
        uid = private_uid_of(slot.process.pid) if os.geteuid() == 0 and not job.unsafe_no_sandbox else -1
        config = (Path(job.course) / "nbgrader_config.py").read_text()
        config += WORKER_CONFIG.format(judged_execute=judged_execute.__name__, kernel=KERNEL_NAME,
                                       cell_s=limits.cell_s, runtime=str(slot.runtime),
                                       output=limits.output, judge=judge.socket, uid=uid,
                                       results=str(results_path))
        (course / "nbgrader_config.py").write_text(config)
        jupyter = write_kernelspec(ws / "jupyter", slot.config_path)
        # The kernel's connection file and Unix sockets go to the slot's private folder (jupyter_client puts
        # the connection file in TMPDIR).
        env = dict(os.environ, JUPYTER_PATH=str(jupyter), JUPYTER_RUNTIME_DIR=str(slot.runtime),
                   TMPDIR=str(slot.runtime),
                   PYTHONPATH=os.pathsep.join([str(ROOT),
                                               os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        args = ["autograde", assignment, "--student", student, "--force", "--Autograde.create_student=True"]
        rc, output, timed_out = run_nbgrader(args, course, env, limits.notebook_s,
                                             slot.nbgrader_cgroup.folders if slot.nbgrader_cgroup else ())
    finally:
        slot.stop()
    url = f"sqlite:///{course / 'gradebook.db'}"
    nb_scores, penalty = _nbgrader_scores(url, assignment, student)
    autograded = course / "autograded" / student / assignment / f"{assignment}.ipynb"
    results = _judge_results(results_path)
    if timed_out:
        status, reason = "timed out", f"the notebook ran longer than {limits.notebook_s} s"
    elif "DeadKernelError" in output or "Kernel died" in output:
        status, reason = "crashed", ("the kernel died (os._exit, a segfault, or killed for memory) while a "
                                     "cell ran")
    # a flood of output the caps could not stop (autograder.judge.judged_execute)
    elif slot.memory_kills.get("nbgrader"):
        status, reason = "crashed", ("the notebook's output made the grader's nbgrader process reach its "
                                     "memory limit")
    elif rc != 0 or not autograded.exists():
        status, reason = "crashed", _last_error(output)
    else:
        status, reason = "graded", ""
    # autograder.sandbox.cgroup: the OOM killer, at the sandbox's memory limit
    if slot.memory_kills.get("sandbox"):
        reason = "; ".join(filter(None, [reason, f"{slot.memory_kills['sandbox']} process(es) of the "
                                                 "notebook killed at the sandbox's memory limit "
                                                 f"({limits.sandbox_memory / 2**30:g} GiB)"]))
    if status != "graded":
        nb_scores = None
    scores, failed, flags = decide(job.cells, nb_scores, results, status)
    if any(rec.get("grader_error") for rec in results):
        status = "error"  # the grader's own fault, not the student's: regrade once it is fixed
        reason = "; ".join(filter(None, [reason, "the judge failed: " + next(
            rec["why"] for rec in results if rec.get("grader_error"))[:300]]))
    timeouts = _timed_out_cells(autograded) if autograded.exists() else []
    if timeouts:
        reason = "; ".join(filter(None, [reason, f"cell time limit ({limits.cell_s} s) reached in: "
                                                 f"{', '.join(timeouts)}"]))
    # What the submission displayed must never run in the formgrader or the feedback
    # (autograder.grade.active_content).
    from autograder.grade.active_content import sanitise_file

    removed = sanitise_file(autograded) if autograded.exists() else []
    result = Result(student, assignment, status, reason, scores, failed, flags, time.perf_counter() - start,
                    penalty, str(autograded.parent) if autograded.exists() else None, removed=removed,
                    test_seconds={rec["grade_id"]: rec["seconds"] for rec in results
                                  if isinstance(rec.get("seconds"), (int, float))}, where=platform.node())
    (ws / "nbgrader.log").write_text(output)
    (ws / "result.json").write_text(json.dumps(result.to_json(), indent=1))
    return result


def _judge_results(path: str | Path) -> list[dict[str, Any]]:
    """The judge's outcomes (``autograder.judge.judged_execute``), one JSON object a line; written by the
    grader's own nbgrader process, so read as they are (a line cut short by a killed process is skipped)."""
    out = []
    if not Path(path).exists():
        return out
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("grade_id"), str):
            out.append(rec)
    return out


def _timed_out_cells(path: Path) -> list[str]:
    """Names (grade_id, or "cell N") of the cells nbgrader stopped at the cell time limit."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    out = []
    for i, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError"
               for o in cell.get("outputs", [])):
            out.append(cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {i}")
    return out


def _last_error(output: str) -> str:
    lines = [line for line in output.splitlines() if "[ERROR]" in line or "Error" in line]
    return (lines[-1] if lines else output.strip().splitlines()[-1] if output.strip()
            else "nbgrader failed")[-300:]
