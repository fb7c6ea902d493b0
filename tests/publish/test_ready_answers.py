"""No exercise's answer where a student reads it before the exercise is due (the rule:
autograder/publish/answers.py).

One run of the check (about a minute: every source notebook in grading mode, every candidate tried at every
hidden test) covers the repository's course package and release notebooks, an exported student edition, and
answers planted where the check must find them: rewritten under other names, so that no line matches a
solution.
"""
import filecmp
import json
import shutil
import subprocess
import sys

import pytest

from autograder.publish import answers
from autograder.publish.layout import ROOT, assignments

PLANTED_COURSE = '''"""A module that looks harmless."""


def frozen_prefix(layer_groups, count):
    """Slice semantics, written another way."""
    cut = len(range(len(layer_groups))[:count])
    for position, group in enumerate(layer_groups):
        for param in group.parameters():
            param.requires_grad = position >= cut
'''

SPREAD = '''def spread(a, b, k):
    import numpy as np
    return [float(v) for v in np.geomspace(a, b, k)] if k > 1 else [float(b)]
'''

CHANGED = '''def changed_params(before, model):
    return [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
'''


def _notebook(path, cells):
    """Write a notebook of code cells: ``[(source, given or None)]``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "execution_count": None, "outputs": [], "source": source,
         "metadata": {"course": {"given": given}} if given else {}} for source, given in cells]}
    path.write_text(json.dumps(nb))
    return path


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """``(findings, checked exercises, planted folder)`` from one run over the repository, an exported edition
    and the planted answers."""
    tmp = tmp_path_factory.mktemp("answers")
    edition = tmp / "edition" / "freezing-course"
    run = subprocess.run([sys.executable, "-m", "autograder.publish.student_edition", str(edition),
                          "--no-check"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    same = filecmp.dircmp(ROOT / "course", edition / "course", ignore=["__pycache__"])
    assert not (same.left_only + same.right_only + same.diff_files), \
        "the edition ships the course package as is"

    planted = tmp / "planted"
    shutil.copytree(ROOT / "course", planted / "course", ignore=shutil.ignore_patterns("__pycache__"))
    (planted / "course" / "helpers.py").write_text(PLANTED_COURSE)
    notebooks = [_notebook(planted / "release" / "01_layers" / "extra.ipynb",
                           [(PLANTED_COURSE.split('\n\n\n')[1], {"02_freezing": ["frozen_prefix"]})]),
                 _notebook(planted / "release" / "04_batchnorm" / "extra.ipynb",
                           [(CHANGED, {"02_freezing": ["changed_params"]}), (SPREAD, None),
                            ("from timm.layers import freeze_batch_norm_2d", None)])]
    sets = [("repo:", p) for p in sorted((ROOT / "release").glob("*/*.ipynb"))]
    sets += [("edition:", p) for p in sorted((edition / "release").glob("*/*.ipynb"))]
    sets += [("planted:", p) for p in notebooks]
    findings, exercises = answers.find(sets, course_path=planted)
    return findings, exercises


def test_every_exercise_is_checked_and_its_reference_recognised(checked):
    """Each function a solution cell defines was checked, which means its own reference passed its tests in
    the check's harness (else the run stops): a harness that recognised nothing would find nothing."""
    _, exercises = checked
    for name in assignments():
        nb = json.loads((ROOT / "source" / name / f"{name}.ipynb").read_text())
        solved = sorted(n for names, _, _ in answers.exercises(nb).values() for n in names)
        assert sorted(exercises[name]) == solved and solved, name
    assert sum(map(len, exercises.values())) == 23


def test_the_course_package_answers_nothing(checked):
    """course/ (installed with every assignment): the only function that answers an exercise is the planted
    one."""
    findings, _ = checked
    from_course = sorted((f.candidate, f.exercise) for f in findings if f.candidate.startswith("course/"))
    assert from_course == [("course/helpers.py:frozen_prefix", "freeze_to")], from_course


def test_release_gives_earlier_answers_only_in_given_cells(checked):
    """release/NN: answers of earlier notebooks only in cells marked as given (03 and 05 have them), none of
    its own or a later notebook's exercises."""
    findings, _ = checked
    assert answers.breaches(findings, label="repo:") == []
    given = {(f.candidate.split("#")[0], f.exercise) for f in findings if f.candidate.startswith("repo:")}
    assert ("repo:release/03_optimizer/03_optimizer.ipynb", "freeze_to") in given
    assert ("repo:release/05_unfreezing/05_unfreezing.ipynb", "even_mults") in given


def test_the_student_edition_gives_no_answer_at_all(checked):
    """Every notebook at once: the given cells were replaced by ones that load the student's own answers."""
    findings, _ = checked
    assert [f for f in findings if f.candidate.startswith("edition:")] == []


def test_planted_answers_are_found_and_judged(checked):
    """A later notebook's given cell passes; an earlier notebook's given cell, an answer outside a given cell
    (rewritten with numpy) and an imported library function that answers an exercise are breaches."""
    findings, _ = checked
    found = sorted(answers.breaches(findings, label="planted:"))
    assert len(found) == 3, found
    assert found[0].startswith("planted:release/01_layers/extra.ipynb#0:frozen_prefix "
                               "answers 02_freezing's freeze_to")
    assert found[1].startswith("planted:release/04_batchnorm/extra.ipynb#1:spread "
                               "answers 03_optimizer's even_mults")
    assert found[2].startswith("planted:release/04_batchnorm/extra.ipynb#2:timm.layers.freeze_batch_norm_2d "
                               "answers 04_batchnorm's to_frozen_bn")
    allowed = [f for f in findings
               if f.candidate == "planted:release/04_batchnorm/extra.ipynb#0:changed_params"]
    assert [f.exercise for f in allowed] == ["changed_params"]
