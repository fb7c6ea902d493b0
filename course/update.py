"""Update your copy of the course to a new edition without losing any of your work.

    python -m course.update NEW_EDITION     # NEW_EDITION: a folder, .zip or .tar.gz of the student edition
    python -m course.update NEW_EDITION --into ~/freezing-course --dry-run

Each edition carries a manifest (``.course-manifest.json``: every file it ships and its SHA-256). Against the
manifest of the edition you have, each file of the new edition is:

- **added** when you do not have it, and **restored** when you deleted it (as nbgitpuller does);
- **replaced** when your copy is exactly what the last edition shipped (you never edited it);
- **kept** when you edited it: your file stays as it is and the new version is written beside it as
  ``NAME.new.ipynb`` (``NAME.new-2.ipynb``... if that name is taken), so you can compare and copy across;
- left alone when it is already identical.

Nothing is ever deleted or overwritten that you changed, including files the new edition no longer has.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = ".course-manifest.json"


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(folder: str | Path, exclude: Sequence[str] = (MANIFEST,)) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``folder`` (caches and checkpoints left
    out)."""
    folder = Path(folder)
    skip_dirs = {"__pycache__", ".ipynb_checkpoints", ".git"}
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not skip_dirs & set(rel.parts) and rel.as_posix() not in exclude:
            out[rel.as_posix()] = sha256(path)
    return out


def write_manifest(folder: str | Path, files: dict[str, str] | None = None) -> None:
    """Write ``folder/.course-manifest.json`` listing ``files`` (default: what ``folder`` holds now)."""
    files = manifest(folder) if files is None else files
    (Path(folder) / MANIFEST).write_text(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")


def read_manifest(folder: str | Path) -> dict[str, str]:
    """The files a folder's manifest lists, ``{}`` when it has none (a copy made some other way)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text())["files"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path} is damaged ({err}); delete it and every edited file will be kept"
        ) from None


@dataclass
class Plan:
    """What an update does, file by file (relative paths). ``beside`` maps a kept file to where its new
    version goes; ``shipped`` is the new edition's manifest, recorded in the student's folder once
    applied."""

    added: list = field(default_factory=list)
    restored: list = field(default_factory=list)
    replaced: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    beside: dict = field(default_factory=dict)
    unchanged: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    shipped: dict = field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        for label, paths in [("added", self.added), ("restored (you had deleted it)", self.restored),
                             ("updated", self.replaced),
                             ("no longer in the course, left as you have it", self.dropped)]:
            lines += [f"  {label}: {p}" for p in paths]
        lines += [f"  kept your edited {p}; the new version is {self.beside[p]}" for p in self.kept]
        lines.append(f"  {len(self.unchanged)} file(s) already up to date")
        return "\n".join(lines)


def _beside(dest: Path, rel: str, new_hash: str) -> str:
    """Where the new version of the edited file ``rel`` goes: a free ``NAME.new*`` name, or one that
    already holds exactly this version (so updating twice does not pile up copies)."""
    path = Path(rel)
    stem, suffix = path.stem, path.suffix
    for n in range(1, 1000):
        name = f"{stem}.new{'' if n == 1 else f'-{n}'}{suffix}"
        candidate = path.with_name(name)
        there = dest / candidate
        if not there.exists() or (there.is_file() and sha256(there) == new_hash):
            return candidate.as_posix()
    raise RuntimeError(f"too many new versions of {rel} beside it; compare and remove some")


def plan(new: str | Path, dest: str | Path) -> Plan:
    """Decide, without changing anything, how edition folder ``new`` updates the student's folder
    ``dest``."""
    new, dest = Path(new), Path(dest)
    shipped_new = read_manifest(new) or manifest(new)
    shipped_old = read_manifest(dest)
    p = Plan(shipped=shipped_new)
    for rel, new_hash in sorted(shipped_new.items()):
        target = dest / rel
        if not target.exists():
            (p.restored if rel in shipped_old else p.added).append(rel)
            continue
        mine = sha256(target) if target.is_file() else None
        if mine == new_hash:
            p.unchanged.append(rel)
        elif mine is not None and shipped_old.get(rel) == mine:
            p.replaced.append(rel)
        else:
            p.kept.append(rel)  # edited by the student (or not a file): keep it, write the new one beside
            p.beside[rel] = _beside(dest, rel, new_hash)
    p.dropped = sorted(rel for rel in shipped_old if rel not in shipped_new and (dest / rel).exists())
    return p


def _copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a temporary file in the same folder, so a crash never leaves half a
    file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(p: Plan, new: str | Path, dest: str | Path) -> None:
    """Carry out plan ``p`` from edition folder ``new`` into ``dest``, then record the new edition's
    manifest."""
    new, dest = Path(new), Path(dest)
    for rel in p.added + p.restored + p.replaced:
        _copy(new / rel, dest / rel)
    for rel in p.kept:
        _copy(new / rel, dest / p.beside[rel])
    write_manifest(dest, p.shipped)


def _unpack(edition: str | Path, tmp: str | Path) -> Path:
    """The edition as a folder: ``edition`` itself, or an archive (.zip, .tar.gz) unpacked under
    ``tmp``."""
    edition = Path(edition)
    if edition.is_dir():
        return edition
    if not edition.is_file():
        raise FileNotFoundError(f"{edition}: no such folder or archive")
    out = Path(tmp) / "edition"
    if zipfile.is_zipfile(edition):
        with zipfile.ZipFile(edition) as zf:
            zf.extractall(out)
    elif tarfile.is_tarfile(edition):
        with tarfile.open(edition) as tf:
            tf.extractall(out, filter="data")
    else:
        raise ValueError(f"{edition}: not a folder, .zip or .tar.gz")
    entries = [p for p in out.iterdir()]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else out


def update(edition: str | Path, dest: str | Path, dry_run: bool = False) -> Plan:
    """Update ``dest`` from ``edition`` (folder or archive); returns the Plan (applied unless
    ``dry_run``)."""
    dest = Path(dest)
    if not dest.is_dir():
        raise FileNotFoundError(f"{dest}: no such folder (your copy of the course)")
    with tempfile.TemporaryDirectory(prefix="course-update-") as tmp:
        new = _unpack(edition, tmp)
        if not (new / MANIFEST).is_file():
            raise ValueError(f"{edition}: not a student edition of the course (no {MANIFEST})")
        if new.resolve() == dest.resolve():
            raise ValueError("the new edition and your copy are the same folder")
        p = plan(new, dest)
        if not dry_run:
            apply(p, new, dest)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("edition", help="the new student edition: a folder, .zip or .tar.gz")
    parser.add_argument("--into", default=".", help="your copy of the course (default: this folder)")
    parser.add_argument("--dry-run", action="store_true", help="only say what would happen")
    args = parser.parse_args(argv)
    try:
        p = update(args.edition, args.into, dry_run=args.dry_run)
    except (OSError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(("would update" if args.dry_run else "updated") + f" {Path(args.into).resolve()}:\n{p.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
