"""Helpers for tests that start a Jupyter server on loopback: a free port, starting it with its log in a
file, token-authenticated GETs, waiting for it, and stopping it with everything it started.

The log goes to a file, never to a pipe nobody reads: a server that logs more than a pipe holds (64 KiB)
blocks on its next write and stops answering."""
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, token):
    """GET url with the server's token; returns (status, body bytes)."""
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.read()


def start(cmd, log, **kwargs):
    """Start cmd in its own process group with stdout and stderr going to the file ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def wait_for(proc, url, token, log, timeout=60):
    """Poll url until it answers; fail the test with the end of the server's log if it dies or never answers."""
    deadline = time.time() + timeout
    while True:
        try:
            return get(url, token)
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                tail = open(log, errors="replace").read()[-4000:]
                pytest.fail(f"the server did not answer at {url} (exit code {proc.poll()}):\n{tail}")
            time.sleep(0.5)


def stop(proc):
    """Stop a process started with start_new_session=True and everything in its process group."""
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
