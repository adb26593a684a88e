"""Real servers on loopback for engine tests: llama.cpp's OpenAI-compatible server with the
bundled SmolLM2 GGUF, and a proxy in front of it that answers 429 a set number of times."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from seqpar.engines.models import BUNDLED, bundled_gguf

from .conftest import TEST_MODEL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LlamaServer:
    """`python -m llama_cpp.server` serving the bundled SmolLM2 as TEST_MODEL."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, log: Path) -> LlamaServer:
        self.log = log
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(bundled_gguf(BUNDLED[TEST_MODEL])),
            "--model_alias", TEST_MODEL,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", "4096", "--n_threads", "2", "--verbose", "false",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("llama_cpp.server did not come up in 120 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class LoopbackServer(http.server.ThreadingHTTPServer):
    """An HTTP server on a free loopback port, serving from a daemon thread."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ThrottlingProxy(LoopbackServer):
    """Forwards POSTs to `upstream`, first answering `refusals` of them with 429."""

    def __init__(self, upstream: str, refusals: int, retry_after: str | None) -> None:
        self.upstream, self.refusals, self.retry_after = upstream, refusals, retry_after
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        super().__init__(ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: ThrottlingProxy

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.bodies.append(json.loads(body))
            refuse = self.server.refusals > 0
            self.server.refusals -= refuse
        if refuse:
            self.send_response(429)
            if self.server.retry_after is not None:
                self.send_header("Retry-After", self.server.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        upstream = httpx.post(
            self.server.upstream + self.path.removeprefix("/v1"),
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(upstream.content)

    def log_message(self, format: str, *args: object) -> None:
        pass
