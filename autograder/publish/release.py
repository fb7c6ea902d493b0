"""Generate release/ (the student notebooks) from source/ with ``nbgrader generate_assignment``.

    python -m autograder.publish.release            # rewrite release/ from source/
    python -m autograder.publish.release --check    # exit 1 if release/ differs from what source/ gives

Generation runs in a scratch copy of the course, so it never touches your gradebook. Commit release/
together with the source/ change that produced it; CI fails when they disagree.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .layout import ROOT, assignments, nbgrader, scratch_course

if TYPE_CHECKING:
    import os


def generate(dest: str | os.PathLike, root: str | os.PathLike = ROOT) -> list[str]:
    """Write ``dest/<assignment>/`` for every assignment of the course at ``root``; returns their names."""
    names = assignments(root)
    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        course = scratch_course(Path(tmp) / "course", root)
        for name in names:
            nbgrader(["generate_assignment", name, "--force"], cwd=course)
        for name in names:
            shutil.rmtree(dest / name, ignore_errors=True)
            shutil.copytree(course / "release" / name, dest / name)
    for stale in sorted(p for p in dest.iterdir() if p.is_dir() and p.name not in names):
        shutil.rmtree(stale)
    return names


def differences(root: str | os.PathLike = ROOT) -> list[str]:
    """Paths under release/ that differ from a fresh generation (missing, extra or changed); [] when in
    sync."""
    with tempfile.TemporaryDirectory(prefix="release-check-") as tmp:
        fresh = Path(tmp) / "release"
        fresh.mkdir()
        generate(fresh, root)
        return _compare(fresh, Path(root) / "release")


def _compare(fresh: str | os.PathLike, committed: str | os.PathLike, prefix: str = "release") -> list[str]:
    cmp = filecmp.dircmp(fresh, committed, ignore=[".ipynb_checkpoints", "__pycache__", ".gitkeep"])
    out = [f"{prefix}/{n} (missing)" for n in cmp.left_only]
    out += [f"{prefix}/{n} (not generated from source/)" for n in cmp.right_only]
    out += [f"{prefix}/{n} (differs)" for n in cmp.diff_files + cmp.funny_files]
    for sub in cmp.common_dirs:
        out += _compare(Path(fresh) / sub, Path(committed) / sub, f"{prefix}/{sub}")
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if release/ is stale")
    args = parser.parse_args(argv)
    if args.check:
        diff = differences()
        if diff:
            print("release/ is out of date with source/; run `make release` and commit:\n  "
                  + "\n  ".join(diff))
            return 1
        print("release/ is in sync with source/")
        return 0
    (ROOT / "release").mkdir(exist_ok=True)
    names = generate(ROOT / "release")
    print(f"release/ regenerated for {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
