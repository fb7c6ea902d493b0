"""`make lab` starts JupyterLab on release/, and the student notebooks are there to open."""
import json
import os
import secrets
import sys
import time
from pathlib import Path

import pytest

from autograder.publish.layout import ROOT
from tests.support.servers import free_port, get, start, stop, wait_for

pytestmark = pytest.mark.slow


def test_make_lab_serves_the_student_notebooks(tmp_path, record_timing):
    venv = Path(sys.prefix)
    if not (venv / ".installed").exists():
        pytest.fail(f"run the tests with `make test`: {venv} is not the environment `make` builds")
    port, token = free_port(), secrets.token_hex(16)
    args = f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.token={token} --ServerApp.port_retries=0"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    t0 = time.perf_counter()
    log = tmp_path / "lab.log"
    proc = start(["make", "-s", "lab", f"VENV={venv}", f"LAB_ARGS={args}"], log, cwd=ROOT, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        status, body = wait_for(proc, f"{base}/api/contents/01_layers", token, log)
        record_timing("make lab: JupyterLab answering", time.perf_counter() - t0)
        listing = json.loads(body)
        assert status == 200 and "01_layers.ipynb" in [item["name"] for item in listing["content"]]
        names = sorted(item["name"] for item in json.loads(get(f"{base}/api/contents", token)[1])["content"])
        assert names == sorted(p.name for p in (ROOT / "release").iterdir() if p.is_dir()), \
            "release/ is the root"
        status, body = get(f"{base}/lab", token)
        assert status == 200 and b"JupyterLab" in body
        specs = json.loads(get(f"{base}/api/kernelspecs", token)[1])
        assert "python3" in specs["kernelspecs"]
    finally:
        stop(proc)
