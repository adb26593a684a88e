"""OpenAI-compatible HTTP engine: vLLM, SGLang, llama.cpp's server, hosted APIs.

Requests are async with a bounded number in flight, spread evenly over one or several base
URLs. Transient failures (connection errors, timeouts, 408/429/5xx, unreadable bodies) are
retried with exponential backoff and full jitter, honouring `Retry-After`; when the retry
budget is spent the run stops with the server named, and re-running the command resumes.
Each sample is its own request with its own seed (`n`=1), unless `server_n` is set: then one
request asks for all `n` samples (cheaper on servers that share the prompt's prefill).
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import os
import random
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from seqpar.engines import derive_seed, generate_concurrently
from seqpar.errors import SeqparError
from seqpar.sampling import SamplingParams
from seqpar.types import Completion, Message, Request

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
APIS = ("chat", "completions")


class ServerUnavailable(SeqparError):
    """The server did not answer within the retry budget."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: try k waits uniform(0, min(cap, base·2^k))."""

    retries: int = 6
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        return rng.uniform(0, min(self.cap, self.base * 2**attempt))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, moment - (time.time() if now is None else now))


class OpenAIEngine:
    """An `Engine` over OpenAI-compatible servers (chat or completions API)."""

    def __init__(
        self,
        model: str,
        base_urls: Sequence[str],
        *,
        api: str = "chat",
        api_key: str | None = None,
        max_in_flight: int = 16,
        server_n: bool = False,
        timeout: float = 600.0,
        backoff: Backoff | None = None,
        tokenizer: Any = None,
        model_sha256: str | None = None,
        max_context: int | None = None,
    ) -> None:
        if api not in APIS:
            raise SeqparError(f"unknown --api {api!r}; known: {', '.join(APIS)}")
        if not base_urls:
            raise SeqparError(
                "--engine openai needs --base-url URL (or OPENAI_BASE_URL), "
                "e.g. http://localhost:8000/v1"
            )
        if api == "completions" and tokenizer is None:
            raise SeqparError(
                "--api completions renders the chat template locally and needs a tokenizer: "
                "pass --tokenizer (a bundled name, model directory or hub id)"
            )
        self.model = model
        self.base_urls = [url.rstrip("/") for url in base_urls]
        self.api = api
        self.api_key = api_key
        self.max_in_flight = max_in_flight
        self.server_n = server_n
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self.tokenizer = tokenizer
        self.model_sha256 = model_sha256
        self.max_context = max_context
        self.rng = random.Random()
        self.turn = itertools.count()
        self.sessions: weakref.WeakKeyDictionary[Any, tuple[Any, asyncio.Semaphore]] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def load(
        cls,
        model: str,
        *,
        base_url: Sequence[str] | str | None = None,
        api: str = "chat",
        api_key_env: str = "OPENAI_API_KEY",
        max_in_flight: int = 16,
        server_n: bool = False,
        http_retries: int = 6,
        request_timeout: float = 600.0,
        tokenizer: str | None = None,
        max_context: int | None = None,
    ) -> OpenAIEngine:
        """An engine for `model` as the server names it (settings: `OpenAIEngineSpec`); the
        tokenizer (for prompt lengths and the completions API) is `tokenizer`, else `model`
        when it resolves locally."""
        urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
        if not urls and os.environ.get("OPENAI_BASE_URL"):
            urls = os.environ["OPENAI_BASE_URL"].split(",")
        local_tokenizer, sha = load_tokenizer(tokenizer or model, required=tokenizer is not None)
        return cls(
            model,
            urls,
            api=api,
            api_key=os.environ.get(api_key_env),
            max_in_flight=max_in_flight,
            server_n=server_n,
            timeout=request_timeout,
            backoff=Backoff(retries=http_retries),
            tokenizer=local_tokenizer,
            model_sha256=sha,
            max_context=max_context,
        )

    @property
    def context_length(self) -> int:
        native = getattr(self.tokenizer, "model_max_length", None)
        native = native if isinstance(native, int) and native < 10**7 else 32768
        return min(native, self.max_context) if self.max_context else native

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "openai",
            "model": self.model,
            "model_sha256": self.model_sha256 or f"server:{self.model}",
            "api": self.api,
            "base_urls": self.base_urls,
            "max_in_flight": self.max_in_flight,
            "server_n": self.server_n,
            "context_length": self.context_length,
            "prompt_tokens_counted_by": "tokenizer" if self.tokenizer is not None else "estimate",
        }

    def render(self, messages: Sequence[Message]) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Exact with a local tokenizer; otherwise an estimate (4 characters a token)."""
        if self.tokenizer is None:
            return sum(len(m.content) for m in messages) // 4 + 4 * len(messages)
        return len(self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"])

    def generate(
        self, requests: Sequence[Request], params: SamplingParams
    ) -> Iterator[tuple[int, list[Completion]]]:
        return generate_concurrently(self, requests, params)

    async def complete(self, request: Request, params: SamplingParams) -> list[Completion]:
        """The completions of one request: one per seed, in seed order."""
        base = params.seed if params.seed is not None else random.getrandbits(63)
        seeds = list(request.seeds) or [derive_seed(base, j) for j in range(params.n)]
        if self.server_n and len(seeds) > 1:
            return await self.call(request.messages, params, seeds)
        batches = await asyncio.gather(
            *(self.call(request.messages, params, [seed]) for seed in seeds)
        )
        return [completion for batch in batches for completion in batch]

    def session(self) -> tuple[Any, asyncio.Semaphore]:
        """This event loop's HTTP client and in-flight limit (both are bound to a loop)."""
        import httpx

        loop = asyncio.get_running_loop()
        if loop not in self.sessions:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            limits = httpx.Limits(max_connections=self.max_in_flight)
            client = httpx.AsyncClient(headers=headers, timeout=self.timeout, limits=limits)
            self.sessions[loop] = (client, asyncio.Semaphore(self.max_in_flight))
        return self.sessions[loop]

    def body(
        self, messages: Sequence[Message], params: SamplingParams, seeds: Sequence[int]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": seeds[0],
            "n": len(seeds),
        }
        if params.top_k > 0:
            body["top_k"] = params.top_k
        if params.min_p > 0:
            body["min_p"] = params.min_p
        if params.stop:
            body["stop"] = list(params.stop)
        if self.api == "chat":
            body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        else:
            body["prompt"] = self.render(messages)
        return body

    async def call(
        self, messages: Sequence[Message], params: SamplingParams, seeds: Sequence[int]
    ) -> list[Completion]:
        """One HTTP request for len(seeds) samples, retried on transient failures."""
        client, in_flight = self.session()
        body = self.body(messages, params, seeds)
        path = "/chat/completions" if self.api == "chat" else "/completions"
        last = ""
        for attempt in range(self.backoff.retries + 1):
            url = self.base_urls[next(self.turn) % len(self.base_urls)] + path
            retry_after = None
            async with in_flight:
                start = time.perf_counter()
                try:
                    response = await client.post(url, json=body)
                    if response.status_code == 200:
                        return self.parse(response.json(), seeds, time.perf_counter() - start)
                    last = f"HTTP {response.status_code}: {response.text[:300]}"
                    if response.status_code not in RETRYABLE_STATUS:
                        raise SeqparError(f"server {url} refused the request: {last}")
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
                except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
                    last = f"{type(error).__name__}: {error}"  # unreadable body
                except Exception as error:
                    if not is_transient(error):
                        raise
                    last = f"{type(error).__name__}: {error}"
            if attempt < self.backoff.retries:
                await asyncio.sleep(self.backoff.delay(attempt, retry_after, self.rng))
        raise ServerUnavailable(
            f"no answer from {', '.join(self.base_urls)} after {self.backoff.retries + 1} tries "
            f"(last: {last}); check the server is up, then re-run the same command to resume"
        )

    def parse(
        self, payload: dict[str, Any], seeds: Sequence[int], elapsed: float
    ) -> list[Completion]:
        """Completions from a response body; usage is shared evenly when n > 1."""
        choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
        if len(choices) != len(seeds):
            raise SeqparError(
                f"the server returned {len(choices)} choices for n={len(seeds)}; it does not "
                "support n>1: run without --server-n"
            )
        usage = payload.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        completions = []
        for choice, seed in zip(choices, seeds, strict=True):
            if self.api == "chat":
                message = choice["message"]
                text = message.get("content") or ""
                reasoning = message.get("reasoning_content") or message.get("reasoning")
                if reasoning:
                    text = f"<think>{reasoning}</think>{text}"
            else:
                text = choice["text"]
            completions.append(
                Completion(
                    text=text,
                    prompt_tokens=int(usage.get("prompt_tokens", 0)),
                    completion_tokens=round(int(usage.get("completion_tokens", 0)) / len(seeds)),
                    finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                    seed=seed,
                    wall_time=elapsed / len(seeds),
                    cached_prompt_tokens=int(details.get("cached_tokens") or 0),
                )
            )
        return completions


def is_transient(error: Exception) -> bool:
    import httpx

    return isinstance(error, httpx.TimeoutException | httpx.TransportError)


def load_tokenizer(name: str, *, required: bool) -> tuple[Any, str | None]:
    """(HF tokenizer, weights sha256) for a model that resolves locally; (None, None) for a
    name only the server knows, unless a tokenizer was asked for explicitly."""
    from transformers import AutoTokenizer

    from seqpar.engines.models import materialize, resolve

    try:
        spec = resolve(name)
        if spec.kind == "hub":  # the tokenizer's files only, never the weights
            return (AutoTokenizer.from_pretrained(name), None) if required else (None, None)
        local = materialize(spec)
        return AutoTokenizer.from_pretrained(local.path), local.sha256
    except SeqparError:
        if required:
            raise
        return None, None
