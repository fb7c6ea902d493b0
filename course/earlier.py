"""Your own answers from an earlier notebook, for a later notebook that builds on them.

In a class, each assignment that needs earlier answers (03 uses 02's ``freeze_to``) brings the reference
answers in a cell of its own, released after those exercises are due. The self-study edition hands out
every notebook at once, so it holds no answers: that cell calls ``earlier`` instead, which reads your earlier
notebook and returns the functions you wrote there. Used by the given cells of notebooks 03, 05 and 06 in
that edition.

    freeze_to, changed_params = earlier("02_freezing", "freeze_to", "changed_params")

Only the parts of the notebook that define things run: its ``import`` statements, functions and classes,
assignments that call nothing (``NORM_TYPES = (...)``; one that needs a name nothing defined is skipped), and
its own ``earlier`` loads (so that 05's ``SnapshotLoader``, taken by 06, finds the ``changed_params`` that
05 loaded from 02), from every code cell, in order. Nothing it trains or plots runs again.
"""
import ast
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

_SAFE = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)


def _loads_earlier(node: ast.stmt) -> bool:
    """``a, b = earlier("02_freezing", "a", "b")``: the self-study edition's cell that loads a notebook's own
    earlier answers. Run, so that a function of that notebook which uses them (05's ``SnapshotLoader`` calls
    02's ``changed_params``) finds them when a later notebook (06) takes it."""
    return (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "earlier")


def _defines_only(node: ast.stmt) -> bool:
    """Imports, definitions, assignments whose value calls nothing, and the edition's ``earlier`` loads."""
    if isinstance(node, _SAFE) or _loads_earlier(node):
        return True
    return (isinstance(node, (ast.Assign, ast.AnnAssign))
            and not any(isinstance(n, ast.Call) for n in ast.walk(node)))


def _is_stub(node: ast.FunctionDef) -> bool:
    """True for a function whose body is only a docstring and ``raise NotImplementedError``: the release's
    stub."""
    body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    return (len(body) == 1 and isinstance(body[0], ast.Raise) and body[0].exc is not None
            and "NotImplementedError" in ast.unparse(body[0].exc))


def definitions(path: str | Path) -> tuple[dict[str, Any], set[str]]:
    """Run the definitions of notebook ``path`` (module docstring) in a fresh namespace; returns
    ``(namespace, stubs)``, ``stubs`` the names of functions still left as the release's
    ``raise NotImplementedError``. Also used by the benchmarks to read the reference answers from the
    instructor's notebooks."""
    from IPython.core.inputtransformer2 import TransformerManager

    path = Path(path)
    space, stubs = {"__name__": f"notebook_{path.stem}"}, set()
    transform = TransformerManager().transform_cell
    for index, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse(transform("".join(cell["source"])))
        except SyntaxError:
            continue  # a cell still being written: whatever it defines is not there
        for node in tree.body:
            if not _defines_only(node):
                continue
            if isinstance(node, ast.FunctionDef):
                (stubs.add if _is_stub(node) else stubs.discard)(node.name)
            if _loads_earlier(node):   # from the notebooks beside this one, whatever the current folder
                node.value.keywords = [k for k in node.value.keywords if k.arg not in ("folder", "quiet")] + [
                    ast.keyword("folder", ast.Constant(str(path.resolve().parent.parent))),
                    ast.keyword("quiet", ast.Constant(True))]
                ast.fix_missing_locations(node)
            try:
                code = compile(ast.Module([node], []), f"{path.name}, cell {index}", "exec")
                exec(code, space)  # noqa: S102  (only the notebook's imports and definitions, as above)
            except Exception:  # noqa: BLE001 - a constant computed from what did not run (FAST): not needed
                if not isinstance(node, (ast.Assign, ast.AnnAssign)) or _loads_earlier(node):
                    raise   # an earlier answer not written yet: say so now, not as a NameError later
    return space, stubs


def earlier(notebook: str, *names: str, folder: str | Path | None = None,
            quiet: bool = False) -> tuple[Callable[..., Any], ...]:
    """The functions ``names`` from your notebook ``notebook`` (e.g. ``"02_freezing"``), as a tuple in that
    order.

    Args:
        folder: the folder holding the notebooks' folders; by default the parent of the current one (a
            notebook runs in its own folder, ``release/05_unfreezing``, so its siblings are
            ``release/02_freezing`` ...).
        quiet: do not print where each function came from.

    Raises:
        FileNotFoundError: ``folder/notebook/notebook.ipynb`` is not there.
        NameError: the notebook defines no such function.
        NotImplementedError: the function is still the exercise's stub: finish that exercise first.
    """
    path = Path(folder if folder is not None else Path.cwd().parent) / notebook / f"{notebook}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"this notebook uses your {', '.join(names)} from notebook {notebook}, read "
                                f"from {path}, which is not there: keep the course's notebooks side by side "
                                "in their folders")
    space, stubs = definitions(path)
    out = []
    for name in names:
        fn = space.get(name)
        if not callable(fn):
            raise NameError(f"{path} defines no function {name!r}: "
                            "this notebook needs the one you wrote there")
        if name in stubs:
            raise NotImplementedError(f"{name} in {path} is not written yet: finish that exercise first")
        out.append(fn)
    if not quiet:
        print(f"from your notebook {notebook}: {', '.join(names)}")
    return tuple(out)
