"""Hostile programs in the real sandbox: each attack is contained, and each detector is shown
to fire on an unprotected control (the same program run as a plain child process).

No test waits on the clock: kills and races are ordered by observed progress (a session
has loaded, a program has finished), never by sleeping. The suite runs as root, as
`setup.sh` and CI do: per-program cgroups need it, and the unprivileged path is tested by
becoming `nobody`."""

import contextlib
import errno
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from seqpar import sandbox
from seqpar._sandbox_runner import KEYRING_SYSCALLS
from seqpar.sandbox import Job, Limits, Session, run, run_many

FAST = Limits(timeout_s=2, cpu_s=2)


def require_root() -> None:
    assert os.geteuid() == 0, "run the sandbox tests as root, as CI does (cgroups, setpriv)"


ADD = "def add(x, y):\n    return x + y\n"


def unprotected(code: str, stdin: str = "", cwd: Path | None = None) -> str:
    """The control: the same program as a plain child process, no sandbox."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", code],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    return result.stdout + result.stderr


def in_session(code: str, entry: str = "add", limits: Limits | None = None) -> Session:
    session = Session(code, entry, None, limits or Limits())
    session.load(time.monotonic() + 30)
    return session


def test_plain_program_runs_isolated():
    result = run("import os, sys\nprint(os.getpid(), os.getcwd(), sys.stdin.read())", stdin="in")
    assert result.ok
    pid, cwd, text = result.stdout.split()
    assert int(pid) <= 3 and (cwd, text) == ("/tmp/work", "in")  # its own PID namespace


def test_infinite_loop_times_out():
    result = run("while True:\n    pass", limits=FAST)
    assert result.timed_out and not result.ok


def test_fork_bomb_is_contained_and_cleaned_up():
    code = textwrap.dedent("""
        import ctypes, os
        ctypes.CDLL(None).prctl(15, b"seqparbomb", 0, 0, 0)  # PR_SET_NAME, inherited
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    result = run(code, limits=FAST)
    assert not result.ok
    # Every process of the program goes with its teardown (which runs in the background).
    for _ in range(600):
        if subprocess.run(["pgrep", "-x", "seqparbomb"], capture_output=True).returncode:
            break
        time.sleep(0.1)
    else:
        pytest.fail("fork bomb processes outlived their sandbox")


def test_memory_bomb_fails_with_memory_error():
    result = run(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))",
        limits=Limits(memory_mb=512, timeout_s=10),
    )
    assert result.exit_code == 1 and "MemoryError" in result.stderr


TREE_MEMORY = textwrap.dedent("""
    import os
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            block = b"x" * (450 << 20)  # touched, so really held
            os.write(ready_w, b".")
            os.read(release_r, 1)  # hold it until all three hold theirs
            os._exit(0)
        children.append(pid)
    for _ in range(3):
        os.read(ready_r, 1)  # a child killed before it holds its block never reports
    os.write(release_w, b"...")
    killed = sum(os.WIFSIGNALED(os.waitpid(pid, 0)[1]) for pid in children)
    print("killed", killed)
    if not killed:
        print("all three held")
""")


def test_memory_limit_holds_for_the_whole_process_tree():
    """Three children of 450 MB each under a 1 GB limit: at most two may hold theirs."""
    require_root()
    result = run(TREE_MEMORY, limits=Limits(memory_mb=1024, timeout_s=5, cpu_s=10))
    # Killed at the limit while holding, or before it could report: never all three.
    assert "all three held" not in result.stdout
    per_process = "import resource\nresource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
    control = unprotected(per_process + TREE_MEMORY)
    assert "all three held" in control  # RLIMIT_AS alone is per process


def test_huge_output_is_capped_and_stopped():
    result = run("while True:\n    print('x' * 10000)", limits=Limits(output_bytes=100_000))
    assert result.output_truncated and not result.ok
    assert len(result.stdout) == 100_000


def test_cannot_write_outside_its_directory(tmp_path):
    tmp_path.chmod(0o777)
    outside = [tmp_path / "escaped.txt", Path.cwd() / "escaped.txt", Path("/escaped.txt")]
    attempt = "try:\n    open({!r}, 'w').write('x')\nexcept OSError as e:\n    print('denied')"
    code = "\n".join(attempt.format(str(p)) for p in outside)
    result = run(code)
    assert result.ok and result.stdout.count("denied") == 3
    assert all(not p.exists() for p in outside)
    unprotected(code)
    assert (tmp_path / "escaped.txt").exists()  # the control writes where it was told
    (tmp_path / "escaped.txt").unlink()
    (Path.cwd() / "escaped.txt").unlink(missing_ok=True)
    Path("/escaped.txt").unlink(missing_ok=True)


def test_host_tmp_and_proc_stay_out_of_reach():
    """Unmounting /tmp or /proc fails; writes land in the program's own tmpfs; /proc shows
    only its own namespace."""
    marker = f"seqpar-escape-{os.getpid()}"
    code = textwrap.dedent(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        for target in (b"/tmp", b"/proc"):
            print("umount", target.decode(), libc.umount2(target, 2), ctypes.get_errno())
        open("/tmp/{marker}", "w").write("x")
        print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    """)
    result = run(code)
    assert result.stdout.count("umount") == 2 and " 0 " not in result.stdout
    assert not Path(f"/tmp/{marker}").exists()
    pids = eval(result.stdout.split("pids ")[1])
    assert max(pids) <= 3
    # The control leaves the mounts alone (unmounting the host's /proc is not a test step).
    control = unprotected("import os\n" + code[code.index("open(") :])
    assert Path(f"/tmp/{marker}").exists()
    Path(f"/tmp/{marker}").unlink()
    assert max(eval(control.split("pids ")[1])) > 3


def test_cannot_delete_files():
    victim_dir = Path.home() / ".cache" / "seqpar-sandbox-test"
    victim_dir.mkdir(parents=True, exist_ok=True)
    victim = victim_dir / "keep.txt"
    victim.write_text("precious")
    code = textwrap.dedent(f"""
        import os, shutil
        for remove, path in ((os.remove, {str(victim)!r}), (shutil.rmtree, {str(victim_dir)!r})):
            try:
                remove(path)
            except OSError as e:
                print("denied", type(e).__name__)
    """)
    result = run(code)
    assert victim.read_text() == "precious"
    assert result.stdout.count("denied") == 2


CONNECT = textwrap.dedent("""
    import socket, sys
    for family, address in ((socket.AF_INET, ("127.0.0.1", PORT)),
                            (socket.AF_UNIX, PATH), (socket.AF_UNIX, ABSTRACT)):
        s = socket.socket(family)
        s.settimeout(2)
        try:
            s.connect(address)
            print("connected", family.name)
        except OSError as e:
            print("refused", family.name, type(e).__name__)
""")


def test_no_network_no_host_sockets(tmp_path):
    """Loopback TCP, a UNIX socket file and an abstract UNIX socket of the host: none is
    reachable from the sandbox; all three are from an unprotected process."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    path = str(tmp_path / "host.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    unix.listen()
    abstract_name = f"\0seqpar-test-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(abstract_name)
    abstract.listen()
    code = (
        CONNECT.replace("PORT", str(tcp.getsockname()[1]))
        .replace("ABSTRACT", repr(abstract_name))
        .replace("PATH", repr(path))
    )
    try:
        result = run(code)
        assert "connected" not in result.stdout and result.stdout.count("refused") == 3
        assert unprotected(code).count("connected") == 3
    finally:
        for s in (tcp, unix, abstract):
            s.close()


SHARED_MEMORY = textwrap.dedent("""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    KEY, IPC_CREAT = 0x5E9A, 0o1000
    if MAKE:
        print("shm", libc.shmget(KEY, 4096, IPC_CREAT | 0o666) >= 0)
        print("queue", libc.msgget(KEY, IPC_CREAT | 0o666) >= 0)
    else:
        print("found shm", libc.shmget(KEY, 0, 0o666) >= 0)
        print("found queue", libc.msgget(KEY, 0o666) >= 0)
""")


def test_system_v_ipc_does_not_outlive_a_program():
    made = run(SHARED_MEMORY.replace("MAKE", "True"))
    assert "shm True" in made.stdout and "queue True" in made.stdout
    seen = run(SHARED_MEMORY.replace("MAKE", "False"))
    assert "found shm False" in seen.stdout and "found queue False" in seen.stdout
    # The control: without an IPC namespace both survive the program that made them.
    unprotected(SHARED_MEMORY.replace("MAKE", "True"))
    try:
        control = unprotected(SHARED_MEMORY.replace("MAKE", "False"))
        assert "found shm True" in control and "found queue True" in control
    finally:
        subprocess.run(["ipcrm", "-M", "0x5e9a", "-Q", "0x5e9a"], capture_output=True)


SOCKET_BUFFERS = textwrap.dedent("""
    import socket
    queued, pairs = 0, []
    try:
        while queued < (256 << 20):
            a, b = socket.socketpair()
            a.setblocking(False)
            pairs.append((a, b))
            try:
                while True:
                    queued += a.send(b"x" * 65536)
            except BlockingIOError:
                pass
    except OSError:
        pass
    print("queued", queued)
""")


def test_socket_buffers_are_bounded_by_the_descriptor_limit():
    result = run(SOCKET_BUFFERS, limits=Limits(timeout_s=20))
    assert int(result.stdout.split()[1]) < (64 << 20)
    assert int(unprotected(SOCKET_BUFFERS).split()[1]) >= (256 << 20)


SCAN_MEMORY = textwrap.dedent("""
    import ctypes
    # The needle is kept in two halves, never joined, so the scan cannot find itself.
    first, second = bytes.fromhex(FIRST), bytes.fromhex(SECOND)
    found = False
    for line in open("/proc/self/maps").read().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        name = fields[5] if len(fields) > 5 else ""
        special = name.startswith("[") and name not in ("[heap]", "[stack]")
        if "r" not in fields[1] or special or end - start > (256 << 20):
            continue
        chunk = ctypes.string_at(start, end - start)
        at = chunk.find(first)
        while at >= 0 and not found:
            found = chunk[at + len(first) : at + len(first) + len(second)] == second
            at = chunk.find(first, at + 1)
    print("found", found)
""")


def test_a_program_cannot_read_an_earlier_programs_code_or_stdin():
    secret = os.urandom(16).hex()
    first, second = secret[:16].encode().hex(), secret[16:].encode().hex()
    scan = SCAN_MEMORY.replace("FIRST", repr(first)).replace("SECOND", repr(second))
    run(f"x = {secret!r}\nimport sys\nsys.stdin.read()", stdin=secret * 3)
    assert "found False" in run(scan).stdout
    # The detector fires when the secret is in the scanning process's memory.
    assert "found True" in run("import sys\nheld = sys.stdin.read()\n" + scan, stdin=secret).stdout


def test_cannot_read_parent_environment(monkeypatch):
    monkeypatch.setenv("SEQPAR_TEST_SECRET", "hunter2")
    code = textwrap.dedent(f"""
        import os
        print(dict(os.environ))
        for pid in ({os.getpid()}, os.getppid(), 1):
            try:
                print(open(f"/proc/{{pid}}/environ").read())
            except OSError as e:
                print("no", pid, type(e).__name__)
    """)
    result = run(code)
    assert "hunter2" not in result.stdout + result.stderr
    assert "hunter2" in unprotected(code)


KILLER = textwrap.dedent("""
    import os, signal
    for target in (0, -1, os.getppid(), 1):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError as e:
            print("denied", target, type(e).__name__)
    print("still here")
""")


def test_one_sample_cannot_kill_another():
    """A correct solution is loaded and answering; another program kill(0)s, kill(-1)s and
    kills its parent; the first still answers. Unprotected, kill(0) ends its process group."""
    with in_session(ADD) as victim:
        assert victim.call((2, 3), time.monotonic() + 30) == 5
        run(KILLER)
        assert victim.call((4, 5), time.monotonic() + 30) == 9
    group = subprocess.Popen(
        ["sh", "-c", f"sleep 60 & {shlex_quote(sys.executable)} -c 'import os; os.kill(0, 9)'"],
        start_new_session=True,
    )
    group.wait(timeout=60)
    assert group.returncode == -9  # the shell, in the killer's process group, died with it


def test_a_fork_that_fails_on_our_side_leaves_other_programs_running(monkeypatch):
    """Tracking a new program fails (out of descriptors): that fork fails alone, the new
    program exits, the zygote is kept and a loaded solution keeps answering."""
    forked: list[int] = []

    def out_of_descriptors(pid: int) -> int:
        forked.append(pid)
        raise OSError(errno.EMFILE, "Too many open files")

    with in_session(ADD) as victim:
        assert victim.call((2, 3), time.monotonic() + 30) == 5
        zygote = sandbox.LAUNCHER.zygote
        with monkeypatch.context() as patch:
            patch.setattr(os, "pidfd_open", out_of_descriptors)
            with pytest.raises(OSError, match="Too many open files"):
                sandbox.LAUNCHER.fork(Limits())
        try:
            ending = os.pidfd_open(forked[0])
        except ProcessLookupError:  # already gone
            pass
        else:  # readable once it has exited; the bound only keeps a failure from hanging
            assert select.select([ending], [], [], 120)[0], "the unused program never exited"
            os.close(ending)
        assert victim.call((4, 5), time.monotonic() + 30) == 9
        assert sandbox.LAUNCHER.zygote is zygote  # kept: replacing it is for a lost channel


def descendants(pid: int) -> dict[int, int]:
    """Every live descendant of `pid`, with its depth below it."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    depths: dict[int, int] = {}
    frontier = {pid: 0}
    while frontier:
        frontier = {c: frontier[p] + 1 for c, p in parents.items() if p in frontier}
        depths.update(frontier)
    return depths


def survivors_of_killing(command: list[str], depth: int, bound_s: float) -> list[int]:
    """Start `command`, wait until its process tree is `depth` deep, SIGKILL it, and return
    the descendants still alive `bound_s` later (the wait ends as soon as all have ended);
    those are then killed. The bounds only keep a failure from hanging."""
    parent = subprocess.Popen(command)
    deadline = time.monotonic() + 120
    try:
        while max((tree := descendants(parent.pid)).values(), default=0) < depth:
            assert parent.poll() is None, "the command ended before its tree was built"
            assert time.monotonic() < deadline, f"no tree {depth} deep: {tree}"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
    ending = {}
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):  # already gone
            ending[os.pidfd_open(pid)] = pid
    deadline = time.monotonic() + bound_s
    while ending and (left_s := deadline - time.monotonic()) > 0:
        for fd in select.select(list(ending), [], [], left_s)[0]:  # readable once ended
            os.close(fd)
            del ending[fd]
    for fd in ending:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        os.close(fd)
    return sorted(ending.values())


def test_no_program_outlives_a_killed_seqpar():
    """seqpar is SIGKILLed while its sandboxed program sleeps (bwrap, zygote, supervisor,
    init, program: five deep): the whole tree ends. Control: a plain child process survives."""
    src = str(Path(sandbox.__file__).parent.parent)
    sleeper = "import time\ntime.sleep(3600)\n"
    script = (
        f"import sys; sys.path.insert(0, {src!r})\n"
        "from seqpar.sandbox import Limits, run\n"
        f"run({sleeper!r}, limits=Limits(timeout_s=3600, cpu_s=3600))\n"
    )
    assert survivors_of_killing([sys.executable, "-c", script], 5, bound_s=120) == []
    plain = "import subprocess; subprocess.run(['sleep', '3600'])"
    # A survivor never ends, so a short look finds it on any machine.
    assert len(survivors_of_killing([sys.executable, "-c", plain], 1, bound_s=1)) == 1


def test_a_program_holds_no_capability_in_any_set():
    """The inheritable set too, which setuid leaves as it was."""
    status = run("print(open('/proc/self/status').read())").stdout
    sets = dict(line.split(":\t") for line in status.splitlines() if line.startswith("Cap"))
    assert sets and all(int(value, 16) == 0 for value in sets.values()), sets


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


HOLD_PROCESSES = textwrap.dedent("""
    import os
    r, w = os.pipe()
    for _ in range(24):
        if os.fork() == 0:
            os.read(r, 1)  # held until the session ends
            os._exit(0)
    def add(x, y):
        return x + y
""")
THREADED = textwrap.dedent("""
    import threading
    def add(x, y):
        out = []
        threads = [threading.Thread(target=out.append, args=(1,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return x + y + len(out) - 8
""")


def test_process_limits_are_per_sample():
    """One sample holding 24 processes does not make another sample's threads fail."""
    with in_session(HOLD_PROCESSES) as holder:
        assert holder.call((1, 1), time.monotonic() + 30) == 2
        with in_session(THREADED) as threaded:
            assert threaded.call((2, 3), time.monotonic() + 30) == 5


def test_a_session_that_breaks_its_reply_channel_ends_with_a_reason():
    forged = textwrap.dedent("""
        import os
        def add(x, y):
            for fd in range(3, 256):
                try:
                    os.write(fd, b"\\x00" * 8 + b"garbage" * 100)
                except OSError:
                    pass
            return x + y
    """)
    with in_session(forged) as session, pytest.raises(sandbox.SessionEnded) as ended:
        session.call((1, 2), time.monotonic() + 30)
    assert "harness error" in str(ended.value) or "exited" in str(ended.value)


def test_pool_runs_concurrently_in_order(monkeypatch):
    """Four jobs on four workers: all four are in `run` at once (a barrier proves it)."""
    barrier = threading.Barrier(4, timeout=120)
    real_run = sandbox.run

    def run_after_barrier(code, stdin, limits):
        barrier.wait()
        return real_run(code, stdin, limits)

    monkeypatch.setattr(sandbox, "run", run_after_barrier)
    results = run_many([Job(f"print({i})") for i in range(4)], workers=4)
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]


def test_missing_bubblewrap_is_a_clear_error(monkeypatch):
    launcher = sandbox.Launcher()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="bubblewrap"):
        launcher.fork(Limits())


NON_ROOT = textwrap.dedent("""
    import os, sys, textwrap
    sys.path.insert(0, SRC)
    from seqpar.sandbox import run
    code = textwrap.dedent('''
        import ctypes, os, signal
        libc = ctypes.CDLL(None, use_errno=True)
        print("umount", libc.umount2(b"/tmp", 2), libc.umount2(b"/proc", 2), flush=True)
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        print("uid", os.getuid(), "pids", pids, flush=True)
        os.kill(0, signal.SIGKILL)
    ''')
    result = run(code)
    print("runner uid", os.getuid())
    print(result.stdout, "signal", result.signal)
    print("after", run("print(6 * 7)").stdout)
""")


def test_the_same_guarantees_without_root():
    """As `nobody` (bwrap makes an unprivileged user namespace): mounts cannot be undone,
    /proc shows only the program's namespace, kill(0) ends only the program."""
    require_root()
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python, "Debian's python3 runs the unprivileged check"
    with tempfile.TemporaryDirectory() as readable:  # the checkout may be private (0700)
        copy = Path(readable) / "seqpar"
        shutil.copytree(
            Path(sandbox.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__")
        )
        for path in [Path(readable), *Path(readable).rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        script = NON_ROOT.replace("SRC", repr(readable))
        out = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        )
    assert "runner uid 65534" in out.stdout, out.stderr
    assert "umount -1 -1" in out.stdout
    pids = eval(out.stdout.split("pids ")[1].splitlines()[0])
    assert max(pids) <= 3
    assert "after 42" in out.stdout


def test_keys_cannot_pass_between_programs_through_kernel_keyrings():
    """Keyrings are not namespaced: the keyring system calls are refused (seccomp). The
    control: outside the sandbox the same call adds a key (to a keyring that dies with it)."""
    code = textwrap.dedent("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        # add_key("user", "seqpar-probe", "secret", 6, KEYRING)
        keyring = ctypes.c_int(KEYRING)
        result = libc.syscall(ADD_KEY, b"user", b"seqpar-probe", b"secret", 6, keyring)
        print("added" if result >= 0 else f"refused {ctypes.get_errno()}")
    """)
    code = code.replace("ADD_KEY", str(KEYRING_SYSCALLS[platform.machine()][1]))
    assert "refused 1" in run(code.replace("KEYRING", "-4")).stdout  # the user keyring
    assert "added" in unprotected(code.replace("KEYRING", "-2"))  # this process's keyring


def test_pseudo_terminals_are_private_to_a_program():
    holder = "import os\nmaster, slave = os.openpty()\nos.write(master, b'x')\n" + ADD
    with in_session(holder) as session:
        assert session.call((1, 2), time.monotonic() + 30) == 3  # loaded: its pty is open
        assert run("import os\nprint(sorted(os.listdir('/dev/pts')))").stdout.strip() == (
            "['ptmx']"
        )


def test_each_program_tree_is_held_to_one_core():
    """cgroup v1 `cpu`: the quota of the program's group is one period (one core)."""
    require_root()
    groups = run("print(open('/proc/self/cgroup').read())").stdout
    cpu = next(line.split(":", 2)[2] for line in groups.splitlines() if ":cpu:" in line)
    assert cpu.startswith("/seqpar-")
    # The group is gone with the program; the live one of a held session shows the quota.
    with in_session(ADD) as session:
        session.call((1, 1), time.monotonic() + 30)
        group = session.runner.cgroups[-1].parent
        assert group.parts[:5] == ("/", "sys", "fs", "cgroup", "cpu")
        quota = int((group / "cpu.cfs_quota_us").read_text())
        assert quota == int((group / "cpu.cfs_period_us").read_text())
