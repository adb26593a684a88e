"""Hostile programs in the real sandbox: each is contained, with the right verdict."""

import os
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from seqpar.sandbox import Job, Limits, run, run_many

FAST = Limits(timeout_s=2, cpu_s=2)


def nobody_processes() -> int:
    out = subprocess.run(["ps", "-u", "65534", "-o", "pid="], capture_output=True, text=True)
    return len(out.stdout.split())


def test_plain_program_runs_isolated():
    result = run("import os, sys\nprint(os.getpid(), os.getcwd(), sys.stdin.read())", stdin="in")
    assert result.ok
    assert result.stdout.split() == ["1", "/tmp/work", "in"]


def test_infinite_loop_times_out():
    start = time.perf_counter()
    result = run("while True:\n    pass", limits=FAST)
    assert result.timed_out and not result.ok
    assert time.perf_counter() - start < 5


def test_fork_bomb_is_contained_and_cleaned_up():
    before = nobody_processes()
    code = textwrap.dedent("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    result = run(code, limits=FAST)
    assert not result.ok
    time.sleep(0.5)
    assert nobody_processes() <= before


def test_memory_bomb_fails_with_memory_error():
    result = run(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))",
        limits=Limits(memory_mb=512, timeout_s=10),
    )
    assert result.exit_code == 1 and "MemoryError" in result.stderr


def test_huge_output_is_capped_and_stopped():
    start = time.perf_counter()
    result = run("while True:\n    print('x' * 10000)", limits=Limits(output_bytes=100_000))
    assert result.output_truncated and not result.ok
    assert len(result.stdout) == 100_000
    assert time.perf_counter() - start < 5


def test_cannot_write_outside_its_directory(tmp_path):
    outside = [tmp_path / "escaped.txt", Path.cwd() / "escaped.txt", Path("/escaped.txt")]
    attempt = (
        "try:\n    open({!r}, 'w').write('x')\nexcept OSError as e:\n    print(type(e).__name__)"
    )
    result = run("\n".join(attempt.format(str(p)) for p in outside))
    assert result.ok
    assert all(not p.exists() for p in outside)


def test_cannot_delete_files():
    victim_dir = Path.home() / ".cache" / "seqpar-sandbox-test"
    victim_dir.mkdir(parents=True, exist_ok=True)
    victim = victim_dir / "keep.txt"
    victim.write_text("precious")
    victim_dir.chmod(0o755)
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


def test_no_network_even_to_loopback():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = textwrap.dedent(f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("connected")
        except OSError as e:
            print("refused", type(e).__name__)
    """)
    result = run(code)
    assert "connected" not in result.stdout and "refused" in result.stdout
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()


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


def test_cannot_kill_the_parent():
    code = textwrap.dedent(f"""
        import os, signal
        for target in ({os.getpid()}, os.getppid()):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError as e:
                print("denied", type(e).__name__)
        print("still here")
    """)
    result = run(code)
    assert "still here" in result.stdout  # the program only ever reached itself
    assert os.getpid() > 0  # and this test process is alive to check


def test_pool_runs_concurrently_in_order():
    jobs = [Job(f"import time\ntime.sleep(0.5)\nprint({i})") for i in range(4)]
    start = time.perf_counter()
    results = run_many(jobs, workers=4)
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]
    assert time.perf_counter() - start < 2.0
