"""The course's pinned requirements, read as tests need them (tests/unit/test_environment.py,
tests/publish/test_cloud.py)."""
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from autograder.publish.layout import ROOT


def parse_requirements(lines):
    """{canonical name: specifier set} from requirement lines (comments and options skipped)."""
    reqs = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name not in reqs, f"{name} is listed twice"
            reqs[name] = req.specifier
    return reqs


def pip_requirements():
    """requirements.txt, parsed."""
    return parse_requirements((ROOT / "requirements.txt").read_text().splitlines())
