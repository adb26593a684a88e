"""Continuous batching over a transformers causal LM.

Rows join a running KV cache at any decode step and leave it as soon as they finish, so
the batch stays full while short rows end and new ones (the next round of a chain) arrive.
A row whose prompt begins with tokens already computed — an earlier round of its chain,
another seed of the same prompt — takes those keys and values from a prefix cache and
evaluates only the rest. Rows live side by side in one left-padded cache; the attention
mask hides the padding (also between a reused prefix and the evaluated rest while a prompt
is evaluated; each row is then packed to the right end), and explicit position ids keep
every row's positions its own.

Everything here runs in the caller's thread, step by step: which rows share a step depends
only on the order rows were submitted in, so the same submissions give the same texts.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from seqpar.sampling import SamplingParams

MIN_REUSE = 16  # shorter shared prefixes are cheaper to evaluate than to copy in
PREFILL_TOKENS = 8192


@dataclass(frozen=True)
class Row:
    """One sample to draw: prompt token ids, its seed, and whom to tell when it ends."""

    ids: tuple[int, ...]
    seed: int
    owner: Any  # opaque to the batcher: handed back with the finished row
    priority: int = 0  # higher joins the batch first; equal ones in the order submitted


@dataclass(frozen=True)
class Finished:
    """A row that ended: its generated tokens, why it stopped, and its prompt's reuse."""

    row: Row
    tokens: list[int]
    reason: str  # "stop" or "length"
    reused: int  # prompt tokens taken from the prefix cache instead of evaluated
    seconds: float  # from joining the batch to its last token


@dataclass
class Live:
    row: Row
    limit: int
    generator: Any
    reused: int
    joined: float
    tokens: list[int] = field(default_factory=list)
    reason: str = ""


@dataclass
class Counters:
    """What the batcher did: evaluated vs reused prompt tokens, decode steps and their rows."""

    prompt_evaluated: int = 0
    prompt_reused: int = 0
    decode_steps: int = 0
    decoded_rows: int = 0  # rows summed over decode steps
    most_rows: int = 0  # the largest batch decoded in one step


class PrefixCache:
    """Keys and values of finished rows (prompt and completion), least recently used out
    first once they hold more than `capacity` tokens."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[int, tuple[Any, list[tuple[Any, Any]]]] = OrderedDict()
        self.tokens = 0
        self.next_key = 0

    def clear(self) -> None:
        self.entries.clear()
        self.tokens = 0

    def add(self, ids: Sequence[int], layers: list[tuple[Any, Any]]) -> None:
        """Keep `layers` (per layer keys and values shaped heads × len(ids) × dim)."""
        import torch

        if len(ids) < MIN_REUSE or len(ids) > self.capacity:
            return
        self.entries[self.next_key] = (torch.tensor(ids), layers)
        self.next_key += 1
        self.tokens += len(ids)
        while self.tokens > self.capacity:
            _, (evicted, _) = self.entries.popitem(last=False)
            self.tokens -= len(evicted)

    def longest(self, ids: Sequence[int]) -> tuple[int, list[tuple[Any, Any]]]:
        """The longest stored prefix of `ids` (length, per layer keys and values)."""
        import torch

        if not self.entries:
            return 0, []
        query = torch.tensor(ids)
        best, best_key = 0, None
        for key, (stored, _) in self.entries.items():
            span = min(len(stored), len(query))
            differs = (stored[:span] != query[:span]).nonzero()
            shared = int(differs[0]) if len(differs) else span
            if shared >= best:
                best, best_key = shared, key
        if best_key is None or best < MIN_REUSE:
            return 0, []
        self.entries.move_to_end(best_key)
        _, layers = self.entries[best_key]
        return best, [(k[:, :best], v[:, :best]) for k, v in layers]


class Batcher:
    """A running batch of rows decoded together, refilled from a queue at every step."""

    def __init__(
        self,
        model: Any,
        params: SamplingParams,
        prefixes: PrefixCache,
        *,
        eos_ids: set[int],
        pad_id: int,
        context_length: int,
        max_batch: int,
        token_budget: int,
        cache_argument: str,
        stops: Callable[[list[int]], bool],
        sample: Callable[[Any, SamplingParams, Sequence[Any]], Any],
    ) -> None:
        import torch

        self.model, self.params = model, params
        self.device = next(model.parameters()).device
        self.eos = torch.tensor(sorted(eos_ids), device=self.device)
        self.pad_id, self.context_length = pad_id, context_length
        self.max_batch, self.token_budget = max_batch, token_budget
        # Prompts are evaluated between decode steps, in groups of at most this many padded
        # tokens: larger groups pad more and attend wider for no faster evaluation (on CPU,
        # 20 prompts of 1,500 tokens at once: 484 tokens/s; 5: 558; bench/decode_step.py).
        self.prefill_budget = max(min(token_budget // 4, PREFILL_TOKENS), 1)
        self.cache_argument, self.stops, self.sample = cache_argument, stops, sample
        self.prefixes = prefixes
        self.counters = Counters()
        self.queue: list[tuple[int, int, Row]] = []  # a heap: (-priority, order, row)
        self.submitted = 0
        self.reset()

    def reset(self) -> None:
        """Drop every row, running or waiting (their owners will not hear back)."""
        self.queue.clear()
        self.live: list[Live] = []
        # Per layer keys and values, each rows × heads × width × dim.
        self.layers: list[tuple[Any, Any]] = []
        self.cache: Any = None  # `layers` as the model's cache, kept while the rows stay
        self.mask: Any = None  # rows × width, 1 where a row has a token
        self.next_tokens: Any = None  # the token each row feeds at the next decode step
        self.next_positions: Any = None

    @property
    def busy(self) -> bool:
        return bool(self.live or self.queue)

    @property
    def waiting(self) -> list[Row]:
        """The rows not yet in the batch, in the order they will join it."""
        return [row for _, _, row in sorted(self.queue)]

    def submit(self, row: Row) -> None:
        heapq.heappush(self.queue, (-row.priority, self.submitted, row))
        self.submitted += 1

    def step(self) -> tuple[list[Finished], int]:
        """Admit what fits, decode one token for every running row; the rows that ended and
        the number of tokens generated in this step."""
        import torch

        finished: list[Finished] = []
        generated = 0
        with torch.inference_mode():
            admitted = self.admit()
            if admitted:
                logits = self.prefill(admitted)
                generated += len(admitted)
                finished += self.advance(
                    logits, range(len(self.live) - len(admitted), len(self.live))
                )
            elif self.live:
                logits = self.decode()
                generated += len(self.live)
                finished += self.advance(logits, range(len(self.live)))
        return finished, generated

    def admit(self) -> list[Live]:
        """Take waiting rows, by priority and then first come first served, while the batch
        and budgets allow."""
        import torch

        admitted: list[Live] = []
        widest = max((len(r.row.ids) + r.limit for r in self.live), default=0)
        longest_prompt = 0
        while self.queue and len(self.live) + len(admitted) < self.max_batch:
            row = self.queue[0][2]
            limit = min(self.params.max_tokens, self.context_length - len(row.ids))
            wider = max(widest, len(row.ids) + limit)
            longer = max(longest_prompt, len(row.ids))
            if admitted or self.live:
                if (len(self.live) + len(admitted) + 1) * wider > self.token_budget:
                    break
                if admitted and (len(admitted) + 1) * longer > self.prefill_budget:
                    break
            heapq.heappop(self.queue)
            generator = torch.Generator(device=self.device).manual_seed(row.seed)
            admitted.append(Live(row, limit, generator, 0, time.perf_counter()))
            widest, longest_prompt = wider, longer
        return admitted

    def prefill(self, admitted: list[Live]) -> Any:
        """Evaluate the admitted rows' prompts (past their reused prefixes) and add them to
        the running cache; the logits of each one's last prompt token."""
        import torch

        distinct: dict[tuple[int, ...], int] = {}
        for live in admitted:
            distinct.setdefault(live.row.ids, len(distinct))
        prompts = list(distinct)
        reuses = []
        for ids in prompts:
            shared, layers = self.prefixes.longest(ids[:-1])  # the last token gives logits
            reuses.append((shared, layers))
        past = max(shared for shared, _ in reuses)
        rest = max(len(ids) - shared for ids, (shared, _) in zip(prompts, reuses, strict=True))
        rows = len(prompts)
        input_ids = torch.full((rows, rest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, past + rest), dtype=torch.long)
        positions = torch.zeros((rows, rest), dtype=torch.long)
        for i, (ids, (shared, _)) in enumerate(zip(prompts, reuses, strict=True)):
            new = len(ids) - shared
            input_ids[i, rest - new :] = torch.tensor(ids[shared:])
            mask[i, past - shared : past] = 1
            mask[i, past + rest - new :] = 1
            positions[i, rest - new :] = torch.arange(shared, len(ids))
        cache = as_cache(self.stacked_prefixes(reuses, past)) if past else DynamicCache()
        logits = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            **{self.cache_argument: cache},
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]
        reused = sum(shared for shared, _ in reuses)
        self.counters.prompt_reused += reused
        self.counters.prompt_evaluated += sum(len(ids) for ids in prompts) - reused
        for live in admitted:
            live.reused = reuses[distinct[live.row.ids]][0]
        # Seeds of one prompt share its evaluation: each row takes its prompt's slice.
        pick = torch.tensor([distinct[live.row.ids] for live in admitted], device=self.device)
        layers, mask = right_aligned(
            [(layer.keys, layer.values) for layer in cache.layers], mask.to(self.device)
        )
        layers = [(k.index_select(0, pick), v.index_select(0, pick)) for k, v in layers]
        self.join(admitted, layers, mask.index_select(0, pick))
        self.next_positions = torch.cat(
            [
                self.next_positions if self.next_positions is not None else pick.new_zeros(0),
                torch.tensor([len(live.row.ids) for live in admitted], device=self.device),
            ]
        )
        return logits.index_select(0, pick)

    def stacked_prefixes(
        self, reuses: list[tuple[int, list[tuple[Any, Any]]]], past: int
    ) -> list[tuple[Any, Any]]:
        """Reused keys and values of every prompt, right-aligned to `past` columns."""
        template = next(layers for shared, layers in reuses if shared)
        stacked = []
        for layer_index, (k_like, v_like) in enumerate(template):
            keys = k_like.new_zeros((len(reuses), k_like.shape[0], past, k_like.shape[-1]))
            values = v_like.new_zeros((len(reuses), v_like.shape[0], past, v_like.shape[-1]))
            for i, (shared, layers) in enumerate(reuses):
                if shared:
                    keys[i, :, past - shared :] = layers[layer_index][0]
                    values[i, :, past - shared :] = layers[layer_index][1]
            stacked.append((keys, values))
        return stacked

    def join(self, admitted: list[Live], layers: list[tuple[Any, Any]], mask: Any) -> None:
        """Append rows (their cache and mask) to the running batch, left-padding the narrower:
        one copy of everything, into buffers with room for the next GROWTH steps."""
        import torch

        self.live += admitted
        parts = [(self.layers, self.mask), (layers, mask)] if self.layers else [(layers, mask)]
        width = max(m.shape[1] for _, m in parts)
        self.mask = torch.cat([pad_left(m, width - m.shape[1]) for _, m in parts])
        joined = []
        for index, (keys, values) in enumerate(layers):
            shape = (len(self.live), keys.shape[1], width + GROWTH, keys.shape[3])
            buffers = (keys.new_zeros(shape), values.new_zeros(shape))
            row = 0
            for part, part_mask in parts:
                rows, columns = part_mask.shape
                for buffer, states in zip(buffers, part[index], strict=True):
                    buffer[row : row + rows, :, width - columns : width] = states
                row += rows
            joined.append(GrowingLayer(buffers, width))
        self.cache = as_cache(joined)
        self.layers = [(layer.keys, layer.values) for layer in joined]

    def decode(self) -> Any:
        """Feed every running row its last token; the logits of the next."""
        import torch

        if self.cache is None:  # rows left: the first step copies, with room to grow
            self.cache = as_cache(self.layers)
        cache = self.cache
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.live), 1))], dim=1)
        logits = self.model(
            input_ids=self.next_tokens[:, None],
            attention_mask=self.mask,
            position_ids=self.next_positions[:, None],
            **{self.cache_argument: cache},
            use_cache=True,
        ).logits[:, -1, :]
        self.layers = [(layer.keys, layer.values) for layer in cache.layers]
        self.next_positions = self.next_positions + 1
        self.counters.decode_steps += 1
        self.counters.decoded_rows += len(self.live)
        self.counters.most_rows = max(self.counters.most_rows, len(self.live))
        return logits

    def advance(self, logits: Any, rows: range) -> list[Finished]:
        """Sample the next token of `rows` (indices into the running batch) from `logits`;
        retire the rows that ended."""
        import torch

        lives = [self.live[i] for i in rows]
        tokens = self.sample(logits.float(), self.params, [live.generator for live in lives])
        is_eos = torch.isin(tokens, self.eos).tolist()
        for live, token, eos in zip(lives, tokens.tolist(), is_eos, strict=True):
            live.tokens.append(token)
            if eos or self.stops(live.tokens):
                live.reason = "stop"
            elif len(live.tokens) >= live.limit:
                live.reason = "length"
        fed = tokens.to(self.device)
        if self.next_tokens is None or rows.start == 0:
            self.next_tokens = fed
        else:
            self.next_tokens = torch.cat([self.next_tokens, fed])
        return self.retire()

    def retire(self) -> list[Finished]:
        """Remove ended rows from the batch (keeping their keys and values as prefixes) and
        the columns no remaining row uses."""
        import torch

        ended = [i for i, live in enumerate(self.live) if live.reason]
        if not ended:
            return []
        now = time.perf_counter()
        finished = []
        for i in ended:
            live = self.live[i]
            columns = self.mask[i].nonzero().squeeze(-1)
            # The last sampled token was never fed, so it has no keys and values.
            self.prefixes.add(
                live.row.ids + tuple(live.tokens[:-1]),
                [
                    (k[i].index_select(1, columns), v[i].index_select(1, columns))
                    for k, v in self.layers
                ],
            )
            finished.append(
                Finished(live.row, live.tokens, live.reason, live.reused, now - live.joined)
            )
        keep = [i for i, live in enumerate(self.live) if not live.reason]
        self.live = [self.live[i] for i in keep]
        self.cache = None
        if not keep:
            self.layers, self.mask, self.next_tokens, self.next_positions = [], None, None, None
            return finished
        index = torch.tensor(keep, device=self.device)
        mask = self.mask.index_select(0, index)
        # Rows are packed to the right, so the columns no row uses any more are the first.
        first = int(mask.any(dim=0).nonzero()[0])
        self.mask = mask[:, first:]
        self.layers = [
            (k.index_select(0, index)[:, :, first:], v.index_select(0, index)[:, :, first:])
            for k, v in self.layers
        ]
        self.next_tokens = self.next_tokens.index_select(0, index)
        self.next_positions = self.next_positions.index_select(0, index)
        return finished


def right_aligned(layers: list[tuple[Any, Any]], mask: Any) -> tuple[list[tuple[Any, Any]], Any]:
    """Each row's tokens moved, in order, to the right end of the narrowest width that holds
    the longest row: the padding between a reused prefix and the rest is gone, so the
    batch's width (what every decode step attends over) is its longest row."""
    import torch

    width = int(mask.sum(dim=1).max())
    # A stable sort of 0/1 puts each row's padding first and its tokens after, in order.
    columns = torch.argsort(mask, dim=1, stable=True)[:, -width:]
    moved = []
    for keys, values in layers:
        index = columns[:, None, :, None].expand(-1, keys.shape[1], -1, keys.shape[-1])
        moved.append((keys.gather(2, index), values.gather(2, index)))
    return moved, mask.gather(1, columns)


def as_cache(layers: list[Any]) -> Any:
    """A transformers cache of these layers: `GrowingLayer`s, or (keys, values) pairs, held
    as they are until the first step that adds columns copies them with room to grow."""
    cache = DynamicCache()
    cache.layers.extend(
        layer if isinstance(layer, GrowingLayer) else GrowingLayer(layer, layer[0].shape[-2])
        for layer in layers
    )
    return cache


class GrowingLayer(DynamicLayer):
    """A cache layer whose keys and values are the first `length` columns of larger buffers:
    each step writes into the spare columns instead of concatenating (transformers' own
    layer copies the whole cache at every step, which at 64 rows over 1,500 tokens took 45%
    of a decode step on CPU), and grows by GROWTH columns when they run out."""

    def __init__(self, buffers: tuple[Any, Any], length: int) -> None:
        super().__init__()
        self.lazy_initialization(*buffers)
        self.buffers, self.length = buffers, length
        self.view()

    def view(self) -> None:
        self.keys, self.values = (buffer[:, :, : self.length] for buffer in self.buffers)

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
        new = key_states.shape[-2]
        if self.length + new > self.buffers[0].shape[-2]:
            self.buffers = (widen(self.keys, new + GROWTH), widen(self.values, new + GROWTH))
        for buffer, states in zip(self.buffers, (key_states, value_states), strict=True):
            buffer[:, :, self.length : self.length + new] = states
        self.length += new
        self.view()
        return self.keys, self.values


GROWTH = 256  # columns a full layer grows by: one copy every this many decode steps


def pad_left(tensor: Any, columns: int) -> Any:
    """`tensor` (rows × width) with `columns` zero columns before."""
    import torch

    return torch.cat([tensor.new_zeros((tensor.shape[0], columns)), tensor], dim=1)


def widen(tensor: Any, columns: int) -> Any:
    """A copy of `tensor` (rows × heads × width × dim) with `columns` unused ones after."""
    wider = tensor.new_empty((*tensor.shape[:2], tensor.shape[2] + columns, tensor.shape[3]))
    wider[:, :, : tensor.shape[2]] = tensor
    return wider
