"""The wiring a reader finds in imports: every module the grader starts with ``python -m``, preloads in
nbgrader's fork server or names in nbgrader's configuration imports, and is named through an imported module,
not typed as a string; and the packages have no import cycle."""
import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("course", "autograder")


def _sources():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dash_m_targets(tree):
    """(line, target node) for every list or tuple display with ``"-m"`` followed by an element."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            for i, element in enumerate(node.elts[:-1]):
                if isinstance(element, ast.Constant) and element.value == "-m":
                    yield node.lineno, node.elts[i + 1]


def test_no_dash_m_target_of_ours_is_a_string():
    """``python -m X`` with X one of our modules names X through the imported module (``module.__name__``),
    so a reader who follows imports finds what runs in the other process; third-party targets must be
    installed."""
    typed = []
    for path in _sources():
        for line, target in _dash_m_targets(ast.parse(path.read_text())):
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                if target.value.split(".")[0] in PACKAGES:
                    typed.append(f"{path.relative_to(ROOT)}:{line}: {target.value}")
                else:
                    assert importlib.util.find_spec(target.value), (f"{path}:{line}: -m {target.value} "
                                                                    "is not installed")
    assert not typed, "module names typed as strings after -m:\n" + "\n".join(typed)


def test_config_strings_name_no_module_of_ours():
    """nbgrader configuration written as Python text (``autograder.grade.worker.WORKER_CONFIG``) imports our
    modules through a placeholder filled from the imported module, never a typed name."""
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" in node.value
                    and id(node) not in docstrings):
                for match in re.finditer(r"^\s*(?:from|import) ((?:course|autograder)\.[\w.]+)",
                                         node.value, re.M):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {match.group(1)}")
    assert not found, "our modules imported by name inside configuration text:\n" + "\n".join(found)


def test_every_started_or_preloaded_module_imports(tmp_path):
    """What the grader starts (the kernelspec's launcher, pre-started kernels, the kernel's boot, the judge)
    and what nbgrader's fork server preloads all import, under the names the grader uses."""
    import json

    from autograder.grade import nbgrader_server, worker
    from autograder.judge import judged_execute, kernel_boot, launch, process
    from autograder.sandbox import launcher, warm

    started = {launcher._MODULE, warm._MODULE, kernel_boot.__name__, process.__name__,
               *nbgrader_server.PRELOAD}
    for name in started:
        assert importlib.import_module(name).__name__ == name
    spec = json.loads((launcher.write_kernelspec(tmp_path, tmp_path / "c.json") / "kernels"
                       / launcher.KERNEL_NAME / "kernel.json").read_text())
    assert spec["argv"][1:3] == ["-m", "autograder.sandbox.launcher"]
    config = worker.WORKER_CONFIG.format(judged_execute=judged_execute.__name__, kernel="k", cell_s=1,
                                         runtime="r", output=1, judge="j", uid=-1, results="x")
    assert f"from {judged_execute.__name__} import JudgedExecute" in config
    assert launch.process is process


def _top_level_imports(path, name):
    """The modules that ``path`` (module ``name``) imports, at its top or inside its functions (an import
    put inside a function to dodge a cycle is still a cycle); not those under ``if TYPE_CHECKING``."""
    out = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]

    def visit(body):
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                out.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                out.add(base)
                out.update(f"{base}.{alias.name}" for alias in node.names)
            else:
                visit([child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)])

    visit(ast.parse(path.read_text()).body)
    return out


def test_no_import_cycle():
    """Neither package has modules that import each other, directly or round a longer loop."""
    modules = {_module_name(p): p for p in _sources()}
    graph = {name: {m for m in _top_level_imports(path, name) if m in modules and m != name}
             for name, path in modules.items()}
    cycles, state = [], {}

    def walk(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                walk(nxt, trail + [nxt])
        state[node] = "done"

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports(package):
    """Every module of the package imports on its own (a moved module's old name left behind fails here)."""
    for path in sorted((ROOT / package).rglob("*.py")):
        name = _module_name(path)
        if name.endswith("__main__") or "/hub/" in str(path):
            continue  # __main__ runs the command; hub/ holds configuration files JupyterHub and nbgrader load
        importlib.import_module(name)
