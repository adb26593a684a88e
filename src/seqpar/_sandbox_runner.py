"""Inside the sandbox: the zygote (`python -I -S -c <this file> CONFIG`); stdlib only.

The zygote forks a process per program (`zygote`), which isolates itself (`supervise`,
`isolate`: new namespaces, tmpfs, limits, no privileges; see seqpar.sandbox) before it reads
its job (`run_job`): run the program as `__main__` (mode "program"), or serve requests: in
mode "calls" load the solution and answer each request's arguments with the plain-data
value the solution returned or the error it raised; in mode "stdin" run the program once
per request's input and reply with what it printed. Nothing here decides a verdict:
whatever a program does to its process, it can only change what its own requests return.

The plain-data codec lives here because both sides need it: the trusted side imports
`encode`/`decode` from this module, the sandboxed side runs it.
"""

from __future__ import annotations

import base64
import ctypes
import io
import json
import os
import sys

MAX_DEPTH = 100
MAX_SAME_HASH = 32
FRAME_HEADER = 8
TAIL_CHARS = 600
MAX_FRAME = 1 << 30  # requests come from the trusted side
TAGS = ("tuple", "set", "frozenset", "dict", "bytes", "complex")


def plain_scalar(value: object, depth: int) -> bool:
    """Whether `value` stands for itself in both forms; ValueError past the depth bound."""
    if depth > MAX_DEPTH:
        raise ValueError(f"data nested deeper than {MAX_DEPTH} levels")
    return value is None or type(value) in (bool, int, float, str)


def encode(value: object, depth: int = 0) -> object:
    """A JSON-able tagged form of plain built-in data; TypeError for anything else."""
    kind = type(value)
    if plain_scalar(value, depth):
        return value
    if kind is list:
        return [encode(item, depth + 1) for item in value]  # type: ignore[attr-defined]
    if kind in (tuple, set, frozenset):
        return {kind.__name__: [encode(item, depth + 1) for item in value]}  # type: ignore
    if kind is dict:
        pairs = value.items()  # type: ignore[attr-defined]
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in pairs]}
    if kind is bytes:
        return {"bytes": base64.b64encode(value).decode()}  # type: ignore[arg-type]
    if kind is complex:
        return {"complex": [value.real, value.imag]}  # type: ignore[attr-defined]
    raise TypeError(f"returned a {kind.__name__}, not plain built-in data")


def decode(data: object, depth: int = 0) -> object:
    """The value of an `encode`d form; ValueError for anything `encode` cannot produce."""
    kind = type(data)
    if plain_scalar(data, depth):
        return data
    if kind is list:
        return [decode(item, depth + 1) for item in data]  # type: ignore[attr-defined]
    if kind is not dict or len(data) != 1:  # type: ignore[arg-type]
        raise ValueError(f"not an encoded value: {type(data).__name__}")
    ((tag, payload),) = data.items()  # type: ignore[attr-defined]
    if tag in ("bytes",) and type(payload) is str:
        return base64.b64decode(payload.encode(), validate=True)
    if tag not in TAGS or type(payload) is not list:
        raise ValueError(f"not an encoded value: tag {str(tag)[:20]!r}")
    items = [decode(item, depth + 1) for item in payload]
    if tag == "tuple":
        return tuple(items)
    if tag in ("set", "frozenset"):
        few_collisions(items)
        return (set if tag == "set" else frozenset)(items)
    if tag == "complex" and len(items) == 2 and all(type(x) in (int, float) for x in items):
        return complex(*items)  # type: ignore[arg-type]
    if tag == "dict" and all(type(p) is list and len(p) == 2 for p in items):
        few_collisions([key for key, _ in items])  # type: ignore[misc]
        return dict((key, value) for key, value in items)  # type: ignore[misc]
    raise ValueError(f"malformed {tag}")


def few_collisions(keys: list) -> None:
    """Refuse keys crafted to share a hash: building a set or dict of n of them takes
    n² time (int hashes are not randomised), which would stall the trusted process."""
    counts: dict[int, int] = {}
    for key in keys:
        code = hash(key)  # TypeError if unhashable
        counts[code] = counts.get(code, 0) + 1
        if counts[code] > MAX_SAME_HASH:
            raise ValueError(f"more than {MAX_SAME_HASH} keys with the same hash")


def read_frame(fd: int, limit: int) -> bytes | None:
    """One length-prefixed frame from `fd`; None at end of file."""
    header = read_exactly(fd, FRAME_HEADER)
    if header is None:
        return None
    size = int.from_bytes(header, "big")
    if size > limit:
        raise ValueError(f"frame of {size} bytes exceeds the limit of {limit}")
    return read_exactly(fd, size) if size else b""


def read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def frame(payload: bytes) -> bytes:
    """`payload` with its length prefix."""
    return len(payload).to_bytes(FRAME_HEADER, "big") + payload


def set_cpu_limit(seconds: int) -> None:
    """SIGXCPU at `seconds` of CPU time, SIGKILL a second later if the program ignores it."""
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))


def set_limits(limits: dict) -> None:
    import resource

    pairs = [
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_FSIZE, limits["file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if limits.get("nproc"):
        pairs.append((resource.RLIMIT_NPROC, limits["nproc"]))
    for limit, value in pairs:
        resource.setrlimit(limit, (value, value))


def failure(error: BaseException) -> str:
    import traceback

    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return "".join(lines)[-TAIL_CHARS:]


def run_program(code: str, status: int) -> None:
    """Mode "program": the code as `__main__` with the process's own stdin; then its exit
    status on `status` and a fast exit (the trusted side stops waiting at that line, and
    tears the sandbox down later)."""
    module = type(sys)("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    sys.argv = ["program.py"]
    exit_code = 0
    try:
        exec(compile(code, "program.py", "exec"), module.__dict__)
    except SystemExit as exit_:
        if isinstance(exit_.code, int) or exit_.code is None:
            exit_code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            exit_code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        exit_code = 1
    try:
        if "threading" in sys.modules:  # as at a normal exit: wait for non-daemon threads
            sys.modules["threading"]._shutdown()  # type: ignore[attr-defined]
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os.write(status, f"{exit_code & 0xFF}\n".encode())
        os._exit(exit_code & 0xFF)


class Captured(io.StringIO):
    """The program's `sys.stdout` for one stdin test: kept up to a limit (and flagged past
    it), with a `buffer` for programs that write bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.truncated = limit, False
        self.buffer = CapturedBytes(self)

    def write(self, text: str) -> int:
        room = self.limit - self.tell()
        if len(text) > room:
            self.truncated = True
            super().write(text[: max(room, 0)])
        else:
            super().write(text)
        return len(text)


class CapturedBytes:
    def __init__(self, text: Captured) -> None:
        self.text = text

    def write(self, data: bytes) -> int:
        self.text.write(bytes(data).decode("utf-8", errors="replace"))
        return len(data)

    def flush(self) -> None:
        pass


def run_with_stdin(program: object, data: str, limit: int) -> dict:
    """One stdin test: the program as `__main__` in a fresh namespace, its input on fd 0
    (so `input()`, `sys.stdin.buffer` and `open(0)` all read it), `sys.stdout` captured.
    Exiting (`sys.exit`, any code) ends the program normally, as in LiveCodeBench."""
    path = "/tmp/.stdin"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(data)
    fd = os.open(path, os.O_RDONLY)
    if fd != 0:  # fd 0 is free when the last run's `open(0)` closed it
        os.dup2(fd, 0)
        os.close(fd)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
    captured = sys.stdout = Captured(limit)
    error = ""
    try:
        exec(program, {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit:
        pass
    except BaseException as raised:
        error = failure(raised)
    finally:
        sys.stdout = sys.__stdout__
    return {"stdout": captured.getvalue(), "truncated": captured.truncated, "error": error}


def serve(job: dict, fds: dict) -> None:
    """Mode "calls": load the solution, then answer one call per request frame. Mode
    "stdin": compile the program, then run it once per request frame's input."""

    def reply(record: dict) -> None:
        os.write(fds["replies"], frame(json.dumps(record).encode()))

    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        program = compile(job["code"], "solution.py", "exec")
        if job["mode"] == "calls":
            exec(program, namespace)
            target = namespace.get(job["entry"])
            if job["method"] is not None:
                # As LiveCodeBench: a method of Solution() when the code defines the class,
                # else a function of that name.
                if "class Solution" in job["code"] and target is not None:
                    target = getattr(target(), job["method"])
                else:
                    target = namespace.get(job["method"])
            if target is None:
                raise NameError(f"the solution defines no {job['method'] or job['entry']!r}")
    except BaseException as error:  # SystemExit too: exiting while loading is a failure
        reply({"load_error": failure(error)})
        return
    reply({"loaded": True})
    while (request := read_frame(fds["requests"], MAX_FRAME)) is not None:
        call = json.loads(request)
        if job["mode"] == "stdin":
            reply(run_with_stdin(program, call["stdin"], call["max_output"]))
            continue
        try:
            args = decode(call["args"])
            result = encode(target(*args))  # type: ignore[misc]
        except BaseException as error:
            reply({"error": failure(error)})
        else:
            reply({"value": result})


CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x4000000, 0x8000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP = 1, 24
# The descriptors a program gets, in this order, from the trusted side (through the zygote).
FDS = ("stdin", "stdout", "stderr", "go", "job", "started", "requests", "replies")


ctypes_u32 = ctypes.c_uint32


def checked(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def zygote(config: dict) -> None:
    """Fork one isolated program per request on the control socket, until it closes.

    The zygote never reads a job: it only receives descriptors and the limits, so nothing
    of one program (its code, its input) is ever in the memory a later program is forked
    from. Forking this warm process instead of starting Python saves most of the cost."""
    import ctypes
    import signal
    import socket

    libc = ctypes.CDLL(None, use_errno=True)
    control = socket.socket(fileno=config["control_fd"])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    while True:
        message, fds, _, _ = socket.recv_fds(control, 65536, len(FDS))
        if not message:
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            try:
                control.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                supervise(libc, request, dict(zip(FDS, fds, strict=True)))
            finally:
                os._exit(127)
        for fd in fds:
            os.close(fd)
        control.sendall(f"{pid}\n".encode())


def supervise(libc: object, request: dict, fds: dict) -> None:
    """In the zygote's child: wait until the trusted side has put this process in its
    cgroups, enter new namespaces, and start the program's init there."""
    import select
    import signal

    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # type: ignore[attr-defined]
    for index, name in enumerate(("stdin", "stdout", "stderr")):
        os.dup2(fds.pop(name), index)
    go = fds.pop("go")
    ready = os.read(go, 1)
    os.close(go)
    if not ready:
        return
    namespaces = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
    checked(libc.unshare(namespaces), "unshare")  # type: ignore[attr-defined]
    alive, held = os.pipe()  # `held` stays open here until this process ends
    init = os.fork()
    if init:
        for fd in (alive, *fds.values()):
            os.close(fd)
        os.waitpid(init, 0)
        os._exit(0)
    os.close(held)
    os.setsid()  # its own session and process group: kill(0) reaches only this program
    isolate(libc, request)
    # Armed only now: becoming nobody clears the parent-death signal. A supervisor that died
    # before shows as the end of `alive`; after, the signal ends this init, and with it
    # the namespace, so no program outlives a killed seqpar.
    armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # type: ignore[attr-defined]
    checked(armed, "prctl")
    if select.select([alive], [], [], 0)[0]:
        os._exit(0)
    os.close(alive)
    program = os.fork()
    if program == 0:
        run_job(fds)
        os._exit(0)
    for name in ("job", "requests", "replies"):
        os.close(fds[name])
    # PID 1 of the namespace: reap everything; when the program ends, say how, and end
    # the namespace (every process left in it dies with this one).
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == program:
            if os.WIFSIGNALED(status):
                os.write(fds["started"], f"!{os.WTERMSIG(status)}\n".encode())
            os._exit(0)


def isolate(libc: object, request: dict) -> None:
    """Fresh /tmp, /dev/shm and /proc for this namespace; limits; drop every privilege."""

    def mount(source: str, target: str, kind: str | None, flags: int, data: str | None) -> None:
        result = libc.mount(  # type: ignore[attr-defined]
            source.encode(),
            target.encode(),
            kind.encode() if kind else None,
            flags,
            data.encode() if data else None,
        )
        checked(result, f"mount {target}")

    mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    for directory in ("/tmp", "/dev/shm"):
        mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, request["tmpfs"])
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    # Its own pseudo-terminals: another program's pty cannot be opened from here.
    terminals = "newinstance,ptmxmode=0666,mode=620"
    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, terminals)
    os.mkdir("/tmp/work")
    os.chmod("/tmp/work", 0o1777)
    os.chdir("/tmp/work")
    set_limits(request["limits"])
    forbid_keyrings(libc)
    for capability in range(64):  # none can come back, even through exec as uid 0
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)  # type: ignore[attr-defined]
    if request["become"] is not None:  # as root: user and group nobody
        os.setgroups([])
        os.setgid(request["become"])
        os.setuid(request["become"])
    # No capability in any set: setuid leaves the inheritable one, a user namespace all.
    header = (ctypes_u32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (ctypes_u32 * 6)()
    checked(libc.capset(header, data), "capset")  # type: ignore[attr-defined]


# Kernel keyrings are not namespaced by PID, IPC, network or mount namespaces: a key added
# by one program would be readable by the next one running as the same user.
KEYRING_SYSCALLS = {  # machine: (audit arch, add_key, request_key, keyctl)
    "x86_64": (0xC000003E, 248, 249, 250),
    "aarch64": (0xC00000B7, 217, 218, 219),
}


def forbid_keyrings(libc: object) -> None:
    """A seccomp filter: the keyring system calls fail with EPERM; system calls of another
    ABI (i386, x32) fail too, so the numbers cannot be dodged. No filter on other machines."""
    import platform

    numbers = KEYRING_SYSCALLS.get(platform.machine())
    if numbers is None:
        return
    arch, *calls = numbers
    load, equal, at_least, give = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
    program = [
        (load, 0, 0, 4),  # the ABI
        (equal, 0, 6, arch),
        (load, 0, 0, 0),  # the system call number
        (at_least, 4, 0, 0x40000000),  # x32
        *((equal, 3 - i, 0, call) for i, call in enumerate(calls)),
        (give, 0, 0, allow),
        (give, 0, 0, deny),
    ]

    class Instruction(ctypes.Structure):
        _fields_ = (
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        )

    class Program(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction)))

    instructions = (Instruction * len(program))(*(Instruction(*i) for i in program))
    filter_ = Program(len(program), instructions)
    result = libc.prctl(22, 2, ctypes.byref(filter_), 0, 0)  # type: ignore[attr-defined]
    checked(result, "seccomp")  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def run_job(fds: dict) -> None:
    """In the program's process: read the job and run it (see the module docstring)."""
    with os.fdopen(fds["job"], "rb") as handle:
        job = json.loads(handle.read())
    set_cpu_limit(job["cpu_s"])
    if job["mode"] != "program":
        os.close(fds["started"])
        # Printing is allowed and goes to stderr; the reply descriptor stays private.
        os.dup2(2, 1)
        serve(job, fds)
        return
    for name in ("requests", "replies"):
        os.close(fds[name])
    os.write(fds["started"], b".")
    run_program(job["code"], fds["started"])


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.set_int_max_str_digits(config["int_digits"])
    import site

    site.setquit()  # quit() and exit() as in a normal interpreter (-S skips them)
    # What most solutions import, loaded once here; every program is forked with them.
    import bisect, collections, functools, heapq, itertools, math, re, string, typing  # noqa: E401, F401, I001

    zygote(config)


if __name__ == "__main__":
    main()
