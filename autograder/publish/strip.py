"""Strip outputs from notebooks so source/ stays diff-friendly, keeping nbgrader's metadata.

    python -m autograder.publish.strip source           # strip every notebook under source/ in place
    python -m autograder.publish.strip --check source   # exit 1 if any notebook there is not stripped

Kept: cell sources, cell ids, ``metadata.nbgrader``, ``metadata.tags`` and ``metadata.course`` (a cell that
gives earlier notebooks' answers: ``autograder.publish.answers``) of cells, and the notebook's
kernelspec and language name. Dropped: outputs, execution counts, and everything Jupyter adds on save
(scroll state, widget state, language version, timings).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat

if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Iterator

    from nbformat import NotebookNode

KEEP_CELL_METADATA = ("nbgrader", "tags", "course")


def strip_notebook(nb: NotebookNode) -> NotebookNode:
    """Return ``nb`` (an nbformat NotebookNode, changed in place) with outputs and volatile metadata
    removed."""
    for cell in nb.cells:
        cell.metadata = {k: cell.metadata[k] for k in KEEP_CELL_METADATA if k in cell.metadata}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    meta = {}
    if "kernelspec" in nb.metadata:
        meta["kernelspec"] = nb.metadata["kernelspec"]
    meta["language_info"] = {"name": nb.metadata.get("language_info", {}).get("name", "python")}
    nb.metadata = meta
    return nb


def _notebooks(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        else:
            yield path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="notebooks or folders to search for notebooks")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any is not stripped")
    args = parser.parse_args(argv)
    dirty = []
    for path in _notebooks(args.paths):
        text = path.read_text(encoding="utf-8")
        nb = strip_notebook(nbformat.reads(text, as_version=nbformat.NO_CONVERT))
        stripped = nbformat.writes(nb) + "\n"
        if stripped != text:
            dirty.append(path)
            if not args.check:
                path.write_text(stripped, encoding="utf-8")
    verb = "not stripped (run `make strip`)" if args.check else "stripped"
    for path in dirty:
        print(f"{path}: {verb}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
