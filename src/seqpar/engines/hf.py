"""Hugging Face transformers engine: batched sampling on CPU or CUDA with per-row seeds.

Rows (prompt × sample) are sorted by prompt length and packed into batches under a token
budget, left-padded, and decoded with a KV cache; finished rows leave the batch at once.
Each row samples from its own seeded generator, so a row's text depends only on its seed
and its batch's numerics: the same run on the same machine and settings is reproducible.
"""

from __future__ import annotations

import inspect
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from seqpar.engines import derive_seed
from seqpar.engines.models import LocalModel, materialize, resolve
from seqpar.sampling import SamplingParams
from seqpar.types import Completion, Message, Request

THINK_OPEN = "<think>"


@dataclass(frozen=True)
class Row:
    request: int
    sample: int
    ids: list[int]
    seed: int
    prefix: str  # text the prompt already opened (a think tag) and the completion continues


def plan_batches(
    lengths: Sequence[int], max_new: int, token_budget: int, max_batch: int
) -> list[list[int]]:
    """Group row indices into batches of similar length whose padded size fits the budget."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted ascending, so the newest row is the longest: it sets the padded width.
        width = lengths[index] + max_new
        if current and ((len(current) + 1) * width > token_budget or len(current) >= max_batch):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class HFEngine:
    """An `Engine` over a transformers causal LM."""

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
        # Host memory is plentiful next to a GPU's, and a merged round (several runs at once)
        # that spills into a second batch costs a second pass of decode steps: on CPU a
        # 72-row call took 80 s in one batch vs 93 s as 64 + 8 (bench/batch_size.py).
        on_cpu = next(model.parameters()).device.type == "cpu"
        self.token_budget = token_budget or (65536 if on_cpu else 32768)
        self.max_batch = max_batch or (128 if on_cpu else 64)
        self.max_context = max_context
        self.progress = progress
        self.ablation: Any = None
        self.ablated: tuple[tuple[int, int], ...] = ()
        self.ablation_mode = "zero"
        # transformers renamed `past_key_values` to `cache` (5.24); take whichever exists.
        parameters = inspect.signature(model.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self.eos_ids = eos_token_ids(model, tokenizer)
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

    def generate(
        self, requests: Sequence[Request], params: SamplingParams
    ) -> Iterator[tuple[int, list[Completion]]]:
        from tqdm.auto import tqdm

        base = params.seed if params.seed is not None else secrets.randbits(63)
        rows = []
        for index, request in enumerate(requests):
            ids, prefix = self.encode(request.messages)
            seeds = request.seeds or [derive_seed(base, index, j) for j in range(params.n)]
            rows.extend(Row(index, j, ids, seed, prefix) for j, seed in enumerate(seeds))
        pending: dict[int, int] = {}
        for row in rows:
            pending[row.request] = pending.get(row.request, 0) + 1
        done: dict[int, list[tuple[int, Completion]]] = {index: [] for index in pending}
        batches = plan_batches(
            [len(r.ids) for r in rows], params.max_tokens, self.token_budget, self.max_batch
        )
        # Counted in tokens, so a batch that decodes for minutes moves the bar (rate, ETA);
        # the total is every row's budget, cut down as rows stop early.
        bar = tqdm(
            total=len(rows) * params.max_tokens,
            desc="generate",
            unit="tok",
            disable=not self.progress,
            postfix=f"0/{len(rows)} samples",
        )
        finished = 0
        for batch in batches:
            members = [rows[i] for i in batch]
            for row, completion in zip(
                members, self.generate_batch(members, params, bar), strict=True
            ):
                finished += 1
                bar.set_postfix_str(f"{finished}/{len(rows)} samples")
                done[row.request].append((row.sample, completion))
                pending[row.request] -= 1
                if pending[row.request] == 0:
                    yield (
                        row.request,
                        [c for _, c in sorted(done.pop(row.request), key=lambda p: p[0])],
                    )
        bar.close()

    def generate_batch(
        self, rows: Sequence[Row], params: SamplingParams, bar: Any
    ) -> list[Completion]:
        """Decode one left-padded batch; finished rows are dropped from the cache as they end."""
        import torch
        from transformers import DynamicCache

        start = time.perf_counter()
        device = self.device
        width = max(len(r.ids) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row.ids) :] = torch.tensor(row.ids)
            mask[i, width - len(row.ids) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        limits = [min(params.max_tokens, self.context_length - len(r.ids)) for r in rows]
        generators = [torch.Generator(device=device).manual_seed(r.seed) for r in rows]
        generated: list[list[int]] = [[] for _ in rows]
        finish = [""] * len(rows)
        alive = list(range(len(rows)))
        cache = DynamicCache(config=self.model.config)
        eos = torch.tensor(sorted(self.eos_ids), device=device)
        with torch.inference_mode():
            logits = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                **{self.cache_argument: cache},
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
            while alive:
                tokens = sample_tokens(logits.float(), params, [generators[i] for i in alive])
                is_eos = torch.isin(tokens, eos).tolist()
                keep = []
                for slot, (row_index, token) in enumerate(zip(alive, tokens.tolist(), strict=True)):
                    generated[row_index].append(token)
                    if is_eos[slot] or self.hits_stop(generated[row_index], params.stop):
                        finish[row_index] = "stop"
                    elif len(generated[row_index]) >= limits[row_index]:
                        finish[row_index] = "length"
                    else:
                        keep.append(slot)
                bar.update(len(alive))
                kept = set(keep)
                unused = sum(
                    params.max_tokens - len(generated[row])
                    for slot, row in enumerate(alive)
                    if slot not in kept
                )
                if unused:
                    bar.total -= unused
                    bar.refresh()
                if not keep:
                    break
                if len(keep) < len(alive):
                    index = torch.tensor(keep, device=device)
                    cache.batch_select_indices(index)
                    mask, positions, tokens = mask[index], positions[index], tokens[index]
                    alive = [alive[slot] for slot in keep]
                mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
                positions = positions[:, -1:] + 1
                logits = self.model(
                    input_ids=tokens[:, None],
                    attention_mask=mask,
                    position_ids=positions,
                    **{self.cache_argument: cache},
                    use_cache=True,
                ).logits[:, -1, :]
        share = (time.perf_counter() - start) / len(rows)
        return [
            Completion(
                text=row.prefix + self.decode(tokens, params.stop),
                prompt_tokens=len(row.ids),
                completion_tokens=len(tokens),
                finish_reason=reason,
                seed=row.seed,
                wall_time=share,
            )
            for row, tokens, reason in zip(rows, generated, finish, strict=True)
        ]

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
    logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.min_p > 0:
        floor = params.min_p * probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < floor, 0.0)
    if params.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= params.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.stack(
        [torch.multinomial(p, 1, generator=g)[0] for p, g in zip(probs, generators, strict=True)]
    )
