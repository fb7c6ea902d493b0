"""The inspector in a real browser: JupyterLab on loopback, headless Chromium driven by Playwright.

Opens a notebook that shows the inspector on a ResNet-18, clicks the freeze box of the first row
(`conv1`), and checks in the kernel itself that `model.conv1` is now frozen and nothing else changed.
Saves a screenshot to build/inspector-browser.png. Needs Debian's chromium (`.ci/run` installs it).
"""
import json
import os
import secrets
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.publish.layout import ROOT
from tests.support.servers import free_port, get, start, stop, wait_for

CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.slow

NOTEBOOK_CODE = """\
import torch, torchvision
from course.inspector import inspect
model = torchvision.models.resnet18(weights=None)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
inspect(model, opt)"""


def _get(url, token):
    return json.loads(get(url, token)[1])


def _ask_kernel(connection_file, code, timeout=20):
    """Run code in the notebook's own kernel and return what it printed."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient(connection_file=str(connection_file))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=timeout)
        out = []
        client.execute_interactive(code, timeout=timeout,
                                   output_hook=lambda msg: out.append(msg["content"].get("text", "")))
        return "".join(out)
    finally:
        client.stop_channels()


def _run_all_until_started(page, attempts=3, wait_ms=20_000):
    """Ask JupyterLab to run all cells until the cell's prompt leaves `[ ]:` (running `[*]` or done `[1]`).

    The command is not awaited (it resolves only when the cell finishes). Right after the kernel first
    reports idle, JupyterLab can still drop a run request while its session is settling, which left the
    cell unrun in one CI run; asking again is safe because a cell that has started is never asked twice.
    """
    started = ("() => { const p = document.querySelector('.jp-Notebook .jp-Cell .jp-InputPrompt'); "
               "return p && !p.innerText.includes('[ ]'); }")
    for attempt in range(attempts):
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        try:
            page.wait_for_function(started, timeout=wait_ms)
            return
        except Exception:
            if attempt == attempts - 1:
                raise


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free loopback port, serving tmp_path, with a throwaway token."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK_CODE)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "inspect.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    runtime = tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    log = tmp_path / "lab.log"
    proc = start(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", "--ServerApp.port_retries=0", f"--ServerApp.token={token}",
         f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"],
        log, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(proc, f"{base}/api/status", token, log)
    try:
        yield base, token, runtime
    finally:
        stop(proc)


def test_clicking_a_freeze_box_freezes_the_module_in_the_kernel(lab, record_timing):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium package (.ci/run does) or set "
                    "COURSE_CHROMIUM")
    from playwright.sync_api import sync_playwright

    base, token, runtime = lab
    start = time.perf_counter()
    shot = ROOT / "build" / "inspector-browser.png"
    shot.parent.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # Once in CI, a run request JupyterLab dropped while its session settled came back as a "Select
            # Kernel" dialog over the running notebook, which blocked the click. Whenever a dialog covers the
            # page before an action, cancel it (Escape): the kernel already running stays.
            page.add_locator_handler(page.locator(".jp-Dialog"), lambda dialog: page.keyboard.press("Escape"))
            page.goto(f"{base}/lab/tree/inspect.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget",
                                   timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            _run_all_until_started(page)
            boxes = page.locator(".layer-inspector .inspector-freeze input[type=checkbox]")
            boxes.first.wait_for(timeout=90_000)
            assert boxes.count() == 10, "one freeze box per child of a ResNet-18"
            assert not boxes.first.is_checked()
            boxes.first.click()
            page.wait_for_function(
                "() => document.querySelector('.layer-inspector').innerText"
                ".includes('11,680,104 of 11,689,512 parameters trainable')",
                timeout=20_000,
            )
            page.screenshot(path=str(shot), full_page=False)
        except Exception as err:
            failed = shot.with_name("inspector-browser-failure.png")
            page.screenshot(path=str(failed))
            log = (runtime.parent / "lab.log").read_text(errors="replace")[-3000:]
            cell = page.evaluate(
                "() => document.querySelector('.jp-Notebook .jp-Cell')?.innerText ?? '(no cell)'")
            raise AssertionError(
                f"{type(err).__name__}: {err}\nscreenshot: {failed}\nthe cell in the page:\n{cell[-2000:]}\n"
                f"JupyterLab log:\n{log}"
            ) from err
        finally:
            browser.close()
    sessions = _get(f"{base}/api/sessions", token)
    assert len(sessions) == 1
    connection = runtime / f"kernel-{sessions[0]['kernel']['id']}.json"
    printed = _ask_kernel(
        connection,
        "print(model.conv1.weight.requires_grad, sum(p.requires_grad for p in model.parameters()))")
    record_timing(f"browser test: JupyterLab + Chromium + click (screenshot in {shot.relative_to(ROOT)})",
                  time.perf_counter() - start)
    total = len(list(__import__("torchvision").models.resnet18(weights=None).parameters()))
    assert printed.split() == ["False", str(total - 1)], f"the kernel says: {printed!r}"
