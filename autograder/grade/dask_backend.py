"""Grade a class on Dask workers (``python -m autograder.grade --backend dask``): the same grading unit,
elsewhere.

Dask schedules, moves data and replaces dead workers; nothing here is a scheduler or a queue. One Dask task
grades one submission with ``autograder.grade.worker.grade_one``, exactly as the local backend does: a
pre-started sandboxed kernel and a sandboxed judge on the worker that runs it
(``autograder.grade.kernels.KernelPool``, one per worker process, as many kernels as the worker has threads).
No shared filesystem is assumed:

- the parent sends the assignment's material (its ``source/`` folder, ``nbgrader_config.py`` and a copy of
  the gradebook) once per worker (``Client.scatter(..., broadcast=True)``: a worker that joins later fetches
  it from a peer), and each task carries one submission's sanitised notebook as bytes (at most
  ``max_bytes``; a larger one is refused before anything is sent);
- a task returns the Result (scores, messages, timing, the sandbox's records, where it ran) and the autograded
  folder's files as bytes; only the parent writes the gradebook, the feedback and the report.

Faults are Dask's to handle and ours to report: a task whose worker dies is run again elsewhere (it writes
nothing shared, so a second run records nothing twice); after ``distributed.scheduler.allowed-failures``
deaths it is reported "error" with the reason, as is a task the scheduler lost. Every worker's environment
(Python, torch, nbgrader, Dask, the course's own code, bubblewrap) is checked against the parent's before
grading starts, and again by each task on a worker that joined later, so that no submission is graded by
another environment.

Used by ``autograder.grade.cli``; the cluster to connect to comes from ``--scheduler``, ``--cluster`` or
Dask's own configuration (``scheduler-address``; dask-jobqueue's and dask-gateway's settings for their
clusters).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import uuid
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from distributed import Client

    from autograder.grade.kernels import KernelPool
    from autograder.grade.result import Result
    from autograder.grade.worker import Job

log = logging.getLogger("autograder.grade.dask_backend")
MAX_BYTES = 16 * 1024 * 1024  # one submission's notebook in one task; larger ones are refused with the reason
PACKAGES = ("torch", "torchvision", "numpy", "nbgrader", "nbformat", "nbclient", "jupyter_client",
            "ipykernel", "dask", "distributed")
# --cluster NAME: a Dask deployer configured by Dask's own configuration files (e.g.
# ~/.config/dask/jobqueue.yaml).
CLUSTERS = {"local": ("distributed", "LocalCluster"), "slurm": ("dask_jobqueue", "SLURMCluster"),
            "pbs": ("dask_jobqueue", "PBSCluster"), "sge": ("dask_jobqueue", "SGECluster"),
            "kubernetes": ("dask_kubernetes.operator", "KubeCluster"),
            "gateway": ("dask_gateway", "GatewayCluster")}


class EnvironmentMismatch(RuntimeError):
    """A worker's environment differs from the parent's; str(err) says how."""


def environment() -> dict[str, str]:
    """{what: version or digest} of what decides a grade besides the submission: Python, the packages that run
    and judge notebooks, and a sha256 over the source of the ``course`` and ``autograder`` packages."""
    import autograder
    import course

    env = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = "not installed"
    for package in (course, autograder):
        root, h = Path(package.__file__).parent, hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        env[f"{package.__name__} package"] = h.hexdigest()[:16]
    return env


def differences(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """The keys on which two ``environment()`` dicts differ, in words: ``torch 2.14.1 here, 2.13.0 there``."""
    return [f"{key} {expected.get(key)} here, {found.get(key)} there"
            for key in sorted(set(expected) | set(found)) if expected.get(key) != found.get(key)]


def check_worker(expected: dict[str, str], unsafe: bool = False) -> str | None:
    """Run on a worker (``Client.run`` and each task, once per process): None when its environment is the
    parent's ``expected`` and bubblewrap starts a sandbox there (unless ``unsafe``); else the problem in
    words."""
    import multiprocessing

    problems = differences(expected, environment())
    # the grader forks nbgrader with multiprocessing (autograder.grade.nbgrader_server)
    if multiprocessing.current_process().daemon:
        problems.append("the worker is a daemonic process, which may not start the grader's processes: set "
                        "Dask's distributed.worker.daemon to False (DASK_DISTRIBUTED__WORKER__DAEMON=False)")
    if not unsafe:
        from autograder.sandbox.policy import SandboxUnavailable, check_available

        try:
            check_available()
        except SandboxUnavailable as err:
            problems.append(f"no sandbox: {str(err).splitlines()[0]}")
    if problems:
        return f"{platform.node()} (pid {os.getpid()}): " + "; ".join(problems)
    return None


def material(course: str | Path, assignment: str, gradebook: str | Path) -> dict[str, Any]:
    """What a worker needs to grade any submission of the assignment: {"digest": sha256, "files": {relative
    path: bytes}} with ``source/<assignment>/``, ``nbgrader_config.py`` and ``gradebook`` (the parent's copy
    of the gradebook) as ``gradebook.db``."""
    course = Path(course)
    files = {"nbgrader_config.py": (course / "nbgrader_config.py").read_bytes(),
             "gradebook.db": Path(gradebook).read_bytes()}
    for path in sorted((course / "source" / assignment).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and ".ipynb_checkpoints" not in path.parts:
            files[str(path.relative_to(course))] = path.read_bytes()
    h = hashlib.sha256()
    for name, data in files.items():
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return {"digest": h.hexdigest(), "files": files}


class _WorkerState:
    """What one worker process keeps between tasks: unpacked materials and one kernel pool per set of
    options."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.folder = Path(tempfile.mkdtemp(prefix="grade-dask-")).resolve()
        self.materials, self.pools, self.checked = {}, {}, None

    def unpack(self, mat: dict[str, Any]) -> Path:
        with self.lock:
            if mat["digest"] not in self.materials:
                self.materials[mat["digest"]] = Path(_unpack(mat["files"],
                                                             self.folder / "material" / mat["digest"][:16]))
            return self.materials[mat["digest"]]

    def pool(self, options: dict[str, Any], size: int) -> KernelPool:
        from autograder.grade.kernels import KernelPool
        from autograder.sandbox.policy import Limits

        token = json.dumps(options, sort_keys=True)
        with self.lock:
            if token not in self.pools:
                self.pools[token] = KernelPool(size, Limits(**options["limits"]), options["seed"],
                                               options["unsafe_no_sandbox"], os.environ.get("COURSE_DATA"))
            return self.pools[token]

    def close(self) -> None:
        """Stop the pools' kernels and judges and remove the materials (each run sends its own: its gradebook
        copy differs), so that a long-lived worker keeps nothing of a finished run."""
        with self.lock:
            for pool in self.pools.values():
                pool.close()
            self.pools.clear()
            for root in self.materials.values():
                shutil.rmtree(root, ignore_errors=True)
            self.materials.clear()


_state = None
_state_lock = threading.Lock()


def _worker_state() -> _WorkerState:
    global _state
    with _state_lock:
        if _state is None:
            _state = _WorkerState()
        return _state


def close_worker_pools() -> None:
    """Run on every worker when a grading run ends (``Client.run``): stop the kernels it started ahead and
    remove the run's materials."""
    if _state is not None:
        _state.close()


def grade_task(mat: dict[str, Any], job: Job, notebook: bytes,
               expected: dict[str, str]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A Dask task: grade one submission on this worker. mat: ``material(...)``; job: the parent's
    ``worker.Job`` (its paths are the parent's: replaced here by this worker's); notebook: the sanitised
    notebook's bytes; expected: the parent's ``environment()``. Returns (Result as JSON, {relative path:
    bytes} of its autograded folder)."""
    from dataclasses import replace

    from distributed import get_worker

    from autograder.grade.worker import grade_one

    state = _worker_state()
    if state.checked is None:
        state.checked = check_worker(expected, job.unsafe_no_sandbox) or ""
    if state.checked:
        raise EnvironmentMismatch(f"this worker's environment differs from the grader's: {state.checked}")
    worker = get_worker()
    root = state.unpack(mat)
    options = {"limits": asdict(job.limits), "seed": job.seed, "unsafe_no_sandbox": job.unsafe_no_sandbox}
    pool = state.pool(options, worker.state.nthreads)
    inbox = state.folder / "in" / uuid.uuid4().hex
    inbox.mkdir(parents=True)
    try:
        path = inbox / f"{job.assignment}.ipynb"
        path.write_bytes(notebook)
        local = replace(job, course=root, gradebook=root / "gradebook.db", notebook=path)
        slot, judge = pool.take(), pool.judges.take()
        try:
            result = grade_one(local, slot, judge)
        finally:
            pool.judges.give(judge)
        files = {}
        if result.autograded:
            folder = Path(result.autograded)
            files = {str(p.relative_to(folder)): p.read_bytes()
                     for p in sorted(folder.rglob("*")) if p.is_file()}
        shutil.rmtree(slot.ws, ignore_errors=True)
        result.autograded, result.where = None, worker.address
        return result.to_json(), files
    finally:
        shutil.rmtree(inbox, ignore_errors=True)


def connect(scheduler: str | None = None, cluster: str | None = None,
            workers: int | None = None) -> tuple[Client, Any]:
    """(``distributed.Client``, the cluster made here or None): to the scheduler at ``scheduler``; else to a
    new cluster of kind ``cluster`` (a key of CLUSTERS, configured by Dask's configuration, scaled to
    ``workers`` when given); else to Dask's configured ``scheduler-address``; else to a LocalCluster of
    ``workers`` single-threaded processes. Close the client, then the cluster (its workers and jobs end with
    it)."""
    import dask
    from distributed import Client

    # the grader logs at INFO; Dask's chatter is not news
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if scheduler:
        return Client(scheduler, timeout=30), None
    if cluster is None and dask.config.get("scheduler-address", None):
        return Client(timeout=30), None
    kind = cluster or "local"
    if kind not in CLUSTERS:
        raise SystemExit(f"error: --cluster must be one of {', '.join(CLUSTERS)}, not {kind!r}")
    module, name = CLUSTERS[kind]
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as err:
        raise SystemExit(f"error: --cluster {kind} needs {module.split('.')[0]} ({err}): "
                         f"pip install {module.split('.')[0].replace('_', '-')}") from None
    dask.config.set({"distributed.worker.daemon": False})  # what check_worker asks of every worker
    if kind == "local":
        made = cls(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True)
    else:
        made = cls()
        made.scale(workers or 1)
    return (made.get_client() if hasattr(made, "get_client") else Client(made)), made


class DaskRunner:
    """The Dask backend of ``autograder.grade``: ``grade(jobs)`` yields (job, Result or exception) as tasks
    end.

    client: a ``distributed.Client``; wait_s: how long to wait for the first worker; unsafe: grade without the
    sandbox (then workers need no bubblewrap); max_bytes: the largest notebook a task carries."""

    name = "dask"

    def __init__(self, client: Client, wait_s: float = 120, unsafe: bool = False,
                 max_bytes: int = MAX_BYTES) -> None:
        self.client, self.unsafe, self.max_bytes = client, unsafe, max_bytes
        self._threads = None
        self.expected = environment()
        try:
            client.wait_for_workers(1, timeout=wait_s)
        except (TimeoutError, OSError) as err:
            raise SystemExit(f"error: no Dask worker joined the scheduler {client.scheduler.address} within "
                             f"{wait_s:g} s ({type(err).__name__}): start workers (`dask worker ADDRESS`) or "
                             "check the cluster's job queue") from None
        self.check_workers()
        if client.dashboard_link:
            log.info("Dask dashboard: %s", client.dashboard_link)

    @property
    def workers(self) -> int:
        """Threads on the cluster's workers when the last ``grade`` began (what could grade at the same
        time)."""
        if self._threads is None:
            self._threads = self._threads_now()
        return self._threads

    def _threads_now(self) -> int:
        return sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values())

    def check_workers(self) -> None:
        """Refuse (SystemExit, with each worker's differences) when any worker's environment is not this
        one's."""
        found = self.client.run(check_worker, self.expected, self.unsafe, on_error="return")
        problems = [f"  {address}: {problem}" if not isinstance(problem, BaseException) else
                    f"  {address}: the grader's check cannot run there ({problem!r}): start the worker with "
                    "the course's checkout on its PYTHONPATH (README: 'Grading on a cluster')"
                    for address, problem in sorted(found.items()) if problem is not None]
        if problems:
            raise SystemExit("error: refusing to grade: these Dask workers' environments differ from the "
                             "grader's (install the same versions and the same checkout of the course "
                             "there):\n"
                             + "\n".join(problems))

    def too_large(self, notebook_path: str | Path) -> str | None:
        """Why a notebook cannot be sent to a worker (str), or None."""
        size = Path(notebook_path).stat().st_size
        if size > self.max_bytes:
            return (f"the notebook is {size / 2**20:.1f} MiB, over the {self.max_bytes / 2**20:g} MiB a "
                    "grading task may carry to a cluster worker (--max-submission-mb)")
        return None

    def grade(self, jobs: list[Job], course: Path, assignment: str,
              gradebook: Path) -> Iterator[tuple[Job, Result | Exception]]:
        """Yield (job, Result or exception) for each job as its task ends; jobs as ``autograder.grade.run``
        makes them."""
        from distributed import as_completed

        from autograder.grade.result import Result

        self._threads = self._threads_now()
        mat = self.client.scatter(material(course, assignment, gradebook), broadcast=True, hash=False)
        futures = {}
        for job in jobs:
            notebook = Path(job.notebook).read_bytes()
            future = self.client.submit(grade_task, mat, job, notebook, self.expected, pure=False,
                                        key=f"grade-{assignment}-{job.student}-{uuid.uuid4().hex[:8]}")
            futures[future] = job
        try:
            for future in as_completed(futures):
                job = futures.pop(future)
                try:
                    data, files = future.result()
                except Exception as err:  # noqa: BLE001  (KilledWorker, a lost task, a worker's error)
                    yield job, _why(err)
                    continue
                result = Result(**data)
                if files:
                    try:
                        result.autograded = _unpack(files,
                                                    Path(job.notebook).parent / "returned" / assignment)
                    except ValueError as err:
                        yield job, err
                        continue
                yield job, result
        finally:
            for future in futures:
                future.cancel()
            self.client.cancel(mat)

    def close(self) -> None:
        """Stop the kernels the workers started ahead (the workers stay up for the next run)."""
        try:
            self.client.run(close_worker_pools, on_error="return")
        except Exception as err:  # noqa: BLE001  (a cluster already gone has nothing to stop)
            log.warning("could not stop the workers' idle kernels: %s", err)


def _unpack(files: dict[str, bytes], folder: str | Path) -> str:
    """Write {relative path: bytes} under ``folder``; returns its path (str). ValueError for a path outside
    it."""
    folder = Path(folder).resolve()
    for name, content in files.items():
        path = (folder / name).resolve()
        if folder not in path.parents:
            raise ValueError(f"a file outside its folder: {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return str(folder)


def _why(err: Exception) -> Exception:
    """An exception from a task, reworded for the report when it is Dask's."""
    name = type(err).__name__
    if name == "KilledWorker":
        return RuntimeError(
            "the Dask workers running this submission died "
            f"{1 + int(__import__('dask').config.get('distributed.scheduler.allowed-failures'))} "
            "times (killed, out of memory, or lost): not graded; run the command again to retry it")
    if name in ("CancelledError", "FutureCancelledError"):
        return RuntimeError("the Dask scheduler lost this task (restarted or unreachable): not graded; run "
                            "the command again to grade what is missing")
    return err
