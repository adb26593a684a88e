"""The OpenAI-compatible engine: backoff arithmetic by hand, then end to end against a real
llama.cpp server on loopback (killed and restarted mid-run) and a 429-answering proxy."""

import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter

import pytest

from seqpar.engines.openai import Backoff, OpenAIEngine, ServerUnavailable, retry_after_seconds
from seqpar.errors import SeqparError
from seqpar.sampling import SamplingParams
from seqpar.types import Message, Request

from .conftest import TEST_MODEL
from .servers import LlamaServer, ThrottlingProxy, free_port
from .test_e2e import cli


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_backoff_is_capped_exponential_with_jitter_and_obeys_retry_after():
    backoff, rng = Backoff(retries=5, base=0.5, cap=4.0), random.Random(0)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        delays = [backoff.delay(attempt, None, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling and max(delays) > ceiling / 2
    assert backoff.delay(0, 2.5, rng) == 2.5
    assert backoff.delay(0, 60.0, rng) == 4.0  # capped: a hostile header cannot stall a run


def engine(url: str, **options) -> OpenAIEngine:
    return OpenAIEngine(TEST_MODEL, [url], **options)


def test_response_parsing_keeps_reasoning_usage_and_cached_tokens():
    payload = {
        "choices": [
            {
                "index": 0,
                "message": {"content": "x = 4", "reasoning_content": "2+2"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 96},
        },
    }
    (completion,) = engine("http://x/v1").parse(payload, [7], 0.5)
    assert completion.text == "<think>2+2</think>x = 4"
    assert (completion.prompt_tokens, completion.completion_tokens) == (120, 9)
    assert completion.cached_prompt_tokens == 96 and completion.seed == 7
    with pytest.raises(SeqparError, match="does not support n>1"):
        engine("http://x/v1").parse(payload, [1, 2], 0.5)


def test_a_dead_server_fails_with_its_address_after_the_retry_budget():
    url = f"http://127.0.0.1:{free_port()}/v1"
    dead = engine(url, backoff=Backoff(retries=2, base=0.01))
    request = Request((Message("user", "hi"),), (1,))
    with pytest.raises(ServerUnavailable, match=rf"no answer from {url} after 3 tries"):
        asyncio.run(dead.complete(request, SamplingParams(max_tokens=4)))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = LlamaServer().start(tmp_path_factory.mktemp("server") / "server.log")
    yield running
    running.kill()


ARGS = ["--task", "arith", "--difficulty", "1", "--max-tokens", "40", "--no-progress"]


def rows_of(out):
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "samples"), [("parallel", 9), ("sequential", 9), ("hybrid", 12)]
)
def test_runs_against_a_real_llama_cpp_server(server, tmp_path, strategy, samples):
    result = cli(
        "run", "--engine", "openai", "--base-url", server.url, "--model", TEST_MODEL,
        "--strategy", strategy, "--limit", "3", "--n", "3", "--max-in-flight", "2",
        *ARGS, "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = rows_of(tmp_path)
    assert len(rows) == samples and {r["status"] for r in rows} == {"ok"}
    assert all(r["completion_tokens"] > 0 and r["prompt_tokens"] > 0 for r in rows)
    assert len({r["seed"] for r in rows}) == samples
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["engine"]["engine"] == "openai"
    if strategy == "sequential":
        first = rows[0]["problem_id"]
        by_round = {r["round"]: r["prompt_tokens"] for r in rows if r["problem_id"] == first}
        assert by_round[1] < by_round[2] < by_round[3]


@pytest.mark.slow
def test_server_killed_mid_run_then_restarted_resumes_with_nothing_lost(tmp_path):
    server = LlamaServer().start(tmp_path / "server.log")
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "seqpar.cli", "run", "--engine", "openai",
        "--base-url", server.url, "--model", TEST_MODEL, "--strategy", "sequential",
        "--limit", "4", "--n", "3", "--max-in-flight", "2", "--http-retries", "2",
        *ARGS, "--out", str(out),
    ]  # fmt: skip
    try:
        run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            samples = out / "samples.jsonl"
            if samples.exists() and len(samples.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        server.kill()
        _, stderr = run.communicate(timeout=120)
        assert run.returncode != 0
        assert f"no answer from {server.url}" in stderr and "re-run" in stderr
        stored_before = len(rows_of(out))
        assert 3 <= stored_before < 12
        server.start(tmp_path / "server.log")
        again = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
    finally:
        server.kill()
    rows = rows_of(out)
    keys = Counter((r["problem_id"], r["chain"], r["round"]) for r in rows)
    assert len(keys) == 12 and set(keys.values()) == {1}


@pytest.mark.slow
def test_backoff_through_a_429_proxy_honours_retry_after_and_fans_out_seeds(server):
    proxy = ThrottlingProxy(server.url, refusals=2, retry_after="1")
    client = engine(proxy.url, backoff=Backoff(retries=3, base=0.01))
    request = Request((Message("user", "Say hello."),), (11, 12, 13))
    start = time.monotonic()
    completions = asyncio.run(client.complete(request, SamplingParams(max_tokens=8)))
    proxy.shutdown()
    assert [c.seed for c in completions] == [11, 12, 13]
    assert all(c.completion_tokens > 0 for c in completions)
    assert len(proxy.bodies) == 5  # two refused, three forwarded
    assert sorted(b["seed"] for b in proxy.bodies[2:]) == [11, 12, 13]
    assert all(b["n"] == 1 for b in proxy.bodies)
    assert time.monotonic() - start >= 1.0  # the refused requests waited Retry-After: 1
