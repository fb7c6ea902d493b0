"""The sandbox each graded notebook's kernel runs in: bubblewrap (Linux namespaces) plus resource limits.

Why bubblewrap: it needs no daemon and no root (unprivileged user namespaces), is packaged by Debian and
every major distribution (Flatpak is built on it), and starts in milliseconds, so a sandboxed kernel costs
about what a plain one does. Docker is what JupyterHub servers and laptops usually do *not* have.

How it is wired: nbgrader starts kernels from a kernelspec. The grader writes a kernelspec whose argv is
``python -m autograder.sandbox.launcher {connection_file}`` (``launcher.main``), which runs *outside* the
sandbox:

1. moves itself into the sandbox's control group (``autograder.sandbox.cgroup``: memory and tasks of all its
   processes together, where the machine allows) and sets resource limits that the sandbox inherits (CPU
   seconds, address space per process, processes, file size, no core dumps);
2. starts ``bwrap`` around ``python -m autograder.judge.kernel_boot -f {connection_file}`` (which also listens
   for the judge, ``autograder.judge.process``, in the runtime folder).

The judge, which runs the test cells, is sandboxed with the same ``bwrap_argv`` (``autograder.judge.launch``).

Pre-started kernels (``start_warm``): a kernel spends over a second importing torch before it can
run a cell, and nbgrader only starts it after its own preparations. So the worker starts the sandboxed kernel
*before* running nbgrader, with the same limits and namespaces: it imports torch, then waits for a
connection file on a pipe, running no student code until then. The kernelspec's launcher, when nbgrader runs
it, finds ``LaunchConfig.warm`` set and, instead of starting a kernel, hands the connection file to the
waiting one over a Unix socket that only the grader can reach (``attach``), then exits when it exits, with
its exit code. If the launcher is killed, the pre-started kernel is killed too.

What the kernel sees (``bwrap_argv``): the system folders and the Python installation read-only; of the
course only ``course/`` and ``autograder/`` read-only (not ``source/``, ``release/``, ``submitted/``,
``autograded/``, the gradebook, other students or any home folder); the data set read-only when one is
configured; a private size-limited tmpfs as its working folder and ``/tmp``; its own connection file and
kernel sockets (the kernel talks ZeroMQ over Unix sockets, since it has no network: ``--unshare-net``), in a
runtime folder that is itself a 16 MiB tmpfs when grading as root (``mount_runtime``); new user, PID, IPC, UTS
and cgroup namespaces; no capabilities; dies with the grader.

What is in force on this machine, in one line for the instructor's report: ``policy.limits_in_force``.

Modules: ``policy`` (bwrap argv, environment, limits), ``launcher`` (the kernelspec's launcher), ``warm``
(pre-started kernels), ``cgroup`` (control groups).
"""
