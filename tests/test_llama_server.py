"""llama.cpp's `llama-server` managed by seqpar, against the real binary and the bundled
SmolLM2: lifecycle, crash reporting, batched decoding (the server's own counters), prefix
cache hits across rounds, and seeds that reproduce at any number of requests in flight."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from seqpar.engines import llama_server
from seqpar.engines.llama_server import LlamaServer, find_binary
from seqpar.engines.openai import Backoff, OpenAIEngine, ServerUnavailable
from seqpar.errors import SeqparError
from seqpar.sampling import SamplingParams
from seqpar.types import Message, Request

from .conftest import TEST_MODEL


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet counts as ended)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def engine_for(server: LlamaServer, in_flight: int, retries: int = 2) -> OpenAIEngine:
    return OpenAIEngine(
        server.alias,
        [server.base_url],
        max_in_flight=in_flight,
        backoff=Backoff(retries=retries, base=0.05),
    )


def generate(engine: OpenAIEngine, requests: list[Request], params: SamplingParams) -> list:
    """Completions per request, in request order."""
    done = dict(engine.generate(requests, params))
    return [done[i] for i in range(len(requests))]


def ask(text: str, *seeds: int) -> Request:
    return Request((Message("user", text),), tuple(seeds))


@pytest.fixture(scope="module")
def server():
    with LlamaServer(TEST_MODEL, slots=4, ctx_per_slot=2048) as running:
        yield running


def test_a_missing_binary_says_to_run_setup(monkeypatch, tmp_path):
    monkeypatch.setattr(llama_server, "packaged_binary", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(llama_server.BINARY_ENV, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(SeqparError, match=r"llama-server was not found.*\./setup\.sh"):
        find_binary()
    monkeypatch.setenv(llama_server.BINARY_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(SeqparError, match="does not exist"):
        find_binary()


def test_a_model_that_is_not_gguf_is_refused_before_starting(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SeqparError, match="needs a GGUF model"):
        llama_server.gguf_path(str(tmp_path))


def test_starts_on_a_free_loopback_port_and_stops_completely():
    server = LlamaServer(TEST_MODEL, slots=2, ctx_per_slot=512)
    with server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.running and port_open(server.port)
        health = httpx.get(f"{server.url}/health", timeout=5).json()
        assert health["status"] == "ok"
        props = httpx.get(f"{server.url}/props", timeout=5).json()
        assert props["total_slots"] == 2
        assert "--threads" in server.command(server.port)
        assert str(os.cpu_count()) in server.command(server.port)
        pid = server.process.pid
    assert not server.running and server.process.returncode is not None
    assert not port_open(server.port)
    assert not alive(pid)
    server.stop()  # idempotent


def test_a_server_that_dies_while_starting_names_the_binary_exit_code_and_log(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(SeqparError) as caught:
        LlamaServer(broken, slots=1, ctx_per_slot=256).start()
    message = str(caught.value)
    assert "llama-server" in message and "exited with code" in message
    assert "broken.gguf" in message  # a line of the server's own log


def test_the_server_is_stopped_when_python_exits_without_stopping_it(tmp_path):
    script = textwrap.dedent(f"""
        from seqpar.engines.llama_server import LlamaServer
        server = LlamaServer({TEST_MODEL!r}, slots=1, ctx_per_slot=256).start()
        print(server.process.pid, server.port, flush=True)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    pid, port = map(int, result.stdout.split())
    assert not port_open(port) and not alive(pid)


def holding_server(hold: str) -> tuple[subprocess.Popen, int, int]:
    """A child Python that starts a one-slot server, reports its pid and port, then runs
    `hold` (the server started as `server`); returns (child, server pid, port) once the
    server answers."""
    script = textwrap.dedent(f"""
        import time
        from seqpar.engines.llama_server import LlamaServer
        server = LlamaServer({TEST_MODEL!r}, slots=1, ctx_per_slot=256)
    """) + textwrap.dedent(hold)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid, port = map(int, child.stdout.readline().split())
    assert port_open(port)
    return child, pid, port


REPORT_AND_WAIT = "print(server.process.pid, server.port, flush=True)\ntime.sleep(600)\n"


def test_ctrl_c_stops_the_server():
    child, pid, port = holding_server("with server:\n" + textwrap.indent(REPORT_AND_WAIT, "    "))
    try:
        child.send_signal(signal.SIGINT)
        assert child.wait(60) != 0  # KeyboardInterrupt
    finally:
        if child.poll() is None:
            child.kill()
    assert not alive(pid) and not port_open(port)


def test_the_server_dies_with_a_killed_python_process():
    child, pid, port = holding_server("server.start()\n" + REPORT_AND_WAIT)
    child.kill()  # SIGKILL: no atexit, no finally
    child.wait()
    deadline = time.monotonic() + 120  # a hang guard: the death is observed, not timed
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail("llama-server outlived its killed parent")
    assert not port_open(port)


def test_a_killed_server_is_a_clear_error_on_the_next_request():
    server = LlamaServer(TEST_MODEL, slots=1, ctx_per_slot=512).start()
    try:
        engine = engine_for(server, 1, retries=1)
        params = SamplingParams(max_tokens=4, temperature=0, seed=1)
        assert generate(engine, [ask("Say hi.")], params)[0][0].completion_tokens > 0
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        with pytest.raises(ServerUnavailable, match=rf"no answer from {server.base_url}.*re-run"):
            generate(engine, [ask("Say hi again.")], params)
        with pytest.raises(SeqparError, match=r"(?s)llama-server was killed by signal 9.*re-run"):
            server.check()
    finally:
        server.stop()


def decodes_per_token(server: LlamaServer, in_flight: int) -> float:
    """llama_decode calls per generated token for four 40-token generations, `in_flight` at
    a time, from the server's own counters."""
    engine = engine_for(server, in_flight)
    params = SamplingParams(max_tokens=40, temperature=0.8, seed=3)
    before = server.metrics()
    requests = [ask(f"Count from {k} to 500, separated by spaces.", k) for k in range(1, 5)]
    results = generate(engine, requests, params)
    after = server.metrics()
    generated = sum(c.completion_tokens for (c,) in results)
    predicted = after["tokens_predicted_total"] - before["tokens_predicted_total"]
    assert generated == predicted >= 100
    return (after["n_decode_total"] - before["n_decode_total"]) / generated


def test_concurrent_requests_are_decoded_together(server):
    # the control, one at a time: a decode per generated token (plus prompts)
    assert decodes_per_token(server, 1) >= 1.0
    # four in flight: about a quarter
    assert decodes_per_token(server, 4) < 0.5


def test_a_later_round_is_served_from_the_prefix_cache(server):
    engine = engine_for(server, 1)
    params = SamplingParams(max_tokens=48, temperature=0.7, seed=5)
    question = Message("user", "Write a short poem about a lighthouse keeper and the sea.")
    (first,) = generate(engine, [Request((question,))], params)[0]
    follow_up = (question, Message("assistant", first.text), Message("user", "Now shorter."))
    (second,) = generate(engine, [Request(follow_up)], params)[0]
    earlier = first.prompt_tokens + first.completion_tokens
    assert second.prompt_tokens > earlier
    assert second.cached_prompt_tokens >= earlier - 4, (second.cached_prompt_tokens, earlier)


def test_the_same_seeds_give_the_same_texts_at_1_and_4_in_flight(server):
    """True for SmolLM2 (Q4_1 weights: bit-identical logits at any batch composition); the
    default Qwen2.5-Coder GGUF is not batch-invariant (see LlamaServer's docstring)."""
    params = SamplingParams(max_tokens=32, temperature=0.9)
    requests = [ask(f"Tell me a fact about the number {k}.", 100 + k) for k in range(4)]
    one = generate(engine_for(server, 1), requests, params)
    four = generate(engine_for(server, 4), requests, params)
    assert [c.text for (c,) in one] == [c.text for (c,) in four]


def test_a_sequential_run_through_the_managed_server_reuses_each_chain_s_prefix(tmp_path):
    """`seqpar run --engine llama-server`: seqpar starts the server, two chains share its two
    slots, later rounds are served from each slot's cache, and a re-run sends nothing."""
    import json

    from .test_e2e import cli

    out = tmp_path / "run"
    args = ["run", "--engine", "llama-server", "--slots", "2", "--model", TEST_MODEL,
            "--task", "arith", "--difficulty", "1", "--limit", "2", "--n", "3",
            "--max-tokens", "24", "--strategy", "sequential", "--layout", "multiturn",
            "--history", "full", "--no-progress", "--out", str(out)]  # fmt: skip
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"]["engine"] == "llama-server" and manifest["engine"]["slots"] == 2
    lines = (out / "samples.jsonl").read_text().splitlines()
    samples = {(s["problem_id"], s["round"]): s for s in map(json.loads, lines)}
    assert len(samples) == 6 and all(s["status"] == "ok" for s in samples.values())
    for (problem, round_), sample in samples.items():
        if round_ > 1:
            before = samples[(problem, round_ - 1)]
            reusable = before["prompt_tokens"] + before["completion_tokens"]
            assert sample["cached_prompt_tokens"] >= reusable - 4, (problem, round_)
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert (out / "samples.jsonl").read_text().splitlines() == lines
    assert "samples to generate" not in again.stderr
