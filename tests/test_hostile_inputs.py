"""Hostile and broken inputs: each gets a clear error or a recorded verdict, never a crash or
a hang of the whole run."""

import asyncio
import http.server
import json
import time

import pytest

from seqpar.engines.openai import Backoff, OpenAIEngine, ServerUnavailable
from seqpar.errors import SeqparError
from seqpar.registry import get_task
from seqpar.sampling import SamplingParams
from seqpar.tasks import select
from seqpar.tasks.extract import MAX_ANSWER_CHARS
from seqpar.types import Message, Problem, Request

from .servers import LoopbackServer

GSM8K_ROW = {"question": "1+1?", "final": "2"}


def gsm8k_from(tmp_path, content: bytes):
    (tmp_path / "gsm8k_test.jsonl").write_bytes(content)
    return get_task("gsm8k", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"question": "caf\xe9", "final": "2"}\n', r"gsm8k_test.jsonl:1: not UTF-8 \(byte 17\)"),
        (b"\n" + json.dumps(GSM8K_ROW).encode() + b"\n{oops\n", r":3: malformed JSON"),
        (b"[1, 2]\n", r":1: expected a JSON object per line"),
        (b'{"question": "q"}\n', r":1: missing or empty field\(s\) final"),
        (b'{"question": null, "final": "2"}\n', r":1: missing or empty field\(s\) question"),
        (b"\n\n", r"holds no problems"),
    ],
)
def test_broken_dataset_files_are_refused_naming_file_and_line(tmp_path, content, message):
    with pytest.raises(SeqparError, match=message):
        gsm8k_from(tmp_path, content).load()


def test_duplicate_problem_ids_are_refused_before_anything_runs(tmp_path):
    rows = [{**GSM8K_ROW, "id": "a"}, {**GSM8K_ROW, "id": "b"}, {**GSM8K_ROW, "id": "a"}]
    task = gsm8k_from(tmp_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    with pytest.raises(SeqparError, match=r"duplicate problem id\(s\) 'a'; every problem"):
        select(task.load(), None)


ARITH = get_task("arith")
PROBLEM = Problem("p", "q", "12")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no answer found"),
        ("the answer is 12 and " * 500_000, "no answer found"),  # 10 MB, one endless line
        ("<think>" + "so the answer is 12 " * 400_000, "no answer found"),  # never closed
        ("x{y}(" * 2_000_000, "no answer found"),
        ("\\boxed{" * 1_000_000, "no answer found"),
        ("\\boxed{" + "1" * (MAX_ANSWER_CHARS + 1) + "}", "no answer found"),
    ],
)
def test_degenerate_model_outputs_grade_quickly_as_no_answer(text, reason):
    start = time.perf_counter()
    grade = ARITH.grade(PROBLEM, text)
    assert (grade.answer, grade.correct, grade.reason) == (None, False, reason)
    assert time.perf_counter() - start < 10


def test_degenerate_code_output_is_graded_not_crashed():
    humaneval = get_task("humaneval")
    problem = humaneval.load()[0]
    for text in ("", "```python\n" * 200_000, "def f(:\n" * 100_000):
        grade = humaneval.grade(problem, text)
        assert grade.correct is False and grade.reason


def test_code_that_prints_forever_is_stopped_and_graded_as_failing():
    humaneval = get_task("humaneval")
    problem = humaneval.load()[0]
    code = (
        f"```python\ndef {problem.meta['spec'].entry}(*a):\n    while True: print('x' * 1000)\n```"
    )
    start = time.perf_counter()
    grade = humaneval.grade(problem, code)
    assert grade.correct is False and time.perf_counter() - start < 60


class Misbehaving(LoopbackServer):
    """A loopback 'server' that answers garbage JSON, or accepts and then stalls."""

    def __init__(self, mode: str) -> None:
        self.mode, self.requests = mode, 0
        super().__init__(MisbehavingHandler)


class MisbehavingHandler(http.server.BaseHTTPRequestHandler):
    server: Misbehaving

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        if self.server.mode == "stall":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"choices": [')  # and then nothing more
            self.wfile.flush()
            time.sleep(5)
            return
        body = (
            b'{"choices": [{"message": {"content": "hi"' if self.server.mode == "garbage" else b"[]"
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("mode", "last"),
    [("garbage", "JSONDecodeError"), ("shape", "TypeError"), ("stall", "ReadTimeout")],
)
def test_a_server_sending_garbage_or_stalling_fails_clearly_after_retries(mode, last):
    server = Misbehaving(mode)
    engine = OpenAIEngine("m", [server.url], backoff=Backoff(retries=1, base=0.01), timeout=1.0)
    request = Request((Message("user", "hi"),), (1,))
    start = time.perf_counter()
    with pytest.raises(ServerUnavailable, match=rf"after 2 tries \(last: {last}"):
        asyncio.run(engine.complete(request, SamplingParams(max_tokens=4)))
    assert server.requests == 2 and time.perf_counter() - start < 10
    server.shutdown()
