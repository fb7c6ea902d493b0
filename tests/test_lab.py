"""`make lab` starts JupyterLab on release/, and the student notebooks are there to open."""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, token):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.read()


def test_make_lab_serves_the_student_notebooks(tmp_path, record_timing):
    venv = Path(sys.prefix)
    if not (venv / ".installed").exists():
        pytest.fail(f"run the tests with `make test`: {venv} is not the environment `make` builds")
    port, token = _free_port(), secrets.token_hex(16)
    args = f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.token={token} --ServerApp.port_retries=0"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"VENV={venv}", f"LAB_ARGS={args}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                status, body = _get(f"{base}/api/contents/01_layers", token)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    out = proc.stdout.read().decode() if proc.poll() is not None else "(still running)"
                    pytest.fail(f"JupyterLab did not answer on port {port}:\n{out}")
                time.sleep(0.5)
        record_timing("make lab: JupyterLab answering", time.perf_counter() - start)
        listing = json.loads(body)
        assert status == 200 and "01_layers.ipynb" in [item["name"] for item in listing["content"]]
        status, body = _get(f"{base}/lab", token)
        assert status == 200 and b"JupyterLab" in body
        specs = json.loads(_get(f"{base}/api/kernelspecs", token)[1])
        assert "python3" in specs["kernelspecs"]
    finally:
        _stop(proc)


def _stop(proc):
    """Stop make and the JupyterLab it started (they share a process group)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
