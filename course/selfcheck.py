"""Check your own notebook against its visible tests, without nbgrader or a server.

From a terminal (runs the whole notebook in a fresh kernel, in the same small version the grader runs):

    python -m course.selfcheck release/01_layers/01_layers.ipynb

From inside the notebook, in a new cell at the end (checks what you have defined in this kernel now):

    from course.selfcheck import check; check()

Either prints, per exercise, each test cell's points and "passed" or the test's own message. Only the tests
you can see in your notebook run: when the notebook is graded, hidden tests run too and decide the grade, so
passing here is necessary, not sufficient. Nothing here knows the hidden tests; it reads only your notebook.
Which cells are test cells is ``course.cells.is_test_cell``, the rule the grader uses too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cells import is_solution_cell, is_test_cell, nbgrader_meta

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

Cell = dict[str, Any]
"""A notebook cell as the notebook's JSON has it (an ``nbformat.NotebookNode`` is one too)."""
Notebook = dict[str, Any]

HIDDEN_SUFFIX = "_hidden"
"""grade_ids of test cells that have hidden tests end in this (the course's convention, checked by its
tests)."""

FOOTER = ("Only the visible tests ran. When your notebook is graded, hidden tests run as well and decide the "
          "grade: passing here is necessary, not sufficient.")


@dataclass
class CellResult:
    """One graded test cell of a notebook: its ``grade_id``, ``points``, the exercise it belongs to, and the
    outcome: ``passed`` True/False, or None when it did not run; ``message`` says why it failed."""

    grade_id: str
    points: float
    exercise: str
    passed: bool | None
    message: str = ""

    @property
    def has_hidden_tests(self) -> bool:
        return self.grade_id.endswith(HIDDEN_SUFFIX)


def graded_test_cells(nb: Notebook) -> list[tuple[int, Cell, str]]:
    """``[(index, cell, exercise)]`` for the autograded test cells of notebook ``nb`` (a dict), in order. A
    test cell's exercise is the grade_id of the last solution cell above it, without ``_solution``."""
    out, exercise = [], ""
    for index, cell in enumerate(nb["cells"]):
        meta = nbgrader_meta(cell)
        if is_solution_cell(cell):
            exercise = meta.get("grade_id", "").removesuffix("_solution")
        elif is_test_cell(cell):
            out.append((index, cell, exercise or meta.get("grade_id", "?")))
    return out


def _source(cell: Cell) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _result(cell: Cell, exercise: str, passed: bool | None, message: str = "") -> CellResult:
    meta = cell["metadata"]["nbgrader"]
    return CellResult(meta.get("grade_id", "?"), float(meta.get("points", 0) or 0), exercise, passed, message)


def _error_message(ename: str, evalue: object) -> str:
    evalue = str(evalue).strip()
    return f"{ename}: {evalue}" if evalue else ename


def results_from_outputs(nb: Notebook) -> list[CellResult]:
    """Results read off an executed notebook: a test cell passed when it ran and shows no error output."""
    results = []
    for _, cell, exercise in graded_test_cells(nb):
        if cell.get("execution_count") is None and not cell.get("outputs"):
            results.append(
                _result(cell, exercise, None, "did not run (an earlier cell stopped the notebook)"))
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            message = _error_message(errors[0]["ename"], errors[0]["evalue"])
            results.append(_result(cell, exercise, False, message))
        else:
            results.append(_result(cell, exercise, True))
    return results


def run_notebook(path: str | os.PathLike, timeout: int = 180, fast: bool = True) -> Notebook:
    """Execute the notebook at ``path`` in a fresh kernel, every cell, errors and all; returns the executed
    notebook (a dict). ``fast`` runs it as the grader does (``COURSE_FAST=1``: small data, CPU, seconds per
    cell); ``timeout`` is in seconds per cell. The file on disk is not changed."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, COURSE_FAST="1") if fast else dict(os.environ)
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute(env=env)  # the kernel's environment; this process's own is left as it is
    return nb


def run_tests_here(
    nb: Notebook, namespace: dict[str, Any], shell: InteractiveShell | None = None
) -> list[CellResult]:
    """Run the visible test cells of ``nb`` against ``namespace`` (the notebook's variables), each in its own
    shallow copy so tests add no names; their printed output is swallowed. ``shell`` (IPython's) turns
    magics into Python first. Returns the results."""
    results = []
    for _, cell, exercise in graded_test_cells(nb):
        source = _source(cell)
        if shell is not None:
            source = shell.transform_cell(source)
        grade_id = cell["metadata"]["nbgrader"].get("grade_id", "?")
        try:
            code = compile(source, f"<test cell {grade_id}>", "exec", dont_inherit=True)
            with contextlib.redirect_stdout(io.StringIO()):
                exec(code, dict(namespace))  # noqa: S102 - running the notebook's own test cells is the point
        except Exception as err:  # noqa: BLE001 - a failing test: report it, go on with the next
            results.append(_result(cell, exercise, False, _error_message(type(err).__name__, err)))
        else:
            results.append(_result(cell, exercise, True))
    return results


def _points(value: float) -> str:
    return f"{value:g} point" + ("" if value == 1 else "s")


def report(results: list[CellResult], title: str) -> str:
    """The text printed for ``results``: one line per test cell, grouped by exercise, then a summary."""
    lines = [title]
    width = max([len(r.grade_id) for r in results] + [10])
    exercise = None
    for r in results:
        if r.exercise != exercise:
            exercise = r.exercise
            lines.append(f"\n{exercise}")
        status = {True: "passed", False: "FAILED", None: "not run"}[r.passed]
        extra = " (more tests hidden)" if r.has_hidden_tests else ""
        lines.append(f"  {r.grade_id:<{width}}  {_points(r.points):>9}  {status}{extra}")
        if r.message:
            lines.append(f"      {r.message.splitlines()[0] if r.message.splitlines() else r.message}")
    passed = [r for r in results if r.passed]
    total = sum(r.points for r in results)
    lines.append("")
    lines.append(f"Visible tests passed in {len(passed)} of {len(results)} test cells, "
                 f"worth up to {sum(r.points for r in passed):g} of {total:g} points when graded.")
    lines.append(FOOTER)
    return "\n".join(lines)


def _notebook_path_here(namespace: dict[str, Any]) -> Path | None:
    """The path of the notebook this kernel runs, when Jupyter says it (``__session__``,
    ``JPY_SESSION_NAME``)."""
    for candidate in (namespace.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if candidate and str(candidate).endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate)
    here = sorted(Path.cwd().glob("[0-9][0-9]_*.ipynb"))
    return here[0] if len(here) == 1 else None


def _colab_notebook() -> Notebook | None:
    """The open notebook as a dict on Colab (whose notebooks are not files in the kernel's folder), or
    None."""
    if "google.colab" not in sys.modules:
        return None
    from google.colab import _message  # Colab's own front-end bridge

    reply = _message.blocking_request("get_ipynb", timeout_sec=30)
    return reply.get("ipynb") if isinstance(reply, dict) else None


def check(path: str | os.PathLike | None = None, namespace: dict[str, Any] | None = None) -> list[CellResult]:
    """Run this notebook's visible tests against what is defined in this kernel now, and print the results.

    Args:
        path: the notebook file; found by itself in JupyterLab, Jupyter Notebook and Colab.
        namespace: the variables to test (default: the notebook's own, from IPython).

    Returns the list of ``CellResult`` (one per test cell), so ``all(r.passed for r in check())`` works.
    """
    shell = None
    if namespace is None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise RuntimeError("check() with no namespace works inside a notebook; from a terminal run "
                               "`python -m course.selfcheck NOTEBOOK.ipynb`")
        namespace = shell.user_ns
    if path is None:
        path = _notebook_path_here(namespace)
    if path is not None:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        title = f"Self-check of {Path(path).name}, against what this kernel has defined now"
    else:
        nb = _colab_notebook()
        if nb is None:
            raise FileNotFoundError("could not tell which notebook this is: call check('01_layers.ipynb') "
                                    "with the notebook's path")
        title = "Self-check of this notebook, against what this kernel has defined now"
    results = run_tests_here(nb, namespace, shell)
    print(report(results, title))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebook files (.ipynb) to check")
    parser.add_argument("--full", action="store_true",
                        help="run the full-size version (slow on a CPU) instead of the grader's small one")
    parser.add_argument("--timeout", type=int, default=180, help="seconds each cell may take (default 180)")
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path}: not a notebook file (.ipynb)")
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            parser.error(f"{path}: not a readable notebook ({err})")
        if not graded_test_cells(nb):
            parser.error(f"{path}: has no graded test cells; is it one of the course's notebooks?")
        print(f"running {path} in a fresh kernel{'' if args.full else ' (small, grading-size version)'} ...",
              flush=True)
        results = results_from_outputs(run_notebook(path, args.timeout, fast=not args.full))
        print(report(results, f"Self-check of {path.name}"))
        failed |= not all(r.passed for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
