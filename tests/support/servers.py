"""Helpers for tests that start a Jupyter server (or a Dask cluster: ``DaskCluster``) on loopback: a free
port, starting it with its log in a file, token-authenticated GETs, waiting for it, and stopping it with
everything it started.

The log goes to a file, never to a pipe nobody reads: a server that logs more than a pipe holds (64 KiB)
blocks on its next write and stops answering."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from autograder.publish.layout import ROOT


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
    """Poll url until it answers; fail the test with the end of the server's log if it dies or never
    answers."""
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


class DaskCluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, each in its own process group, started
    as README's "Grading on a cluster" says: the course's checkout on their path, workers not daemonic. Used
    by tests/grader/test_dask.py and benchmarks/grading.py."""

    def __init__(self, folder):
        self.folder, self.procs = Path(folder), []
        self.folder.mkdir(parents=True, exist_ok=True)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        # The scheduler unpickles the tasks, so it too needs the course's checkout on its path (README).
        self.scheduler = self._start(["scheduler", "--host", "127.0.0.1",
                                      "--port", self.address.rsplit(":", 1)[1], "--no-dashboard"],
                                     "scheduler", env=dict(os.environ, PYTHONPATH=str(ROOT)))

    def _start(self, args, name, env=None, cwd=ROOT):
        proc = start([str(Path(sys.executable).parent / "dask"), *args], self.folder / f"{name}.log",
                     env=env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def add_worker(self, name, env=None, cwd=ROOT):
        """One worker process (under a nanny that restarts it if it dies) with one thread, no memory limit of
        Dask's own (the grader's sandboxes have theirs). env: the worker's environment (default: this one with
        the course's checkout on PYTHONPATH)."""
        env = dict(env or dict(os.environ, PYTHONPATH=str(ROOT)), DASK_DISTRIBUTED__WORKER__DAEMON="False")
        return self._start(["worker", self.address, "--nthreads", "1", "--name", name, "--host", "127.0.0.1",
                            "--memory-limit", "0", "--no-dashboard"], name, env, cwd)

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=60)

    def close(self):
        for proc in reversed(self.procs):
            stop(proc)


class SlurmNode:
    """A one-node Slurm cluster on this machine (munged, slurmctld, slurmd; Debian's slurm-wlm and munge), its
    configuration and state in ``folder``; needs root. ``env``: what a client (sbatch, dask-jobqueue) needs to
    reach it. Used by tests/grader/test_dask.py."""

    def __init__(self, folder):
        import shutil

        self.folder, self.procs = Path(folder), []
        missing = [p for p in ("slurmctld", "slurmd", "munged")
                   if not shutil.which(p, path="/usr/sbin:/usr/bin")]
        if missing or os.geteuid() != 0:
            pytest.fail(f"a Slurm node needs root and Debian's slurm-wlm and munge "
                        f"(`make slurm` as root installs them); missing: {missing or 'root'}")
        host = socket.gethostname().split(".")[0]
        for sub in ("ctld", "d", "log", "run"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 9 // 10
        conf = self.folder / "slurm.conf"
        conf.write_text("\n".join([
            "ClusterName=grading-test", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", "MpiDefault=none", "MailProg=/bin/true",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core", "ReturnToService=2", f"StateSaveLocation={self.folder / 'ctld'}",
            f"SlurmdSpoolDir={self.folder / 'd'}", f"SlurmctldPidFile={self.folder / 'run' / 'ctld.pid'}",
            f"SlurmdPidFile={self.folder / 'run' / 'd.pid'}", f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
            f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
        self.env = dict(os.environ, SLURM_CONF=str(conf))
        self._munge()
        self.procs.append(start(["/usr/sbin/slurmctld", "-D", "-f", str(conf)],
                                self.folder / "log" / "ctld.log", env=self.env))
        self.procs.append(start(["/usr/sbin/slurmd", "-D", "-f", str(conf)], self.folder / "log" / "d.log",
                                env=self.env))
        deadline = time.time() + 60
        while True:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.env)
            if state.stdout.strip() in ("idle", "mix", "alloc"):
                return
            if time.time() > deadline:
                self.close()
                pytest.fail(f"the Slurm node did not come up "
                            f"({state.stdout.strip()!r} {state.stderr.strip()!r}):\n"
                            + (self.folder / "log" / "ctld.log").read_text(errors="replace")[-2000:]
                            + (self.folder / "log" / "d.log").read_text(errors="replace")[-2000:])
            time.sleep(0.5)

    def _munge(self):
        """Start munged (as the munge user) unless a credential can already be made and decoded."""
        def works():
            made = subprocess.run(["munge", "-n"], capture_output=True)
            return made.returncode == 0 and subprocess.run(["unmunge"], input=made.stdout,
                                                           capture_output=True).returncode == 0
        if works():
            return
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["/usr/sbin/mungekey", "--create", f"--keyfile={key}"], check=True)
        for folder in ("/etc/munge", "/var/lib/munge", "/var/log/munge", "/run/munge"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            subprocess.run(["chown", "-R", "munge:munge", folder], check=True)
        key.chmod(0o600)
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        self.munged = True
        for _ in range(40):
            if works():
                return
            time.sleep(0.25)
        pytest.fail("munged started but credentials do not decode")

    def close(self):
        subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True)
        for proc in reversed(self.procs):
            stop(proc)
        if getattr(self, "munged", False):
            pid = Path("/run/munge/munged.pid")
            if pid.exists():
                try:
                    os.kill(int(pid.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
