"""Grade one submission in a private scratch course; the real gradebook is never touched here.

The parent (``autograder.grade``) gives each worker a sanitised copy of the notebook and a copy of the
gradebook. The worker runs the real ``nbgrader autograde`` in its scratch course, with the kernel in the
sandbox (``autograder.sandbox``) and the test cells run by the worker's judge (``autograder.judged_execute``,
``autograder.judge``), then decides each test cell's score from what the judge said about it:

- a test cell earns its points only if the judge ran the gradebook's source of that test and it passed;
- when the kernel died or the notebook ran out of time, nbgrader keeps nothing; the judge's results still say
  which tests ran and passed before that, so those keep their points and the rest get 0 with the reason.
"""
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograder.course_dir import ROOT, nbgrader_env
from autograder.kernels import Slot
from autograder.sandbox import KERNEL_NAME, Limits, private_uid_of, write_kernelspec

WORKER_CONFIG = '''
# --- added by autograder.worker for one sandboxed submission ---
from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbgrader.preprocessors import IgnorePattern, LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata
from autograder.judged_execute import JudgedExecute
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
class Result:
    """What grading one submission gave.

    status: "graded", "crashed" (kernel died), "timed out" (notebook wall time), "rejected" (not gradable:
    reason says why), "missing" (nothing submitted), "error" (the grader failed; reason has its output).
    scores: {grade_id: [score, max_score]} for every graded cell of the assignment.
    failed: {grade_id: why} for test cells that earned less than their maximum.
    flags: what the instructor should look at: the kernel sent data the judge refused, stopped answering, or
        the grader itself failed on a test (empty for honest and for merely wrong work).
    removed: active content (script, and what can carry it) removed from the autograded notebook
        (autograder.active_content); empty for an honest submission.
    test_seconds: {grade_id: wall seconds} each test cell took in the judge, its calls into the kernel included.
    where: the machine (local backend) or the Dask worker's address that graded it; seconds: how long it took there.
    """

    student: str
    assignment: str
    status: str
    reason: str = ""
    scores: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    flags: list = field(default_factory=list)
    seconds: float = 0.0
    late_penalty: float = 0.0
    autograded: str = None
    removed: list = field(default_factory=list)
    test_seconds: dict = field(default_factory=dict)
    where: str = ""

    def to_json(self):
        return asdict(self)


def _nbgrader_scores(gradebook_url, assignment, student):
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(gradebook_url) as gb:
        try:
            nb = gb.find_submission_notebook(assignment, assignment, student)
        except MissingEntry:
            return None, 0.0
        return {g.name: (g.auto_score, g.needs_manual_grade) for g in nb.grades}, float(nb.late_submission_penalty or 0)


def decide(cells, nb_scores, results, status):
    """Per-cell scores from nbgrader's grades and the judge's results: returns (scores, failed, flags).

    cells: {grade_id: (max_score, is_test)} from autograder.gradebook_io.graded_cells, read once by the parent;
    nb_scores: {grade_id: (auto_score, needs_manual)} or None when nbgrader kept nothing (kernel died, timed
    out); results: the judge's outcomes in the order the tests ran (dicts: grade_id, passed, why, grader_error).
    failed: {grade_id: why} in words for the student (the feedback shows it); flags: for the instructor's report.
    """
    tests, flags = {}, {}
    for rec in results:
        tests.setdefault(rec["grade_id"], rec)  # a test cell duplicated by the student: its first run counts
        why = rec.get("why", "")
        if rec.get("grader_error") or why.startswith(("ProtocolError", "PeerGone", "TestTimeout")):
            flags[f"{rec['grade_id']}: {why[:300]}"] = None
    scores, failed = {}, {}
    for gid, (max_score, is_test) in cells.items():
        nb = nb_scores.get(gid) if nb_scores else None
        if not is_test:
            scores[gid] = [nb[0] if nb and nb[0] is not None else 0.0, max_score]
            continue
        rec = tests.get(gid)
        if rec is None:
            why = (f"the test did not run: the notebook {status} before it" if status != "graded"
                   else "the test did not run")
        elif not rec["passed"]:
            why = rec.get("why") or "failed"
        else:
            why = None
        scores[gid] = [0.0 if why else float(max_score), max_score]
        if why:
            failed[gid] = why
    return scores, failed, list(flags)


_PRELOAD = ["autograder.nbgrader_preload"]
_forkserver = None


def _nbgrader_context():
    """A multiprocessing context whose fork server has nbgrader imported once, so that each submission's
    ``nbgrader autograde`` starts in milliseconds instead of paying its ~2 s of imports again."""
    global _forkserver
    if _forkserver is None:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        _forkserver = ctx
    return _forkserver


def start_nbgrader_server():
    """Start the fork server now (it imports nbgrader in the background), so the first submission need not wait."""
    from multiprocessing import forkserver

    _nbgrader_context()
    forkserver.ensure_running()


def _nbgrader_main(args, cwd, env, out_path, cgroup=()):
    """Child of the fork server: ``nbgrader ARGS`` in ``cwd`` with environment ``env``, output to ``out_path``,
    in a new session so that the parent can kill it and its kernel together, in control group ``cgroup`` (its
    folders; ``autograder.kernels.Slot.nbgrader_cgroup``) when given."""
    if cgroup:
        from autograder.cgroup import join

        join(cgroup)
    os.setsid()
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["nbgrader", *args]
    import resource

    from nbgrader.apps.nbgraderapp import NbGraderApp

    try:
        NbGraderApp.launch_instance(argv=list(args))
    finally:  # the trusted process's own high-water mark, for the log (what a submission's output cost it)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(f"[grader] nbgrader peak RSS: {peak} MiB", flush=True)


def run_nbgrader(args, cwd, env=None, timeout=None, cgroup=()):
    """Run ``nbgrader ARGS`` in ``cwd`` with ``env`` (default: this process's; PATH as ``nbgrader_env`` sets it),
    forked from the warm fork server, killed with its children after ``timeout`` seconds (None: no limit), in the
    control group made of folders ``cgroup`` (none: the fork server's). Returns (exit code, output, timed_out)."""
    env = nbgrader_env(env)
    out = Path(tempfile.mkstemp(prefix="nbgrader-", suffix=".log")[1])
    try:
        proc = _nbgrader_context().Process(target=_nbgrader_main,
                                           args=(list(args), str(cwd), dict(env), str(out), list(cgroup)))
        proc.start()
        proc.join(timeout)
        timed_out = proc.exitcode is None
        if timed_out:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.join()
        return proc.exitcode, out.read_text(errors="replace"), timed_out
    finally:
        out.unlink(missing_ok=True)


def grade_one(job, slot=None, judge=None):
    """Grade one submission described by ``job`` (dict, see ``autograder.grade``) with the pre-started kernel
    ``slot`` (``autograder.kernels.Slot``; None: start one now) and ``judge`` (``autograder.judges.Judge``;
    None: start one for this submission); returns a Result. Stops the slot's kernel."""
    if judge is None:
        from autograder.judges import Judge

        judge = Judge(job.get("unsafe_no_sandbox", False))
        try:
            return grade_one(job, slot, judge)
        finally:
            judge.close()
    judge.wait_ready()
    start = time.perf_counter()
    student, assignment = job["student"], job["assignment"]
    limits = Limits(**job["limits"])
    if slot is None:
        slot = Slot(job["workspace"], limits, job.get("seed", 0), job.get("unsafe_no_sandbox", False),
                    job.get("data_dir"), job.get("font_cache"))
    try:
        ws = slot.ws
        course = ws / "course"
        (course / "source").mkdir(parents=True)
        shutil.copytree(Path(job["course"]) / "source" / assignment, course / "source" / assignment)
        shutil.copy2(job["gradebook"], course / "gradebook.db")
        submitted = course / "submitted" / student / assignment
        submitted.mkdir(parents=True)
        shutil.copy2(job["notebook"], submitted / f"{assignment}.ipynb")
        if job.get("timestamp"):
            (submitted / "timestamp.txt").write_text(job["timestamp"])
        results_path = ws / "judge.jsonl"
        uid = private_uid_of(slot.process.pid) if os.geteuid() == 0 and not job.get("unsafe_no_sandbox") else -1
        config = (Path(job["course"]) / "nbgrader_config.py").read_text()
        config += WORKER_CONFIG.format(kernel=KERNEL_NAME, cell_s=limits.cell_s, runtime=str(slot.runtime),
                                       output=limits.output, judge=judge.socket, uid=uid,
                                       results=str(results_path))
        (course / "nbgrader_config.py").write_text(config)
        jupyter = write_kernelspec(ws / "jupyter", slot.config_path)
        # The kernel's connection file and Unix sockets go to the slot's private folder (jupyter_client puts the
        # connection file in TMPDIR).
        env = dict(os.environ, JUPYTER_PATH=str(jupyter), JUPYTER_RUNTIME_DIR=str(slot.runtime),
                   TMPDIR=str(slot.runtime),
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
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
        status, reason = "crashed", "the kernel died (os._exit, a segfault, or killed for memory) while a cell ran"
    elif slot.memory_kills.get("nbgrader"):  # a flood of output the caps could not stop (autograder.judged_execute)
        status, reason = "crashed", "the notebook's output made the grader's nbgrader process reach its memory limit"
    elif rc != 0 or not autograded.exists():
        status, reason = "crashed", _last_error(output)
    else:
        status, reason = "graded", ""
    if slot.memory_kills.get("sandbox"):  # autograder.cgroup: the OOM killer, at the sandbox's memory limit
        reason = "; ".join(filter(None, [reason, f"{slot.memory_kills['sandbox']} process(es) of the notebook killed "
                                          f"at the sandbox's memory limit ({limits.sandbox_memory / 2**30:g} GiB)"]))
    if status != "graded":
        nb_scores = None
    scores, failed, flags = decide(job["cells"], nb_scores, results, status)
    if any(rec.get("grader_error") for rec in results):
        status = "error"  # the grader's own fault, not the student's: regrade once it is fixed
        reason = "; ".join(filter(None, [reason, "the judge failed: " + next(
            rec["why"] for rec in results if rec.get("grader_error"))[:300]]))
    timeouts = _timed_out_cells(autograded) if autograded.exists() else []
    if timeouts:
        reason = "; ".join(filter(None, [reason, f"cell time limit ({limits.cell_s} s) reached in: {', '.join(timeouts)}"]))
    # What the submission displayed must never run in the formgrader or the feedback (autograder.active_content).
    from autograder.active_content import sanitise_file

    removed = sanitise_file(autograded) if autograded.exists() else []
    result = Result(student, assignment, status, reason, scores, failed, flags, time.perf_counter() - start,
                    penalty, str(autograded.parent) if autograded.exists() else None, removed=removed,
                    test_seconds={rec["grade_id"]: rec["seconds"] for rec in results
                                  if isinstance(rec.get("seconds"), (int, float))}, where=platform.node())
    (ws / "nbgrader.log").write_text(output)
    (ws / "result.json").write_text(json.dumps(result.to_json(), indent=1))
    return result


def _judge_results(path):
    """The judge's outcomes (``autograder.judged_execute``), one JSON object a line; written by the grader's own
    nbgrader process, so read as they are (a line cut short by a killed process is skipped)."""
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


def _timed_out_cells(path):
    """Names (grade_id, or "cell N") of the cells nbgrader stopped at the cell time limit."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    out = []
    for i, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", [])):
            out.append(cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {i}")
    return out


def _last_error(output):
    lines = [line for line in output.splitlines() if "[ERROR]" in line or "Error" in line]
    return (lines[-1] if lines else output.strip().splitlines()[-1] if output.strip() else "nbgrader failed")[-300:]
