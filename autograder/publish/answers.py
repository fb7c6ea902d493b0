"""Where an exercise's answer may appear, and the check that enforces it.

The rule (README, "Releasing assignments one at a time"):

1. ``course/`` defines no function that answers an exercise: the package is installed with every assignment.
   Where its code needs an exercise's behaviour it takes the student's function as an argument.
2. ``release/NN`` may give the answers to exercises of *earlier* notebooks, which it builds on (03 uses 02's
   ``freeze_to``), and only in a cell marked as given: cell metadata
   ``{"course": {"given": {"02_freezing": ["freeze_to"]}}}``. An instructor releases NN with nbgrader after
   those exercises are due. Never an answer of NN's own exercises or of a later notebook's.
3. The student edition (every notebook at once, for self-study) gives none: its export replaces each given
   cell by a call to ``course.earlier.earlier``, which loads the student's own answers from their earlier
   notebook.

A function *answers* an exercise when, put in place of the reference solution, it passes the exercise's
visible and hidden tests. The check runs each source notebook in grading mode, one process each, and at each
hidden test tries every candidate that can be called with the solution's required positional arguments: every
function of the course package, every function defined or imported (from outside ``course``) in the notebooks
checked. Before the candidates it tries the reference solution itself, so a harness that could not recognise
an answer fails instead of finding nothing. Lines and blocks of solutions are a separate check
(``student_edition.scan``).

    python -m autograder.publish.answers                 # check course/ and release/; exit 1 on a breach
    python -m autograder.publish.answers --edition DIR   # check an exported student edition: no answer at all
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import io
import json
import os
import pkgutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .layout import ROOT, assignments

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import FrameType
    from typing import Any, NoReturn

    from IPython.core.interactiveshell import InteractiveShell

_MODULE = __spec__.name  # this module, run again with -m in a scratch copy

TRIAL_S = 20
"""Seconds one candidate may take on one exercise's tests before it counts as failing them."""


@dataclass(frozen=True)
class Finding:
    """``candidate`` (``course/fit.py:name`` or ``release/03_optimizer/03_optimizer.ipynb#2:name``) passes the
    tests of ``exercise`` (a name the solution defines) of source notebook ``notebook``. ``given`` is the
    notebooks (comma-separated) that the candidate's cell says it gives answers of ('' when not a given
    cell)."""

    candidate: str
    notebook: str
    exercise: str
    given: str = ""


def _transform(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def given_by(cell: dict[str, Any]) -> dict[str, list[str]]:
    """The notebooks whose answers a given cell holds (``{notebook: [names]}`` from its metadata; {} if
    none)."""
    return dict(cell.get("metadata", {}).get("course", {}).get("given", {}))


def notebook_candidates(path: str | os.PathLike, label: str = "") -> list[dict[str, str]]:
    """Candidates from a notebook file: ``[{"where", "given", "def"+"source" | "module"+"name"}]``, one per
    top-level function definition and per name imported from outside ``course`` (any code cell). ``where`` is
    ``label`` + the path from its ``release`` folder on + ``#cell:name``."""
    path = Path(path)
    parts = path.parts
    rel = "/".join(parts[len(parts) - 1 - parts[::-1].index("release"):]) if "release" in parts else path.name
    out = []
    for index, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] != "code":
            continue
        given = ",".join(given_by(cell))
        code = _transform("".join(cell["source"]))
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in tree.body:
            where = f"{label}{rel}#{index}"
            if isinstance(node, ast.FunctionDef) and not node.decorator_list:
                out.append({"where": f"{where}:{node.name}", "given": given, "def": node.name,
                            "source": ast.get_source_segment(code, node)})
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.split(".")[0] not in ("course", "__future__"):
                out += [{"where": f"{where}:{node.module}.{a.name}", "given": given, "module": node.module,
                         "name": a.name} for a in node.names if a.name != "*"]
    return out


def course_candidates() -> list[dict[str, str]]:
    """Every function defined in a module of the importable ``course`` package:
    ``[{"where", "module", "name"}]``."""
    import course

    out = []
    for info in pkgutil.walk_packages(course.__path__, "course."):
        module = __import__(info.name, fromlist=["_"])
        rel = Path(module.__file__).resolve()
        rel = "course/" + rel.relative_to(Path(course.__path__[0]).resolve()).as_posix()
        out += [{"where": f"{rel}:{name}", "given": "", "module": info.name, "name": name}
                for name, obj in vars(module).items()
                if inspect.isfunction(obj) and obj.__module__ == info.name]
    return out


def exercises(nb: dict[str, Any]) -> dict[int, tuple[list[str], list[str], str]]:
    """``{hidden test cell index: (names, [visible test source, hidden test source], solution source)}`` of
    source notebook ``nb`` (a dict): the functions each solution cell defines, with its test cells."""
    cells = nb["cells"]
    by_id = {c["metadata"].get("nbgrader", {}).get("grade_id", ""): (i, c) for i, c in enumerate(cells)}
    out = {}
    for grade_id, (_, cell) in by_id.items():
        if not grade_id.endswith("_solution"):
            continue
        base = grade_id.removesuffix("_solution")
        if f"{base}_hidden" not in by_id:
            continue
        names = [n.name for n in ast.parse(_transform("".join(cell["source"]))).body
                 if isinstance(n, ast.FunctionDef)]
        tests = ["".join(by_id[f"{base}_{kind}"][1]["source"]) for kind in ("visible", "hidden")
                 if f"{base}_{kind}" in by_id]
        out[by_id[f"{base}_hidden"][0]] = (names, tests, "".join(cell["source"]))
    return out


class _Timeout(BaseException):
    pass


def _alarm(signum: int, frame: FrameType | None) -> NoReturn:
    raise _Timeout()


def _passes(shell: InteractiveShell, namespace: dict[str, Any], exercise: str,
            candidate: Callable[..., Any] | dict[str, str], tests: list[str]) -> bool:
    """True when ``candidate`` (a function, or a dict with the ``source`` of a definition) in the place of
    ``exercise`` passes every test source in ``tests``, run in a copy of ``namespace``."""
    space = dict(namespace)
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TRIAL_S)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if isinstance(candidate, dict):
                exec(compile(candidate["source"], candidate["where"], "exec", dont_inherit=True), space)  # noqa: S102
                candidate = space[candidate["def"]]
            space[exercise] = candidate
            for source in tests:
                code = compile(shell.transform_cell(source), f"<tests of {exercise}>", "exec",
                               dont_inherit=True)
                exec(code, space)  # noqa: S102
        return True
    except BaseException:  # noqa: BLE001 - any failure, exit or time-out means it does not answer
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        import matplotlib.pyplot as plt

        plt.close("all")


def _callable_like(candidate: Callable[..., Any], reference: Callable[..., Any]) -> bool:
    """Can ``candidate`` be called with as many positional arguments as ``reference`` requires?"""
    try:
        required = [p for p in inspect.signature(reference).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        inspect.signature(candidate).bind(*range(len(required)))
        return True
    except (TypeError, ValueError):
        return False


def _resolve(candidate: dict[str, str]) -> Callable[..., Any] | dict[str, str] | None:
    """The function a candidate names (imported now), None when it is not a plain function or cannot
    import."""
    if "module" not in candidate:
        return candidate
    try:
        obj = getattr(__import__(candidate["module"], fromlist=["_"]), candidate["name"])
    except Exception:  # noqa: BLE001 - a name that cannot be imported here answers nothing
        return None
    return obj if inspect.isfunction(obj) or inspect.isbuiltin(obj) else None


def run_notebook(path: str | os.PathLike, candidates: list[dict[str, str]]) -> dict[str, list]:
    """Run source notebook ``path`` in grading mode in this process and try ``candidates`` at each hidden
    test.

    Returns ``{"findings": [[where, exercise, given], ...], "checked": [exercise, ...]}``.

    Raises:
        RuntimeError: a cell of the source notebook fails, or an exercise's own reference solution does not
            pass its tests here (the check could then not recognise an answer).
    """
    os.environ["COURSE_FAST"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    from IPython.core.interactiveshell import InteractiveShell

    path = Path(path).resolve()
    os.chdir(path.parent)
    sys.path.insert(0, str(path.parent))
    shell = InteractiveShell.instance()
    nb = json.loads(path.read_text(encoding="utf-8"))
    tasks = exercises(nb)
    findings, checked = [], []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = shell.run_cell("".join(cell["source"]), store_history=False, silent=True)
        if not result.success:
            raise RuntimeError(f"{path.name} cell {index} failed: "
                               f"{result.error_in_exec or result.error_before_exec!r}")
        if index not in tasks:
            continue
        names, tests, solution = tasks[index]
        for name in names:
            reference = shell.user_ns[name]
            own = {"where": f"{path.name} reference {name}", "def": name, "source": _only_def(solution, name)}
            if not _passes(shell, shell.user_ns, name, own, tests):
                raise RuntimeError(f"{path.name}: the reference {name} does not pass its own tests in "
                                   "this check")
            checked.append(name)
            for cand in candidates:
                fn = _resolve(cand)
                if fn is None:
                    continue
                probe = fn if "module" in cand else _defined(cand, shell.user_ns)
                if probe is None or probe is reference or not _callable_like(probe, reference):
                    continue
                if _passes(shell, shell.user_ns, name, fn, tests):
                    findings.append([cand["where"], name, cand.get("given", "")])
    return {"findings": findings, "checked": checked}


def _only_def(source: str, name: str) -> str:
    """The definition of ``name`` from a solution cell's source (its markers are comments)."""
    code = _transform(source)
    tree = ast.parse(code)
    keep = [n for n in tree.body if not (isinstance(n, ast.FunctionDef) and n.name != name)]
    return "\n".join(ast.get_source_segment(code, n) for n in keep)


def _defined(candidate: dict[str, str], namespace: dict[str, Any]) -> Callable[..., Any] | None:
    """A notebook candidate's function, defined in a scratch copy of ``namespace`` (only to read its
    signature)."""
    space = dict(namespace)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(candidate["source"], candidate["where"], "exec", dont_inherit=True), space)  # noqa: S102
    except Exception:  # noqa: BLE001
        return None
    return space.get(candidate["def"])


def find(notebooks: Iterable[str | os.PathLike | tuple[str, str | os.PathLike]],
         root: str | os.PathLike = ROOT, course_path: str | os.PathLike | None = None,
         workers: int = 2) -> tuple[list[Finding], dict[str, list[str]]]:
    """Every (candidate, exercise) pair where a candidate answers an exercise of ``root``'s source notebooks.

    Candidates: every function of the ``course`` package (the copy in ``course_path``/course when given) and
    of ``notebooks``: paths, or ``(label, path)`` pairs whose label prefixes the candidate's ``where``.
    Returns ``(findings, checked)``: a list of ``Finding`` and ``{notebook: [exercise names]}``.
    """
    root = Path(root)
    env = dict(os.environ, COURSE_FAST="1", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    # The copy first on the path, so that `import course` finds it; the processes start in a scratch folder,
    # since `python -m` puts the folder it starts in first (this repository's own course/, were it started
    # here).
    path = [str(Path(course_path).resolve())] if course_path is not None else []
    env["PYTHONPATH"] = os.pathsep.join(path + [str(ROOT)])
    with tempfile.TemporaryDirectory(prefix="answers-") as scratch:
        listed = subprocess.run([sys.executable, "-m", _MODULE, "--list-course"], env=env, cwd=scratch,
                                capture_output=True, text=True)
        if listed.returncode != 0:
            raise RuntimeError(f"listing the course package's functions failed:\n{listed.stderr[-4000:]}")
        candidates = json.loads(listed.stdout)
        for item in notebooks:
            label, nb = item if isinstance(item, tuple) else ("", item)
            candidates += notebook_candidates(nb, label)
        cand_file = Path(scratch) / "candidates.json"
        cand_file.write_text(json.dumps(candidates))

        def one(name: str) -> tuple[str, dict[str, list]]:
            out = Path(scratch) / f"{name}.json"
            nb = root / "source" / name / f"{name}.ipynb"
            run = subprocess.run([sys.executable, "-m", _MODULE, "--run", str(nb), "--candidates",
                                  str(cand_file), "--out", str(out)], env=env, cwd=scratch,
                                 capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"checking {name} failed:\n{run.stdout[-2000:]}{run.stderr[-4000:]}")
            return name, json.loads(out.read_text())

        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, assignments(root)))
    findings = [Finding(where, name, exercise, given) for name, res in results
                for where, exercise, given in res["findings"]]
    return findings, {name: res["checked"] for name, res in results}


def breaches(findings: Iterable[Finding], edition: bool = False, label: str = "") -> list[str]:
    """The findings (those whose candidate starts with ``label``) that break the rule of the module docstring,
    as messages. ``edition``: the student edition, where every answer is a breach."""
    out = []
    for f in findings:
        if not f.candidate.startswith(label):
            continue
        where = f.candidate[len(label):].split("#")[0].split(":")[0]
        released_in = where.split("/")[1] if where.startswith("release/") and not edition else None
        if released_in and released_in > f.notebook and f.notebook in f.given.split(","):
            continue  # a later notebook's given cell, giving what it says it gives
        if released_in and released_in > f.notebook:
            why = f"a later notebook may give it only in a cell marked as given from {f.notebook}"
        else:
            why = "an answer where a student reads it before the exercise is due"
        out.append(f"{f.candidate} answers {f.notebook}'s {f.exercise}: {why}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edition", type=Path,
                        help="an exported student edition to check instead of the repository")
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--candidates", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--list-course", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list_course:
        print(json.dumps(course_candidates()))
        return 0
    if args.run:
        result = run_notebook(args.run, json.loads(args.candidates.read_text()))
        args.out.write_text(json.dumps(result))
        return 0
    base = args.edition or ROOT
    notebooks = sorted((base / "release").glob("*/*.ipynb"))
    findings, checked = find(notebooks, course_path=args.edition)
    problems = breaches(findings, edition=args.edition is not None)
    n = sum(map(len, checked.values()))
    if problems:
        print(f"{len(problems)} ready answer(s) found ({n} exercises checked):\n  " + "\n  ".join(problems))
        return 1
    print(f"no ready answers: {n} exercises checked against the course package and "
          f"{len(notebooks)} notebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
