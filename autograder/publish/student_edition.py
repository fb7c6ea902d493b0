"""Export the student-only edition of the course: what an instructor can publish (a folder or an archive).

    python -m autograder.publish.student_edition dist/freezing-course              # a folder
    # also dist/freezing-course.zip
    python -m autograder.publish.student_edition dist/freezing-course --archive zip

It holds the student notebooks (``release/``), the course package (``course/``), what installs them
(``pyproject.toml``, ``requirements.txt``, ``environment.yml``, ``postBuild``) and a short README; never
``source/``, ``autograder/``, the tests, the gradebook or student data. Before anything is written out, the
export is scanned: a file with an nbgrader solution or hidden-test marker, or with any line of the
instructor's solutions or hidden tests, stops the export (the folder is removed) with the list of leaks. The
cells in which a later notebook gives earlier notebooks' answers (for a class, released after those are due)
are replaced by cells that load the student's own answers (``course.earlier``), and every function in the
edition is tried against every exercise's tests (``autograder.publish.answers``): one that passes them stops
the export too. It also refuses when ``release/`` is out of date with ``source/``. ``--no-check`` skips these
two slower checks, not the scan. A manifest of every file's SHA-256 lets students update their copy later
without losing work (``python -m course.update``).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from course.update import MANIFEST, write_manifest

from .answers import given_by
from .layout import ROOT, assignments

if TYPE_CHECKING:
    import os

SHIPPED = ["release", "course", "pyproject.toml", "requirements.txt", "environment.yml", "postBuild"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")
MARKERS = re.compile(r"(BEGIN|END) (SOLUTION|HIDDEN TESTS)")
MIN_LINE = 24
"""Solution or hidden-test lines shorter than this (``return total``, ``else:``) are too common to be
evidence."""

README = """# Freezing and unfreezing layers for transfer learning: student edition

Notebooks with exercises on what freezing a layer really does in PyTorch. Start with
`release/01_layers/01_layers.ipynb`.

    python3 -m venv .venv && . .venv/bin/activate
    pip install -r requirements.txt && pip install --no-deps -e .
    jupyter lab release/

Every notebook is here at once, so no notebook holds the answers of an earlier one: where notebook 03 or 05
builds on an earlier exercise, it loads the function you wrote there (finish that exercise first).

Check an exercise before you hand it in (visible tests only; hidden tests decide the grade):

    python -m course.selfcheck release/01_layers/01_layers.ipynb     # or, in the notebook: \
from course.selfcheck import check; check()

Update to a newer edition without losing your work (your edited notebooks are kept; new versions go beside \
them):

    python -m course.update path/to/new-edition.zip
"""


class Leak(Exception):
    """The export would reveal solutions or hidden tests; the message lists where."""


def _normalise(text: str) -> str:
    """Lines stripped of indentation, blank ones dropped, joined by newlines: how blocks are compared."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def forbidden_text(root: str | os.PathLike = ROOT) -> tuple[set[str], set[str]]:
    """What must not reach students, from the instructor's notebooks: ``(lines, blocks)``.

    ``lines``: stripped lines of solutions and hidden tests of at least ``MIN_LINE`` characters that the
    student notebooks do not show anyway (a function's signature sits outside the markers). ``blocks``: each
    whole solution or hidden-test region, normalised, when it is at least ``MIN_LINE`` characters long, so
    that a short solution made of short lines is still recognised when pasted whole. Text the instructor's
    notebooks also show outside the markers is public, except the cells in which a later notebook gives
    earlier notebooks' answers (``autograder.publish.answers``): the export replaces those.
    """
    secret, public, blocks, public_cells = set(), set(), set(), []
    for name in assignments(root):
        nb = json.loads((Path(root) / "source" / name / f"{name}.ipynb").read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if given_by(cell):
                # earlier answers that a later notebook gives in a class: never public in this edition
                continue
            region, shown = None, []
            for line in "".join(cell["source"]).splitlines():
                if re.search(r"### BEGIN (SOLUTION|HIDDEN TESTS)", line):
                    region = []
                elif re.search(r"### END (SOLUTION|HIDDEN TESTS)", line):
                    block = _normalise("\n".join(region or []))
                    if len(block) >= MIN_LINE:
                        blocks.add(block)
                    region = None
                else:
                    (region if region is not None else shown).append(line)
                    if len(line.strip()) >= MIN_LINE:
                        (secret if region is not None else public).add(line.strip())
            public_cells.append(_normalise("\n".join(shown)))
    return secret - public, {b for b in blocks if not any(b in text for text in public_cells)}


def scan(folder: str | os.PathLike, root: str | os.PathLike = ROOT) -> list[str]:
    """Problems that make ``folder`` unfit to give students: ``["path: why", ...]``, [] when clean."""
    folder = Path(folder)
    lines, blocks = forbidden_text(root)
    problems = []
    for forbidden in ["source", "autograder", "tests", "benchmarks", "gradebook.db", "submitted",
                      "autograded", "feedback", "nbgrader_config.py"]:
        if (folder / forbidden).exists():
            problems.append(f"{forbidden}: instructor-only, must not be in the student edition")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append(f"{rel}: not a text file; the student edition ships only text")
            continue
        if rel.endswith(".ipynb"):  # notebooks store each line as a JSON string: compare the decoded text
            try:
                nb = json.loads(text)
                text = "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []))
            except ValueError:
                problems.append(f"{rel}: not a valid notebook")
                continue
            problems += [f"{rel}: cell {i} gives the answers of {', '.join(given_by(c))}"
                         for i, c in enumerate(nb.get("cells", [])) if given_by(c)]
        marker = MARKERS.search(text)
        if marker:
            problems.append(f"{rel}: holds the marker {marker.group(0)!r}")
        leaked = sorted({line.strip() for line in text.splitlines()} & lines)
        problems += [f"{rel}: holds a line of the instructor's solutions or hidden tests: {line!r}"
                     for line in leaked]
        flat = _normalise(text)
        problems += [f"{rel}: holds a whole solution or hidden test: {block.splitlines()[0]!r}..."
                     for block in sorted(blocks) if block in flat]
    return problems


def load_your_own(path: str | os.PathLike) -> int:
    """Replace, in notebook ``path``, each cell that gives earlier notebooks' answers by one that loads the
    student's own (``course.earlier``); returns how many cells were replaced."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    count = 0
    for cell in nb["cells"]:
        given = given_by(cell)
        if not given:
            continue
        lines = ["# Your own answers from earlier notebooks, which this notebook uses "
                 "(read from those notebooks:",
                 "# finish their exercises first). In a class, this cell holds reference answers instead.",
                 "from course.earlier import earlier", ""]
        for notebook, names in given.items():
            targets = ", ".join(names) + ("," if len(names) == 1 else "")
            lines.append(f"{targets} = earlier({notebook!r}, {', '.join(map(repr, names))})")
        cell["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
        cell["metadata"]["course"] = {"loads": given}
        cell["outputs"], cell["execution_count"] = [], None
        count += 1
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return count


def export(dest: str | os.PathLike, root: str | os.PathLike = ROOT, check: bool = True) -> Path:
    """Write the student edition to the new folder ``dest``; returns ``dest``.

    Raises:
        FileExistsError: ``dest`` exists (nothing is overwritten).
        RuntimeError: ``release/`` is out of date with ``source/`` (when ``check``).
        Leak: the scan found solutions or hidden tests, or (when ``check``) a function that answers an
            exercise (``autograder.publish.answers``); nothing is written.
    """
    dest, root = Path(dest), Path(root)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; choose a new folder or remove it")
    if check:
        from .release import differences

        stale = differences(root)
        if stale:
            raise RuntimeError("release/ is out of date with source/; run `make release` first:\n  "
                               + "\n  ".join(stale))
    with tempfile.TemporaryDirectory(prefix="student-edition-",
                                     dir=dest.parent if dest.parent.exists() else None) as tmp:
        build = Path(tmp) / dest.name
        build.mkdir()
        for name in SHIPPED:
            src = root / name
            if src.is_dir():
                shutil.copytree(src, build / name, ignore=IGNORED)
            else:
                shutil.copy2(src, build / name)
        (build / "README.md").write_text(README)
        for nb_path in sorted((build / "release").glob("*/*.ipynb")):
            load_your_own(nb_path)
        problems = scan(build, root)
        if check and not problems:
            from .answers import breaches, find

            problems = breaches(find(sorted((build / "release").glob("*/*.ipynb")), root,
                                     course_path=build)[0], edition=True)
        if problems:
            raise Leak("the student edition would reveal instructor material; nothing was written:\n  "
                       + "\n  ".join(problems))
        write_manifest(build)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(build), dest)
    return dest


def archive(folder: str | os.PathLike, kind: str) -> Path:
    """Pack ``folder`` into ``folder.zip`` or ``folder.tar.gz`` (one top-level folder); returns the archive
    path."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if kind == "zip":
        out = folder.with_name(folder.name + ".zip")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                zf.write(path, Path(folder.name) / path.relative_to(folder))
    else:
        out = folder.with_name(folder.name + ".tar.gz")
        with tarfile.open(out, "w:gz") as tf:
            tf.add(folder, arcname=folder.name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="new folder to write the student edition to")
    parser.add_argument("--archive", choices=["zip", "tar.gz"],
                        help="also pack it into DEST.zip or DEST.tar.gz")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the two slow checks: release/ matches source/, and no function answers an "
                             "exercise (the scan for solution lines and markers still runs)")
    args = parser.parse_args(argv)
    try:
        folder = export(args.dest, check=not args.no_check)
    except (FileExistsError, RuntimeError, Leak) as err:
        parser.exit(1, f"error: {err}\n")
    n = sum(1 for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    print(f"student edition: {folder} ({n} files, scanned: no solutions, no hidden tests)")
    if args.archive:
        print(f"archive: {archive(folder, args.archive)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
