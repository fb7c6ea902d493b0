"""requirements.txt and environment.yml describe one environment, and the running one satisfies it."""
from importlib import metadata

import yaml

from autograder.publish.layout import ROOT
from tests.support.requirements import parse_requirements, pip_requirements


def conda_environment():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml should have exactly one pip: section"
    conda = [d for d in deps if isinstance(d, str)]
    return conda, parse_requirements(pip_sections[0])


def test_environment_yml_names_the_same_packages_and_bounds():
    """Binder/conda users get exactly the packages and version bounds that `make` installs."""
    conda, pip_reqs = conda_environment()
    reqs = pip_requirements()
    assert set(pip_reqs) == set(reqs), (
        f"only in environment.yml: {sorted(set(pip_reqs) - set(reqs))}; "
        f"only in requirements.txt: {sorted(set(reqs) - set(pip_reqs))}"
    )
    for name, spec in reqs.items():
        assert pip_reqs[name] == spec, \
            f"{name}: requirements.txt says {spec or 'any'}, environment.yml {pip_reqs[name] or 'any'}"
    assert "python=3.11" in conda and "pip" in conda


def test_torch_and_torchvision_are_pinned_as_a_pair():
    """torch and torchvision only import together in matching pairs: both must be pinned exactly."""
    reqs = pip_requirements()
    for name in ("torch", "torchvision"):
        assert len(reqs[name]) == 1 and next(iter(reqs[name])).operator == "==", \
            f"{name} must be pinned with =="


def test_running_environment_satisfies_requirements():
    """The environment the tests run in is the one requirements.txt describes (a stale .venv fails here)."""
    problems = []
    for name, spec in pip_requirements().items():
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed")
            continue
        public = version.split("+", 1)[0]  # torch reports 2.14.1+cu130: the local part is the build
        if not spec.contains(public, prereleases=True):
            problems.append(f"{name} {version} does not satisfy {spec}")
    assert not problems, "; ".join(problems)

