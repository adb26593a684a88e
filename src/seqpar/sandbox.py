"""Running untrusted, model-written Python: the only way seqpar executes such code.

Each program runs in a fresh process forked by `_sandbox_launcher.py`, which:

- enters new **network**, **PID** and **mount** namespaces (and a user namespace when
  seqpar is not root). The network namespace has only a loopback interface that is down, so
  no connection can be made to anything, loopback listeners of the host included. If the
  namespaces cannot be created, nothing runs: `SandboxUnavailable` is raised (fail closed).
- runs the program as **PID 1** of its PID namespace: it cannot see or signal host
  processes (seqpar included), and when it ends or is killed every process it started dies
  with it (fork bombs and daemonised children cannot outlive it);
- mounts fresh, size-limited tmpfs over /tmp, /var/tmp, /dev/shm and /run/lock and a new
  /proc; the working directory is a new, empty /tmp/work that vanishes with the namespace;
- when seqpar runs as root, drops to user and group `nobody` with no supplementary groups,
  so the program cannot write, delete or read other users' files that are not world
  writable/readable, nor read other processes' environments;
- sets limits on CPU seconds, address space, file size, process count (RLIMIT_NPROC) and
  core dumps, scrubs the environment to a fixed minimal one, and kills the program at the
  wall-clock timeout (its supervisor does; seqpar kills the supervisor as a backstop, and
  the program, with PR_SET_PDEATHSIG, dies with it). Output on stdout and stderr is
  captured up to a cap; past it the program is killed and the result marked truncated.

Programs are started by one long-lived server process (`_sandbox_launcher.py`, started on
first use) that forks a supervisor per program: forking a warm process costs far less than
starting Python, and the modules most solutions import are already loaded.

What it does **not** protect against: kernel exploits and anything else that escapes
namespaces; reading world-readable files (system files, and when seqpar is not root, files
of the invoking user, which the program can also modify); using CPU and memory up to the
limits; and, for grading, a program that deliberately searches the harness's memory for
its result token (the harness in seqpar.tasks.code_tests states the narrower guarantees of
verdicts). It is not a substitute for a VM when running code from hostile parties.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqpar.errors import SeqparError

LAUNCHER = Path(__file__).with_name("_sandbox_launcher.py")
BACKSTOP_S = 5.0


class SandboxUnavailable(SeqparError):
    """The platform cannot isolate programs as required; nothing was run."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one program."""

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 32
    output_bytes: int = 1 << 20
    tmpfs_mb: int = 64


@dataclass(frozen=True)
class Job:
    """A program with its stdin."""

    code: str
    stdin: str = ""
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Execution:
    """What happened to one program."""

    exit_code: int | None
    signal: int | None
    timed_out: bool  # wall-clock timeout or CPU-time limit
    stdout: str
    stderr: str
    output_truncated: bool
    wall_time: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.output_truncated


class Server:
    """The long-lived sandbox server process (one per seqpar process, started on first use)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.channel: socket.socket | None = None

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(LAUNCHER), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # A fixed hash seed makes set/dict order, and so program output, reproducible.
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": "C.UTF-8",
                "PYTHONHASHSEED": "0",
            },
        )
        theirs.close()
        self.channel = ours

    def submit(self, config: dict, fds: list[int]) -> None:
        """Hand a job and its stdout, stderr and status pipe ends to the server."""
        payload = json.dumps(config).encode()
        with self.lock:
            for attempt in (1, 2):
                if self.process is None or self.process.poll() is not None:
                    self.start()
                assert self.channel is not None
                try:
                    socket.send_fds(self.channel, [len(payload).to_bytes(8, "big")], fds)
                    self.channel.sendall(payload)
                    return
                except OSError:
                    if attempt == 2:
                        raise
                    self.process = None  # the server died: start a new one and retry


SERVER = Server()


def run(code: str, stdin: str = "", limits: Limits | None = None) -> Execution:
    """Run `code` as a Python program inside the sandbox and return its outcome."""
    limits = limits or Limits()
    start = time.perf_counter()
    pipes = [os.pipe() for _ in range(3)]  # stdout, stderr, status
    config = {
        "timeout_s": limits.timeout_s,
        "cpu_s": limits.cpu_s,
        "processes": limits.processes,
        "tmpfs_mb": limits.tmpfs_mb,
        "memory_bytes": limits.memory_mb << 20,
        "file_bytes": limits.file_mb << 20,
        "code": code,
        "stdin": stdin,
    }
    try:
        SERVER.submit(config, [w for _, w in pipes])
    finally:
        for _, write in pipes:
            os.close(write)
    (stdout_fd, stderr_fd, status_fd) = (r for r, _ in pipes)
    with (
        open(stdout_fd, "rb", buffering=0) as out,
        open(stderr_fd, "rb", buffering=0) as err,
        open(status_fd, "rb", buffering=0) as status_pipe,
    ):
        stdout, stderr, truncated = read_capped(out, err, status_pipe, limits)
        status_text = status_pipe.read().decode()
    status = json.loads(status_text) if status_text else {}
    if "unavailable" in status:
        raise SandboxUnavailable(
            f"cannot isolate untrusted code here ({status['unavailable']}); the sandbox needs "
            "Linux namespaces (root, or unprivileged user namespaces enabled)"
        )
    return Execution(
        exit_code=status.get("exit_code"),
        signal=status.get("signal"),
        timed_out=bool(status.get("timed_out")) or not status,
        stdout=stdout.decode("utf-8", errors="replace"),
        stderr=stderr.decode("utf-8", errors="replace"),
        output_truncated=truncated,
        wall_time=time.perf_counter() - start,
    )


def read_capped(out: Any, err: Any, status: Any, limits: Limits) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr until both close; past the output cap or the backstop deadline,
    kill the job's supervisor (its program dies with it). Returns them and whether cut."""
    supervisor = int(status.readline() or 0)
    buffers = {"stdout": bytearray(), "stderr": bytearray()}
    selector = selectors.DefaultSelector()
    selector.register(out, selectors.EVENT_READ, "stdout")
    selector.register(err, selectors.EVENT_READ, "stderr")
    deadline = time.monotonic() + limits.timeout_s + BACKSTOP_S
    truncated = expired = False
    while selector.get_map() and not truncated:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            expired = True
            break
        for key, _ in selector.select(remaining):
            chunk = key.fileobj.read(65536)  # type: ignore[union-attr]
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            buffer = buffers[key.data]
            buffer += chunk
            if len(buffer) > limits.output_bytes:
                del buffer[limits.output_bytes :]
                truncated = True
    selector.close()
    if (truncated or expired) and supervisor:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGKILL)
    return bytes(buffers["stdout"]), bytes(buffers["stderr"]), truncated


def run_many(jobs: Sequence[Job], workers: int | None = None) -> list[Execution]:
    """Run jobs concurrently (default: one per CPU core); results in job order."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run(job.code, job.stdin, job.limits), jobs))
