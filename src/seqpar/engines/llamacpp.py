"""llama.cpp in process (llama-cpp-python): fast CPU generation of GGUF models with prefix reuse.

One context holds one KV state. Runs give this engine one chain at a time (it allows one
in flight), so round r+1 of a chain finds round r's prompt and completion in the KV cache
and evaluates only the tokens that are new: the feedback and the next instruction. Each
completion records how many prompt tokens were reused (`cached_prompt_tokens`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from seqpar.engines import derive_seed, generate_concurrently
from seqpar.errors import SeqparError
from seqpar.sampling import SamplingParams
from seqpar.types import Completion, Message, Request


def reused_prefix(cached: Sequence[int], prompt: Sequence[int]) -> int:
    """Prompt tokens llama-cpp-python's `generate` keeps from the KV cache: the common
    prefix, less one when it covers the whole prompt (the last token is replayed for logits)."""
    common = 0
    for a, b in zip(cached, prompt, strict=False):
        if a != b:
            break
        common += 1
    return common - 1 if common == len(prompt) and common > 0 else common


class LlamaCppEngine:
    """An `Engine` over a GGUF model in llama-cpp-python, one completion at a time."""

    max_in_flight = 1

    def __init__(self, llama: Any, path: Path, sha256: str, name: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llama = llama
        self.path = path
        self.sha256 = sha256
        self.name = name
        self.lock = threading.Lock()
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise SeqparError(f"{path} has no chat template in its metadata; use --engine hf")
        vocab = llama._model

        def text_of(token: int) -> str:
            return vocab.token_get_text(token) if token != -1 else ""

        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=text_of(llama.token_eos()),
            bos_token=text_of(llama.token_bos()),
        )

    @classmethod
    def load(
        cls,
        model: str,
        *,
        max_context: int | None = None,
        threads: int | None = None,
    ) -> LlamaCppEngine:
        """Load a bundled name or a .gguf path on `threads` threads (default: every core);
        the context is the model's, capped at 8,192 tokens unless `max_context` says otherwise."""
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise SeqparError(
                "--engine llamacpp needs llama-cpp-python: pip install 'seqpar[llamacpp]' "
                "(or ./setup.sh)"
            ) from error
        from seqpar.engines.models import BUNDLED, bundled_gguf, resolve, sha256_of

        spec = resolve(model)
        if spec.kind == "bundled":
            path, sha = bundled_gguf(BUNDLED[spec.name]), BUNDLED[spec.name].sha256
        elif spec.kind == "gguf":
            path = Path(spec.location)
            sha = sha256_of([path])
        else:
            raise SeqparError(
                f"--engine llamacpp loads GGUF files; {model!r} is a {spec.kind} model: "
                "use a bundled name, a .gguf path, or --engine hf"
            )
        llama = Llama(
            model_path=str(path),
            n_ctx=max_context or 8192,
            n_threads=threads or os.cpu_count(),
            n_batch=512,
            verbose=False,
        )
        return cls(llama, path, sha, spec.name)

    @property
    def context_length(self) -> int:
        import llama_cpp

        trained = llama_cpp.llama_model_n_ctx_train(self.llama.model)
        return min(int(self.llama.n_ctx()), trained) if trained > 0 else int(self.llama.n_ctx())

    def describe(self) -> dict[str, Any]:
        import llama_cpp

        return {
            "engine": "llamacpp",
            "model": self.name,
            "model_path": str(self.path),
            "model_sha256": self.sha256,
            "context_length": self.context_length,
            "threads": self.llama.n_threads,
            "llama_cpp_python": llama_cpp.__version__,
        }

    def render(self, messages: Sequence[Message]) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return self.formatter(messages=chat).prompt

    def tokens(self, messages: Sequence[Message]) -> list[int]:
        return self.llama.tokenize(self.render(messages).encode(), add_bos=True, special=True)

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.tokens(messages))

    def generate(
        self, requests: Sequence[Request], params: SamplingParams
    ) -> Iterator[tuple[int, list[Completion]]]:
        return generate_concurrently(self, requests, params)

    async def complete(self, request: Request, params: SamplingParams) -> list[Completion]:
        base = params.seed if params.seed is not None else derive_seed(time.time_ns())
        seeds = list(request.seeds) or [derive_seed(base, j) for j in range(params.n)]
        return await asyncio.to_thread(self.complete_now, request.messages, params, seeds)

    def complete_now(
        self, messages: Sequence[Message], params: SamplingParams, seeds: Sequence[int]
    ) -> list[Completion]:
        with self.lock:
            return [self.one(self.tokens(messages), params, seed) for seed in seeds]

    def one(self, prompt: list[int], params: SamplingParams, seed: int) -> Completion:
        """One sample; the KV cache keeps whatever prefix it shares with the last one."""
        import llama_cpp

        start = time.perf_counter()
        reused = reused_prefix(self.llama._input_ids.tolist(), prompt)
        budget = min(params.max_tokens, self.context_length - len(prompt))
        self.llama.set_seed(seed & 0xFFFFFFFF)
        generated: list[int] = []
        finish = "length"
        vocab = self.llama._model.vocab
        for token in self.llama.generate(
            prompt,
            temp=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else 0,
            min_p=params.min_p,
            repeat_penalty=1.0,
        ):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                finish = "stop"
                break
            generated.append(token)
            if params.stop and self.stopped(generated, params.stop):
                finish = "stop"
                break
            if len(generated) >= budget:
                break
        text = self.llama.detokenize(generated).decode("utf-8", errors="replace")
        cuts = [text.find(s) for s in params.stop if s in text]
        return Completion(
            text=text[: min(cuts)] if cuts else text,
            prompt_tokens=len(prompt),
            completion_tokens=len(generated),
            finish_reason=finish,
            seed=seed,
            wall_time=time.perf_counter() - start,
            cached_prompt_tokens=reused,
        )

    def stopped(self, generated: list[int], stop: Sequence[str]) -> bool:
        tail = self.llama.detokenize(generated[-16:]).decode("utf-8", errors="ignore")
        return any(s in tail for s in stop)
