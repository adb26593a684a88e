"""Hugging Face transformers engine: continuously batched sampling on CPU or CUDA with
per-row seeds.

Rows (prompt × sample) join one running batch as room frees up and leave it when they end;
prompts that begin like an earlier row's text reuse its keys and values
(`seqpar.engines.batcher`). Each row samples from its own seeded generator, so a row's text
depends only on its seed and its batch's numerics: the same run on the same machine and
settings is reproducible. `generate` takes a list of requests; `complete` takes one request
from an event loop, where the scheduler's chains feed the batch as their rounds finish.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from seqpar.engines import derive_seed
from seqpar.engines.batcher import Batcher, Finished, PrefixCache, Row
from seqpar.engines.models import LocalModel, materialize, resolve
from seqpar.errors import SeqparError
from seqpar.sampling import SamplingParams
from seqpar.types import Completion, Message, Request

THINK_OPEN = "<think>"
PREFIX_CACHE_BYTES = 1 << 30  # finished rows' keys and values kept for reuse
CPU_KV_BYTES = 2 << 30  # the running batch's keys and values, on CPU
# Rows sampled at once on CPU: larger groups' vocabulary-wide temporaries (4.9 MB per 8 rows)
# cost more to allocate than to compute (64 rows of 151,936 tokens: 49 ms at once, 8 ms 8 at
# a time on this project's 2-core machine).
SAMPLE_ROWS = 8
DRAW_BLOCK = 128  # tokens per block of `inverse_cdf`


@dataclass(frozen=True)
class Owner:
    """Whose a batcher row is: the text its completion starts with (a think tag the prompt
    opened), its place among its request's samples, and who awaits it (from `complete`)."""

    prefix: str
    sample: int
    request: int
    future: Any = None


class HFEngine:
    """An `Engine` over a transformers causal LM, and a `ConcurrentEngine` on an event loop."""

    # Chains hold a slot from first round to last; rows, not chains, fill the batch.
    max_in_flight = 4096
    # Grading off the event loop would let wall-clock time decide which rows share a
    # decode step, and with it (bfloat16 rounding) the texts: the scheduler grades inline.
    decodes_in_event_loop = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        local: LocalModel,
        *,
        token_budget: int | None = None,
        max_batch: int | None = None,
        max_context: int | None = None,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.local = local
        # On CPU, 128 rows decode only 8-19% more tokens/s than 64 but each step takes
        # 1.7-1.9x as long, and chains wait on their rows (bench/decode_step.py); host
        # memory is plentiful, so 64 long rows fit: 2 GiB of keys and values, at most
        # 131,072 tokens. GPUs: 64 rows, 32,768 tokens.
        on_cpu = next(model.parameters()).device.type == "cpu"
        per_token = kv_bytes_per_token(model)
        cpu_budget = min(131072, CPU_KV_BYTES // per_token)
        self.token_budget = token_budget or (cpu_budget if on_cpu else 32768)
        self.max_batch = max_batch or 64
        self.max_context = max_context
        self.progress = progress
        self.ablation: Any = None
        self.ablated: tuple[tuple[int, int], ...] = ()
        self.ablation_mode = "zero"
        # transformers renamed `past_key_values` to `cache` (5.24); take whichever exists.
        parameters = inspect.signature(model.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.prefix_capacity = PREFIX_CACHE_BYTES // per_token
        self.batcher: Batcher | None = None
        self.driving: tuple[asyncio.AbstractEventLoop, asyncio.Event, Any] | None = None
        self.pending: set[asyncio.Future[Finished]] = set()  # what requests await, unresolved
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        )

    @classmethod
    def load(
        cls, model: str, *, device: str = "auto", dtype: str = "auto", **options: Any
    ) -> HFEngine:
        """Resolve, convert if needed, and load `model` onto `device`."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging

        local = materialize(resolve(model))
        logging.disable_progress_bar()  # the per-tensor loading bar; generation has its own
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") or cpu_has_bf16() else "float32"
        tokenizer = AutoTokenizer.from_pretrained(local.path)
        network = AutoModelForCausalLM.from_pretrained(local.path, dtype=getattr(torch, dtype))
        network.to(device).eval()
        if device == "cpu":
            from seqpar.engines.cpu_attention import install

            install(network)
        return cls(network, tokenizer, local, **options)

    def ablate(self, heads: Sequence[tuple[int, int]], mode: str = "zero") -> None:
        """From now on, generate with these (layer, head) outputs zeroed or mean-replaced;
        an empty list restores the plain model."""
        from seqpar.engines.ablation import HeadAblation

        if self.batcher is not None and self.batcher.busy:
            raise SeqparError("cannot switch heads while the hf engine is generating")
        self.batcher = None  # its cached prefixes were computed with other heads
        if self.ablation is not None:
            self.ablation.remove()
            self.ablation = None
        if heads:
            self.ablation = HeadAblation(self.model, heads, mode)
        self.ablated, self.ablation_mode = tuple(heads), mode

    @property
    def context_length(self) -> int:
        native = int(getattr(self.model.config, "max_position_embeddings", None) or 2048)
        return min(native, self.max_context) if self.max_context else native

    @property
    def layers(self) -> int:
        from seqpar.engines.ablation import attention_modules

        return len(attention_modules(self.model))

    @property
    def heads_per_layer(self) -> int:
        return int(self.model.config.num_attention_heads)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "hf",
            "model": self.local.spec.name,
            "model_kind": self.local.spec.kind,
            "model_path": str(self.local.path),
            "model_sha256": self.local.sha256,
            "device": str(self.device),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "context_length": self.context_length,
            "token_budget": self.token_budget,
            "max_batch": self.max_batch,
            "ablated_heads": [f"{layer}.{head}" for layer, head in self.ablated],
            "ablation": self.ablation_mode if self.ablated else None,
        }

    def render(self, messages: Sequence[Message]) -> str:
        """The chat template applied to `messages`, ready for the assistant's turn."""
        chat = [{"role": m.role, "content": m.content} for m in messages]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=True
            )
        return "".join(f"{m['role']}: {m['content']}\n" for m in chat) + "assistant: "

    def encode(self, messages: Sequence[Message]) -> tuple[list[int], str]:
        text = self.render(messages)
        prefix = THINK_OPEN + "\n" if text.rstrip().endswith(THINK_OPEN) else ""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"], prefix

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.encode(messages)[0])

    def new_batcher(self, params: SamplingParams) -> Batcher:
        """A batcher with an empty prefix cache: what a session generates depends only on
        what it is asked, not on what the engine computed before."""
        if self.batcher is not None and self.batcher.busy:
            raise SeqparError(
                "the hf engine is already generating; one session at a time (and one "
                "sampling setting per session)"
            )
        self.batcher = Batcher(
            self.model,
            params,
            PrefixCache(self.prefix_capacity),
            eos_ids=self.eos_ids,
            pad_id=self.pad_id,
            context_length=self.context_length,
            max_batch=self.max_batch,
            token_budget=self.token_budget,
            cache_argument=self.cache_argument,
            stops=lambda tokens: self.hits_stop(tokens, params.stop),
            sample=sample_tokens,
        )
        return self.batcher

    def rows(self, request: Request, params: SamplingParams, base: int, index: int) -> list[Row]:
        """One batcher row per sample of `request`: its seeds, else seeds derived from
        `base` (the run's seed) and the request's `index`."""
        ids, prefix = self.encode(request.messages)
        seeds = request.seeds or [derive_seed(base, index, j) for j in range(params.n)]
        return [
            Row(tuple(ids), seed, Owner(prefix, j, index), request.priority)
            for j, seed in enumerate(seeds)
        ]

    def completion(self, finished: Finished, params: SamplingParams) -> Completion:
        return Completion(
            text=finished.row.owner.prefix + self.decode(finished.tokens, params.stop),
            prompt_tokens=len(finished.row.ids),
            completion_tokens=len(finished.tokens),
            finish_reason=finished.reason,
            seed=finished.row.seed,
            wall_time=finished.seconds,
            cached_prompt_tokens=finished.reused,
        )

    def generate(
        self, requests: Sequence[Request], params: SamplingParams
    ) -> Iterator[tuple[int, list[Completion]]]:
        from tqdm.auto import tqdm

        batcher = self.new_batcher(params)
        base = params.seed if params.seed is not None else secrets.randbits(63)
        rows = [
            row
            for index, request in enumerate(requests)
            for row in self.rows(request, params, base, index)
        ]
        # Shortest prompts first: rows decoded together have similar widths.
        for row in sorted(rows, key=lambda r: len(r.ids)):
            batcher.submit(row)
        pending = Counter(row.owner.request for row in rows)
        done: dict[int, list[tuple[int, Completion]]] = {index: [] for index in pending}
        # Counted in tokens, so a long decode moves the bar (rate, ETA); the total is every
        # row's budget, cut down as rows stop early.
        bar = tqdm(
            total=len(rows) * params.max_tokens,
            desc="generate",
            unit="tok",
            disable=not self.progress,
            postfix=f"0/{len(rows)} samples",
        )
        ended = 0
        try:
            while batcher.busy:
                finished, generated = batcher.step()
                bar.update(generated)
                for item in finished:
                    ended += 1
                    bar.total -= params.max_tokens - len(item.tokens)
                    bar.set_postfix_str(f"{ended}/{len(rows)} samples")
                    index = item.row.owner.request
                    done[index].append((item.row.owner.sample, self.completion(item, params)))
                    pending[index] -= 1
                    if pending[index] == 0:
                        yield index, [c for _, c in sorted(done.pop(index), key=lambda p: p[0])]
        finally:
            batcher.reset()  # a caller that stops early leaves nothing running
            bar.close()

    async def complete(self, request: Request, params: SamplingParams) -> list[Completion]:
        """The samples of one request, decoded together with every other request in flight
        on this event loop (continuous batching)."""
        loop = asyncio.get_running_loop()
        wake = self.driver(loop)
        batcher = self.batcher
        if batcher is None or batcher.params != params:
            batcher = self.new_batcher(params)
        base = params.seed if params.seed is not None else secrets.randbits(63)
        futures = []
        for row in self.rows(request, params, base, 0):
            futures.append(loop.create_future())
            self.pending.add(futures[-1])
            batcher.submit(replace(row, owner=replace(row.owner, future=futures[-1])))
        wake.set()
        return [self.completion(finished, params) for finished in await asyncio.gather(*futures)]

    def driver(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """The event that wakes this loop's decoding task; the first use on a loop starts
        the task and a session (a new batcher, set up by the caller)."""
        if self.driving is None or self.driving[0] is not loop:
            if self.batcher is not None and self.batcher.busy:
                raise SeqparError("the hf engine is already generating on another event loop")
            self.batcher = None
            wake = asyncio.Event()
            self.driving = (loop, wake, loop.create_task(self.drive(wake)))
        return self.driving[1]

    async def drive(self, wake: asyncio.Event) -> None:
        """Step the batcher while it has rows, handing each finished row to its awaiting
        request; between steps the event loop runs, so chains submit their next rounds."""
        try:
            while True:
                batcher = self.batcher
                if batcher is None or not batcher.busy:
                    wake.clear()
                    await wake.wait()
                    continue
                try:
                    finished, _ = batcher.step()
                except Exception as error:
                    # Rows may be between the queue and the batch when a step fails: every
                    # request still waiting hears of the error.
                    for future in self.pending:
                        if not future.done():
                            future.set_exception(error)
                    self.pending.clear()
                    batcher.reset()
                    continue
                for item in finished:
                    self.pending.discard(item.row.owner.future)
                    if not item.row.owner.future.done():
                        item.row.owner.future.set_result(item)
                await asyncio.sleep(0)
        finally:  # this loop is ending: rows nobody awaits any more must not linger
            if self.driving is not None and self.driving[1] is wake:
                if self.batcher is not None:
                    self.batcher.reset()
                self.pending.clear()
                self.driving = None

    def hits_stop(self, tokens: list[int], stop: Sequence[str]) -> bool:
        if not stop:
            return False
        tail = self.tokenizer.decode(
            tokens[-max(8, max(map(len, stop)) + 4) :], skip_special_tokens=True
        )
        return any(s in tail for s in stop)

    def decode(self, tokens: list[int], stop: Sequence[str]) -> str:
        """Text of the generated tokens, cut before the first stop string (as vLLM does)."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cuts = [text.find(s) for s in stop if s in text]
        return text[: min(cuts)] if cuts else text


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys and values one token takes in the cache, over all layers."""
    config = model.config.get_text_config()
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * model.dtype.itemsize


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): then it is ~2× faster
    than float32 here; elsewhere bfloat16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends a turn: the generation config's and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    for name in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        token = tokenizer.convert_tokens_to_ids(name)
        if isinstance(token, int) and token != tokenizer.unk_token_id:
            ids.add(token)
    return ids


def sample_tokens(logits: Any, params: SamplingParams, generators: Sequence[Any]) -> Any:
    """One token per row: greedy at temperature 0, else temperature/top-k/min-p/top-p sampling."""
    import torch

    if params.greedy:
        return logits.argmax(dim=-1)
    if logits.device.type == "cpu" and len(logits) > SAMPLE_ROWS:  # a few rows at a time
        return torch.cat(
            [
                sample_tokens(
                    logits[start : start + SAMPLE_ROWS],
                    params,
                    generators[start : start + SAMPLE_ROWS],
                )
                for start in range(0, len(logits), SAMPLE_ROWS)
            ]
        )
    logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits.masked_fill_(logits < kth, float("-inf"))
    # Unnormalized probabilities, computed in place: `draw` needs no normalization.
    probs = logits.sub_(logits.max(dim=-1, keepdim=True).values).exp_()
    if params.min_p > 0:  # then top-p within what is left, as vLLM does
        probs.masked_fill_(probs < params.min_p, 0.0)  # the most probable token's is 1
    if params.top_p < 1:
        probs = nucleus(probs / probs.sum(dim=-1, keepdim=True), params.top_p)
    return draw(probs, generators)


def nucleus(probs: Any, top_p: float, candidates: int = 1024) -> Any:
    """`probs` with every token outside the top-p nucleus zeroed: the most probable tokens
    whose preceding mass is below `top_p`. Sorting the whole vocabulary is slow on CPU, so
    rows whose nucleus lies within their `candidates` most probable tokens sort only those."""
    import torch

    def keep(top: Any, order: Any) -> Any:
        before = top.cumsum(dim=-1) - top
        return torch.zeros_like(probs[: len(top)]).scatter(
            -1, order, top.masked_fill(before >= top_p, 0.0)
        )

    kept = keep(*torch.topk(probs, min(candidates, probs.shape[-1]), dim=-1))
    wide = (kept.sum(dim=-1) < top_p).nonzero().squeeze(-1)
    if len(wide):  # rare: a flat distribution, whose nucleus reaches past the candidates
        kept[wide] = keep(*probs[wide].sort(dim=-1, descending=True))
    return kept


def draw(probs: Any, generators: Sequence[Any]) -> Any:
    """One token per row from (unnormalized) `probs`, at a uniform draw of the row's own
    generator (`inverse_cdf`): one pass for the whole batch, where a multinomial call per row
    over a large vocabulary took half as long as the decode step itself."""
    import torch

    uniform = torch.cat(
        [torch.rand(1, generator=g, device=g.device, dtype=torch.float64) for g in generators]
    )
    return inverse_cdf(probs, uniform.to(probs.device))


def inverse_cdf(probs: Any, uniform: Any) -> Any:
    """Per row, the token where the cumulative sum of `probs` passes `uniform` × its total.
    Found in two steps, blocks of the vocabulary and then the one block the draw falls in:
    a float64 running sum over the whole vocabulary, with its conversions, took 20 of a
    sampling step's 30 ms at 30 rows."""
    import torch

    rows = len(probs)
    padded = torch.nn.functional.pad(probs, (0, -probs.shape[-1] % DRAW_BLOCK))
    blocks = padded.view(rows, -1, DRAW_BLOCK)
    # Blocks summed in float32, their running total in float64: float32 running sums over the
    # whole vocabulary would blur the tail's mass.
    ends = blocks.sum(dim=-1, dtype=torch.float32).double().cumsum(dim=-1)
    if not bool(torch.isfinite(ends[:, -1]).all() and (ends[:, -1] > 0).all()):
        raise SeqparError("the model's output has no valid distribution (nan or inf logits)")
    targets = (uniform * ends[:, -1])[:, None]
    block = torch.searchsorted(ends, targets, right=True).clamp(max=blocks.shape[1] - 1)
    before = torch.nn.functional.pad(ends, (1, 0)).gather(1, block)  # the blocks before
    within = blocks[torch.arange(rows, device=probs.device), block.squeeze(-1)]
    inner = within.double().cumsum(dim=-1) + before
    offset = torch.searchsorted(inner, targets, right=True).clamp(max=DRAW_BLOCK - 1)
    return nearest_possible((block * DRAW_BLOCK + offset).squeeze(-1), padded)


def nearest_possible(tokens: Any, probs: Any) -> Any:
    """`tokens`, each moved to the nearest token its row can draw (the last one before it,
    else the first after): the block sums and the sums within a block round differently, so
    a draw on a block's edge may land on a token of probability 0."""
    for row in (probs.gather(1, tokens[:, None]).squeeze(-1) <= 0).nonzero().flatten().tolist():
        possible = (probs[row] > 0).nonzero().flatten()
        earlier = possible[possible <= tokens[row]]
        tokens[row] = earlier[-1] if len(earlier) else possible[0]
    return tokens
