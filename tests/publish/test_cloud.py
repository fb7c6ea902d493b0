"""Colab and Binder, checked offline: what each notebook's setup cell would install and when it does nothing,
the badges, and the files repo2docker builds the course from."""
import json
import stat
import subprocess
import sys

import nbformat
import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from autograder.publish import links
from autograder.publish.layout import ROOT, assignments
from tests.support.requirements import pip_requirements

ASSIGNMENTS = assignments(ROOT)

# Runs a notebook's setup cell in a bare interpreter (-I -S: no site-packages, so no course package and no
# torch), with pip replaced by a recorder and, when asked, a fake Colab and a fake torch with or without a
# GPU.
HARNESS = r'''
import json, subprocess, sys, types
calls = []
subprocess.run = lambda argv, **kw: calls.append(argv) or subprocess.CompletedProcess(argv, 0)
settings = json.loads(sys.argv[2])
if settings["colab"]:
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
if settings["course"]:
    sys.modules["course"] = types.ModuleType("course")
    sys.modules["course"].__spec__ = types.SimpleNamespace(name="course")
torch = types.ModuleType("torch")
torch.cuda = types.SimpleNamespace(is_available=lambda: settings["gpu"], get_device_name=lambda i: "Tesla T4")
sys.modules["torch"] = torch
exec(open(sys.argv[1]).read(), {"__name__": "__main__"})
print("CALLS=" + json.dumps(calls))
'''


def _setup_source(kind, name):
    nb = nbformat.read(ROOT / kind / name / f"{name}.ipynb", as_version=4)
    return next(c for c in nb.cells if c.cell_type == "code").source


def _run_setup(tmp_path, colab, course, gpu=False, name="05_unfreezing"):
    cell = tmp_path / "setup.py"
    cell.write_text(_setup_source("release", name))
    run = subprocess.run([sys.executable, "-I", "-S", "-c", HARNESS, str(cell),
                          json.dumps({"colab": colab, "course": course, "gpu": gpu})],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out, calls = run.stdout.rsplit("CALLS=", 1)
    return out, json.loads(calls)


def test_every_notebook_starts_with_the_same_setup_cell():
    """The first code cell of every source and release notebook is the setup cell for pyproject's
    repository."""
    assert links.problems(ROOT) == [], "run `python -m autograder.publish.links` and `make release`"
    for name in ASSIGNMENTS:
        assert _setup_source("release", name) == links.setup_cell(links.repository(ROOT)), name


def test_setup_cell_on_colab_installs_the_course_from_the_repository(tmp_path):
    """On Colab without the package: one pip install of this repository with the `colab` extra, by the
    kernel's own interpreter; then it names the GPU, or says how to get one."""
    out, calls = _run_setup(tmp_path, colab=True, course=False, gpu=True)
    repo = links.repository(ROOT)
    assert len(calls) == 1, calls
    argv = calls[0]
    assert argv[1:5] == ["-m", "pip", "install", "-q"] \
        and argv[0].endswith(("python", "python3", "python3.11"))
    req = Requirement(argv[5])
    assert req.name == "freezing-course" and req.extras == {"colab"} and req.url == f"git+{repo}"
    assert "GPU: Tesla T4" in out
    out, _ = _run_setup(tmp_path, colab=True, course=False, gpu=False)
    assert "Runtime > Change runtime type" in out


def test_setup_cell_does_nothing_where_the_course_is_installed(tmp_path):
    """Locally, on Binder, on a hub and while grading (package present, no Colab): no install, no output."""
    out, calls = _run_setup(tmp_path, colab=False, course=True)
    assert calls == [] and out == ""
    out, calls = _run_setup(tmp_path, colab=True, course=True, gpu=True)
    assert calls == [] and out.strip() == "GPU: Tesla T4"


def test_colab_extra_adds_only_what_colab_lacks_and_agrees_with_requirements():
    """The `colab` extra never pins torch (Colab's own CUDA build stays) and uses requirements.txt's
    bounds."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    extra = {canonicalize_name(Requirement(r).name): Requirement(r).specifier
             for r in project["optional-dependencies"]["colab"]}
    reqs = pip_requirements()
    assert "torch" not in extra and "torchvision" not in extra
    for name, spec in extra.items():
        assert reqs[name] == spec, f"{name}: colab extra {spec}, requirements.txt {reqs[name]}"
    assert {"torch", "torchvision"} <= {Requirement(d).name for d in project["dependencies"]}


def test_badges_open_each_release_notebook():
    """The README has a Colab and a Binder badge per notebook, pointing at release/ files that exist, with
    Binder opening JupyterLab (urlpath=lab)."""
    readme = (ROOT / "README.md").read_text()
    repo = links.repository(ROOT)
    for name in ASSIGNMENTS:
        assert links.colab_url(repo, name) in readme and links.binder_url(repo, name) in readme
        assert "urlpath=lab/tree/" in links.binder_url(repo, name)
        assert (ROOT / "release" / name / f"{name}.ipynb").is_file()


def test_links_refuse_what_colab_and_binder_cannot_open(tmp_path):
    """A repository that is not github.com/OWNER/NAME is refused with a message."""
    for bad in ("https://gitlab.com/a/b", "github.com/a/b", "https://github.com/a"):
        with pytest.raises(ValueError, match="expected https://github.com/OWNER/NAME"):
            links.colab_url(bad, "01_layers")


def test_binder_builds_the_course_with_repo2docker():
    """repo2docker: environment.yml at the root (no binder/ folder hiding it) names Python 3.11 and
    JupyterLab, postBuild is executable and installs course/, and no other config file would change the
    build."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    names = {Requirement(r).name for r in pip}
    assert "python=3.11" in deps and {"jupyterlab", "torch", "torchvision", "nbgrader", "ipywidgets"} <= names
    post = ROOT / "postBuild"
    assert post.stat().st_mode & stat.S_IXUSR and post.read_text().startswith("#!")
    assert "pip install --no-deps -e ." in post.read_text()
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists()
    for other in ("requirements.txt", "Pipfile", "setup.py", "apt.txt", "runtime.txt", "Dockerfile",
                  "Project.toml"):
        # repo2docker reads requirements.txt only when there is no environment.yml; the others change the
        # build
        assert other == "requirements.txt" or not (ROOT / other).exists(), other
