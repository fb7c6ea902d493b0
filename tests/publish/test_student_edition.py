"""The student-only edition (autograder/publish/student_edition.py) holds no solution and no hidden test, and
updating a student's copy to a new edition (course/update.py) never loses the student's work."""
import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from autograder.publish import student_edition
from autograder.publish.layout import ROOT
from course import update
from tests.support.grading import strip_markers


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    """The edition exported from this repository, as `python -m autograder.publish.student_edition` writes
    it."""
    dest = tmp_path_factory.mktemp("edition") / "freezing-course"
    run = subprocess.run([sys.executable, "-m", "autograder.publish.student_edition", str(dest), "--no-check",
                          "--archive", "zip"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return dest


def test_edition_holds_the_notebooks_and_package_and_nothing_instructor_only(edition):
    """Every release notebook and the course package are there; source/, autograder/, tests/ and config are
    not."""
    for name in ("01_layers", "05_unfreezing"):
        assert (edition / "release" / name / f"{name}.ipynb").is_file()
    assert (edition / "course" / "selfcheck.py").is_file() and (edition / "course" / "update.py").is_file()
    for absent in ("source", "autograder", "tests", "benchmarks", "nbgrader_config.py", "Makefile"):
        assert not (edition / absent).exists(), absent
    assert not list(edition.rglob("__pycache__"))


def test_scan_finds_nothing_in_the_edition_and_its_archive(edition, tmp_path):
    """The independent scan: no marker and no line of any source solution or hidden test, in the folder or in
    the archive unpacked."""
    assert student_edition.scan(edition) == []
    with zipfile.ZipFile(edition.with_name(edition.name + ".zip")) as zf:
        zf.extractall(tmp_path)
    assert student_edition.scan(tmp_path / edition.name) == []


def test_scan_catches_a_solution_pasted_anywhere(edition, tmp_path):
    """A solution hidden in a course module, a hidden test in a notebook, a marker and an instructor folder
    are each reported: the scan is not a tautology."""
    copy = tmp_path / "copy"
    shutil.copytree(edition, copy)
    source = json.loads((ROOT / "source" / "04_batchnorm" / "04_batchnorm.ipynb").read_text())
    solution = next("".join(c["source"]) for c in source["cells"]
                    if c["metadata"].get("nbgrader", {}).get("grade_id") == "set_bn_eval_solution")
    hidden = next("".join(c["source"]) for c in source["cells"]
                  if c["metadata"].get("nbgrader", {}).get("grade_id") == "set_bn_eval_hidden")
    (copy / "course" / "helpers.py").write_text(strip_markers(solution))
    nb_path = copy / "release" / "01_layers" / "01_layers.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"][-1]["source"] = strip_markers(hidden).splitlines(keepends=True)
    nb_path.write_text(json.dumps(nb))
    (copy / "notes.txt").write_text("### BEGIN SOLUTION\n")
    (copy / "source").mkdir()
    problems = student_edition.scan(copy)
    assert any(p.startswith("course/helpers.py: holds a whole solution") for p in problems), problems
    assert any(p.startswith("release/01_layers/01_layers.ipynb: holds a line") for p in problems), problems
    assert any(p.startswith("notes.txt: holds the marker") for p in problems), problems
    assert any(p.startswith("source: instructor-only") for p in problems), problems


def test_export_refuses_to_overwrite_and_to_leak(tmp_path, monkeypatch):
    """An existing folder is never overwritten; an export that would leak is refused and leaves nothing
    behind."""
    existing = tmp_path / "there"
    existing.mkdir()
    with pytest.raises(FileExistsError):
        student_edition.export(existing, check=False)
    monkeypatch.setattr(student_edition, "README", "### BEGIN SOLUTION\n")
    with pytest.raises(student_edition.Leak, match="README.md: holds the marker"):
        student_edition.export(tmp_path / "leaky", check=False)
    assert not (tmp_path / "leaky").exists()


# ---- updating a student's copy -------------------------------------------------------------------------

def _edition(folder, files):
    folder.mkdir(parents=True)
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    update.write_manifest(folder)
    return folder


V1 = {"release/01/01.ipynb": "one v1", "release/02/02.ipynb": "two v1", "release/03/03.ipynb": "three v1",
      "course/a.py": "a v1", "course/gone.py": "gone v1"}
V2 = {"release/01/01.ipynb": "one v2", "release/02/02.ipynb": "two v2", "release/03/03.ipynb": "three v2",
      "course/a.py": "a v1", "release/06/06.ipynb": "six v2"}


def test_update_keeps_edited_work_and_brings_the_rest(tmp_path):
    """Edited notebook kept, its new version beside it; deleted one restored; untouched one updated; new one
    added; a file the edition dropped and the student's own files left alone; updating again changes
    nothing."""
    student = tmp_path / "student"
    shutil.copytree(_edition(tmp_path / "v1", V1), student)
    (student / "release/01/01.ipynb").write_text("one v1 + my answers")
    (student / "release/02/02.ipynb").unlink()
    (student / "my_notes.md").write_text("mine")
    v2 = _edition(tmp_path / "v2", V2)

    plan = update.update(v2, student)
    assert plan.kept == ["release/01/01.ipynb"] \
        and plan.beside == {"release/01/01.ipynb": "release/01/01.new.ipynb"}
    assert plan.restored == ["release/02/02.ipynb"]
    assert sorted(plan.replaced) == ["release/03/03.ipynb"]
    assert plan.added == ["release/06/06.ipynb"] and plan.dropped == ["course/gone.py"]
    assert (student / "release/01/01.ipynb").read_text() == "one v1 + my answers"
    assert (student / "release/01/01.new.ipynb").read_text() == "one v2"
    assert (student / "release/02/02.ipynb").read_text() == "two v2"
    assert (student / "release/03/03.ipynb").read_text() == "three v2"
    assert (student / "release/06/06.ipynb").read_text() == "six v2"
    assert (student / "course/gone.py").read_text() == "gone v1" \
        and (student / "my_notes.md").read_text() == "mine"

    before = update.manifest(student)
    again = update.update(v2, student)
    assert update.manifest(student) == before and not again.added + again.restored + again.replaced
    # the same copy, not a second one
    assert again.beside == {"release/01/01.ipynb": "release/01/01.new.ipynb"}


def test_update_without_a_manifest_keeps_every_differing_file(tmp_path):
    """A copy with no manifest (made some other way): every file that differs is treated as the student's."""
    student = tmp_path / "student"
    shutil.copytree(_edition(tmp_path / "v1", V1), student)
    (student / update.MANIFEST).unlink()
    plan = update.update(_edition(tmp_path / "v2", V2), student)
    assert sorted(plan.kept) == ["release/01/01.ipynb", "release/02/02.ipynb", "release/03/03.ipynb"]
    assert (student / "release/03/03.ipynb").read_text() == "three v1"


def test_update_cli_from_an_archive_and_dry_run(tmp_path):
    """`python -m course.update EDITION.zip --into DIR`: --dry-run changes nothing, the real run updates; a
    folder that is not an edition is refused with a message."""
    student = tmp_path / "student"
    shutil.copytree(_edition(tmp_path / "v1", V1), student)
    zipped = student_edition.archive(_edition(tmp_path / "v2", V2), "zip")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "course.update", *map(str, args)], cwd=ROOT,
                              capture_output=True, text=True)

    before = update.manifest(student)
    dry = cli(zipped, "--into", student, "--dry-run")
    assert dry.returncode == 0 and "would update" in dry.stdout and "added: release/06/06.ipynb" in dry.stdout
    assert update.manifest(student) == before
    real = cli(zipped, "--into", student)
    assert real.returncode == 0 and (student / "release/06/06.ipynb").read_text() == "six v2"
    bad = cli(tmp_path / "student" / "course", "--into", student)
    assert bad.returncode == 2 and "not a student edition" in bad.stderr


# ---- the edition loads the student's own earlier answers ----------------------------------------------

def test_edition_cells_load_the_students_own_earlier_answers(edition, tmp_path, monkeypatch):
    """Notebook 05's given cell became calls to course.earlier: run in a copy of the course's folders where
    01, 02 and 03 are solved, it returns working functions; with 02 unsolved (the release's stubs) it says to
    finish that exercise first."""
    nb = json.loads((edition / "release" / "05_unfreezing" / "05_unfreezing.ipynb").read_text())
    cell = next(c for c in nb["cells"] if c["metadata"].get("course", {}).get("loads"))
    source = "".join(cell["source"])
    assert "def " not in source and "earlier(" in source
    for name in ("01_layers", "02_freezing", "03_optimizer"):
        (tmp_path / "solved" / name).mkdir(parents=True)
        shutil.copy(ROOT / "source" / name / f"{name}.ipynb", tmp_path / "solved" / name)  # the solutions
    (tmp_path / "solved" / "05_unfreezing").mkdir()
    monkeypatch.chdir(tmp_path / "solved" / "05_unfreezing")
    space = {}
    exec(source, space)  # noqa: S102  (the edition's own cell, run as the student's kernel would)
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    space["freeze_to"](list(net), 2)
    assert [layer.weight.requires_grad for layer in net] == [False, False, True]
    assert space["even_mults"](1e-4, 1e-2, 3) == pytest.approx([1e-4, 1e-3, 1e-2])
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        net[2].bias.add_(1.0)
    assert space["changed_params"](before, net) == ["2.bias"]
    net(torch.ones(1, 2)).sum().backward()
    assert set(space["grad_norms"](net)) == {n for n, p in net.named_parameters() if p.requires_grad}

    shutil.copy(edition / "release" / "02_freezing" / "02_freezing.ipynb",
                tmp_path / "solved" / "02_freezing")
    with pytest.raises(NotImplementedError, match="freeze_to in .*02_freezing.ipynb is not written yet"):
        exec(source, {})  # noqa: S102  (the same cell, with 02 unsolved)


def test_scan_refuses_a_given_cell_left_in_the_edition(edition, tmp_path):
    """A cell that gives earlier answers (a class's release) is reported if an edition still holds one."""
    copy = tmp_path / "copy"
    shutil.copytree(edition, copy)
    release = json.loads((ROOT / "release" / "03_optimizer" / "03_optimizer.ipynb").read_text())
    (copy / "release" / "03_optimizer" / "03_optimizer.ipynb").write_text(json.dumps(release))
    problems = student_edition.scan(copy)
    assert any("gives the answers of 02_freezing" in p for p in problems), problems
    assert any("holds a whole solution" in p for p in problems), problems  # its text, too


def test_a_function_taken_from_an_earlier_notebook_finds_what_that_notebook_loaded(edition, tmp_path,
                                                                                    monkeypatch):
    """Notebook 06 takes 05's SnapshotLoader, which calls the changed_params that 05's edition cell loads from
    02: with 01 to 05 solved in the edition's form, 06's cell gives a working SnapshotLoader; with 02
    unsolved, loading says to finish 02 (not a NameError in the middle of an exercise's test)."""
    nb = json.loads((edition / "release" / "06_which_layers" / "06_which_layers.ipynb").read_text())
    source = "".join(next(c for c in nb["cells"] if c["metadata"].get("course", {}).get("loads"))["source"])
    solved = tmp_path / "solved"
    # the student's answers: the edition's notebooks with the source's solution cells put in (06 loads from
    # 02, 04 and 05; 05's own cell loads from 01, 02 and 03)
    for name in ("01_layers", "02_freezing", "03_optimizer", "04_batchnorm", "05_unfreezing"):
        shutil.copytree(edition / "release" / name, solved / name)
        mine = json.loads((solved / name / f"{name}.ipynb").read_text())
        answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"]
                   for c in json.loads((ROOT / "source" / name / f"{name}.ipynb").read_text())["cells"]
                   if c["metadata"].get("nbgrader", {}).get("solution")}
        for c in mine["cells"]:
            grade_id = c["metadata"].get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                c["source"] = answers[grade_id]
        (solved / name / f"{name}.ipynb").write_text(json.dumps(mine))
    (solved / "06_which_layers").mkdir()
    monkeypatch.chdir(solved / "06_which_layers")
    space = {}
    exec(source, space)  # noqa: S102  (the edition's own cell, run as the student's kernel would)
    net, groups, batches = space["tiny_groups"]()
    loader = space["SnapshotLoader"](net, batches)
    list(loader)
    with __import__("torch").no_grad():
        net[4].bias.add_(1.0)
    assert loader.changed_per_epoch() == [["4.bias"]]

    shutil.copy(edition / "release" / "02_freezing" / "02_freezing.ipynb", solved / "02_freezing")
    with pytest.raises(NotImplementedError, match="changed_params in .*02_freezing.ipynb is not written yet"):
        exec(source, {})  # noqa: S102  (the same cell, with 02 unsolved)
