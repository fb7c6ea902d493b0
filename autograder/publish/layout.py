"""The course layout in one place: where assignments live and how nbgrader is run on them."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the kernel's launcher stays light
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ROOT = Path(__file__).resolve().parents[2]
"""The repository root, which is also the nbgrader course root."""

ASSIGNMENT_RE = re.compile(r"^\d\d_[a-z0-9_]+$")


class LayoutError(Exception):
    """source/ does not follow the course layout (source/<NN_name>/<NN_name>.ipynb and nothing else)."""


def assignments(root: str | os.PathLike = ROOT) -> list[str]:
    """Names of the assignments under ``root/source``, sorted (``["01_layers", ...]``).

    Raises:
        LayoutError: a folder is misnamed, or holds anything but its one notebook. nbgrader releases every
            file it finds there to students and copies it over submissions, so nothing else may live there.
    """
    source = Path(root) / "source"
    names = []
    for folder in sorted(p for p in source.iterdir() if not p.name.startswith(".")):
        if not folder.is_dir() or not ASSIGNMENT_RE.match(folder.name):
            raise LayoutError(f"{folder}: expected folders named like 01_layers in source/")
        files = sorted(p.name for p in folder.iterdir()
                       if p.name not in {".ipynb_checkpoints", "__pycache__"})
        if files != [f"{folder.name}.ipynb"]:
            raise LayoutError(
                f"{folder}: must hold exactly {folder.name}.ipynb, found {files}. nbgrader releases every "
                "file in an assignment folder to students; put helpers in course/ instead."
            )
        names.append(folder.name)
    return names


def nbgrader_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: this process's environment) for running nbgrader and its kernels.

    nbgrader runs `alembic` from PATH, and the "python3" kernel resolves `python` from PATH: this
    interpreter's bin goes first, so an unactivated virtual environment still grades with its own packages.
    """
    out = dict(os.environ if env is None else env)
    out["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), out.get("PATH", "")])
    return out


def nbgrader(args: Sequence[str], cwd: str | os.PathLike, env: Mapping[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``nbgrader ARGS`` with this interpreter in course directory ``cwd``.

    Returns the CompletedProcess with text stdout and stderr. Raises RuntimeError (with nbgrader's output)
    when it exits non-zero and ``check`` is true.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=nbgrader_env(env), capture_output=True,
        text=True
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return proc


def scratch_course(dest: str | os.PathLike, root: str | os.PathLike = ROOT) -> Path:
    """Copy the course's config and source/ into ``dest`` (a new course root); returns ``dest`` as a Path.

    Lets release generation and grading tests run nbgrader without touching the real gradebook.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path(root) / "nbgrader_config.py", dest / "nbgrader_config.py")
    shutil.copytree(Path(root) / "source", dest / "source",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dest
