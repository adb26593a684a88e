"""Running untrusted, model-written Python: the only way seqpar executes such code.

Each program runs in a fresh process started by `_sandbox_launcher.py`, which:

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
  wall-clock timeout (the launcher does; seqpar kills the launcher's process group as a
  backstop). Output on stdout and stderr is captured up to a cap; past it the program is
  killed and the result marked truncated.

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
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    timed_out: bool
    stdout: str
    stderr: str
    output_truncated: bool
    wall_time: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.output_truncated


def run(code: str, stdin: str = "", limits: Limits | None = None) -> Execution:
    """Run `code` as a Python program inside the sandbox and return its outcome."""
    limits = limits or Limits()
    start = time.perf_counter()
    status_read, status_write = os.pipe()
    config = {
        **{
            k: v
            for k, v in asdict(limits).items()
            if k in ("timeout_s", "cpu_s", "processes", "tmpfs_mb")
        },
        "memory_bytes": limits.memory_mb << 20,
        "file_bytes": limits.file_mb << 20,
        "status_fd": status_write,
        "code": code,
        "stdin": stdin,
    }
    process = subprocess.Popen(
        [sys.executable, "-I", str(LAUNCHER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(status_write,),
        start_new_session=True,
        # A fixed hash seed makes set/dict order, and so program output, reproducible.
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
        },
    )
    os.close(status_write)
    try:
        assert process.stdin is not None
        process.stdin.write(json.dumps(config).encode())
        process.stdin.close()
        stdout, stderr, truncated = read_capped(process, limits)
        process.wait()
        status_bytes = read_all(status_read)
    finally:
        os.close(status_read)
        if process.poll() is None:
            kill_group(process)
    status = json.loads(status_bytes or b"{}")
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


def read_capped(process: subprocess.Popen, limits: Limits) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr up to the cap; kill the program on overflow or backstop timeout."""
    buffers = {"stdout": bytearray(), "stderr": bytearray()}
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")  # type: ignore[arg-type]
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")  # type: ignore[arg-type]
    deadline = time.monotonic() + limits.timeout_s + BACKSTOP_S
    truncated = False
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            kill_group(process)
            break
        for key, _ in selector.select(remaining):
            chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            buffer = buffers[key.data]
            buffer += chunk
            if len(buffer) > limits.output_bytes:
                del buffer[limits.output_bytes :]
                truncated = True
        if truncated:
            kill_group(process)
            break
    selector.close()
    return bytes(buffers["stdout"]), bytes(buffers["stderr"]), truncated


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def kill_group(process: subprocess.Popen) -> None:
    """Kill the launcher's process group; the program (PID 1 of its namespace) dies with it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_many(jobs: Sequence[Job], workers: int | None = None) -> list[Execution]:
    """Run jobs concurrently (default: one per CPU core); results in job order."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run(job.code, job.stdin, job.limits), jobs))
