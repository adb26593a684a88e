"""Sandbox server: `python -I _sandbox_launcher.py FD`, jobs arriving on the socket FD.

Standard library only. For each job it forks a supervisor that enters new mount, network
and PID namespaces (plus a user namespace when not root), forks the program as PID 1 of the
new PID namespace, enforces the wall-clock limit, and writes its own pid and then the
outcome as JSON to the job's status descriptor. See seqpar.sandbox for what this does and
does not protect against.
"""

import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import traceback

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 0x4000, 0x40000
PR_SET_PDEATHSIG = 1
NOBODY = 65534
LIBC = ctypes.CDLL(None, use_errno=True)


def call(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def mount(source: str, target: str, kind: str | None, flags: int, data: str | None) -> None:
    call(
        LIBC.mount(
            source.encode(),
            target.encode(),
            kind.encode() if kind else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def world_readable(path: str) -> bool:
    """Whether any user can list `path` and traverse every directory above it."""
    path = os.path.abspath(path)
    if os.stat(path).st_mode & 0o005 != 0o005:
        return False
    while path != "/":
        path = os.path.dirname(path)
        if not os.stat(path).st_mode & 0o001:
            return False
    return True


def expose_import_paths() -> None:
    """Bind-mount import directories that `nobody` cannot reach (e.g. a Python installed
    under /root) read-only under /tmp/.python, so the dropped program can still import."""
    os.mkdir("/tmp/.python", 0o755)
    moved = {}
    for index, entry in enumerate(sys.path):
        if entry and os.path.isdir(entry) and not world_readable(entry):
            target = f"/tmp/.python/{index}"
            os.mkdir(target, 0o755)
            mount(entry, target, None, MS_BIND | MS_REC, None)
            mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
            moved[entry.rstrip("/") + "/"] = target + "/"
            sys.path[index] = target
    # Packages imported already (encodings, …) look up their submodules via __path__.
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        if isinstance(paths, list):
            for i, path in enumerate(paths):
                for old, new in moved.items():
                    if (path + "/").startswith(old):
                        paths[i] = new + path[len(old) :]
    sys.path_importer_cache.clear()


def enter_namespaces(root: bool) -> None:
    uid, gid = os.getuid(), os.getgid()
    call(
        LIBC.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | (0 if root else CLONE_NEWUSER)),
        "unshare",
    )
    if not root:
        for path, text in (
            ("setgroups", "deny"),
            ("uid_map", f"0 {uid} 1"),
            ("gid_map", f"0 {gid} 1"),
        ):
            with open(f"/proc/self/{path}", "w") as handle:
                handle.write(text)


def run_program(config: dict, root: bool) -> None:
    """In the forked child (PID 1 of the new namespace): isolate, limit, then run the code."""
    os.close(config["status_fd"])
    mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    for directory in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
        if os.path.isdir(directory):
            mount(
                "tmpfs",
                directory,
                "tmpfs",
                MS_NOSUID | MS_NODEV,
                f"size={config['tmpfs_mb']}m,mode=1777",
            )
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    if root:
        expose_import_paths()
    work = "/tmp/work"
    os.mkdir(work, 0o700)
    stdin_path = "/tmp/.stdin"
    with open(stdin_path, "w", encoding="utf-8") as handle:
        handle.write(config["stdin"])
    os.dup2(os.open(stdin_path, os.O_RDONLY), 0)
    if root:
        os.chown(work, NOBODY, NOBODY)
    memory = config["memory_bytes"]
    # CPU: SIGXCPU at the soft limit, SIGKILL a second later if the program ignores it.
    resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_s"], config["cpu_s"] + 1))
    for limit, value in (
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, config["file_bytes"]),
        (resource.RLIMIT_NPROC, config["processes"]),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))
    if root:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.chdir(work)
    os.environ.clear()
    os.environ.update(
        {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": work,
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
    )
    code = compile(config.pop("code"), "program.py", "exec")
    module = type(sys)("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    sys.argv = ["program.py"]
    exec(code, module.__dict__)


def supervise(config: dict, status_fd: int) -> None:
    """In a fresh child of the server: isolate, fork the program as PID 1, enforce the
    timeout, report the outcome on `status_fd`."""
    os.write(status_fd, f"{os.getpid()}\n".encode())
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    root = os.geteuid() == 0
    try:
        enter_namespaces(root)
    except OSError as error:
        os.write(status_fd, json.dumps({"unavailable": str(error)}).encode())
        return
    config["status_fd"] = status_fd
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            run_program(config, root)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if not isinstance(exit_.code, int) and exit_.code is not None:
                print(exit_.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    pidfd = os.pidfd_open(pid)
    timed_out = not select.select([pidfd], [], [], config["timeout_s"])[0]
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    killed_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    outcome = {
        "timed_out": timed_out or killed_by == signal.SIGXCPU,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": killed_by,
    }
    os.write(status_fd, json.dumps(outcome).encode())


def receive(channel: socket.socket) -> tuple[dict, list[int]] | None:
    """One job: an 8-byte length with the job's stdout, stderr and status descriptors
    attached, then that many bytes of JSON. None when seqpar has closed the channel."""
    header, fds, _, _ = socket.recv_fds(channel, 8, 3)
    if not header:
        return None
    size = int.from_bytes(header, "big")
    data = bytearray()
    while len(data) < size:
        chunk = channel.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return json.loads(data), fds


def serve(channel_fd: int) -> None:
    """Fork one supervised child per job received on the channel, until it closes.

    Forking this warm process is much cheaper than starting Python for every program;
    the modules most solutions import are loaded once here for the same reason."""
    import bisect, collections, functools, heapq, io, itertools, math, random, re, string, typing  # noqa: E401, F401, I001

    channel = socket.socket(fileno=channel_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    devnull = os.open(os.devnull, os.O_RDONLY)
    while (job := receive(channel)) is not None:
        config, (stdout_fd, stderr_fd, status_fd) = job
        if os.fork() == 0:
            channel.close()
            os.dup2(devnull, 0)
            os.dup2(stdout_fd, 1)
            os.dup2(stderr_fd, 2)
            for fd in (stdout_fd, stderr_fd, devnull):
                os.close(fd)
            try:
                supervise(config, status_fd)
            finally:
                os._exit(0)
        for fd in (stdout_fd, stderr_fd, status_fd):
            os.close(fd)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
