"""Induction heads and copying: attention scores computed layer by layer inside hooks.

A head is an induction head when, at a token that occurred before, it attends to the token
right *after* that earlier occurrence (it predicts the continuation by copying). Scores
here are attention masses on such targets, averaged over query positions. Attention is
reduced inside a forward hook on each attention module and dropped at once, so only one
layer's attention matrix exists at a time (a 4,096-token context of the 0.5B model fits in
a few GiB).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import numpy as np

from seqpar.engines.ablation import attention_modules


def induction_targets(
    tokens: Sequence[int],
    queries: Sequence[bool] | None = None,
    keys: Sequence[bool] | None = None,
) -> list[tuple[int, list[int]]]:
    """(query position, target positions): for each allowed query i whose token occurred
    earlier at j (with j + 1 < i), the allowed key positions j + 1."""
    seen: dict[int, list[int]] = {}
    pairs = []
    for i, token in enumerate(tokens):
        if queries is None or queries[i]:
            targets = [
                j + 1 for j in seen.get(token, []) if j + 1 < i and (keys is None or keys[j + 1])
            ]
            if targets:
                pairs.append((i, targets))
        seen.setdefault(token, []).append(i)
    return pairs


def induction_score(attention: np.ndarray, pairs: Sequence[tuple[int, list[int]]]) -> np.ndarray:
    """Per head: mean over queries of the attention mass on their targets.
    `attention` has shape (heads, queries, keys) for one sequence."""
    if not pairs:
        return np.zeros(attention.shape[0])
    return np.mean([attention[:, i, targets].sum(axis=-1) for i, targets in pairs], axis=0)


def span_mass(attention: np.ndarray, queries: Sequence[int], keys: np.ndarray) -> np.ndarray:
    """Per head: mean over `queries` of the attention mass on the key positions in `keys`."""
    if not len(queries):
        return np.zeros(attention.shape[0])
    return attention[:, queries][:, :, keys].sum(axis=-1).mean(axis=-1)


def copied_ngrams(tokens: Sequence[Hashable], source: Sequence[Hashable], n: int) -> list[bool]:
    """For each n-gram of `tokens` (by start position): whether it also occurs in `source`."""
    known = {tuple(source[i : i + n]) for i in range(len(source) - n + 1)}
    return [tuple(tokens[i : i + n]) in known for i in range(len(tokens) - n + 1)]


def copy_rate(tokens: Sequence[Hashable], source: Sequence[Hashable], n: int) -> float:
    """Share of the n-grams of `tokens` that also occur in `source` (nan when too short)."""
    return share_copied(copied_ngrams(tokens, source, n))


def share_copied(copied: Sequence[bool]) -> float:
    """The copy rate of `copied_ngrams`' answer (nan when there is no n-gram)."""
    return sum(copied) / len(copied) if copied else float("nan")


@contextlib.contextmanager
def reduced_attention(model: Any, reduce: Callable[[int, np.ndarray], None]) -> Iterator[None]:
    """Within the block, every forward pass calls reduce(layer, attention of the first
    sequence as a float array (heads, T, T)) and then drops the attention."""
    import torch

    previous = model.config._attn_implementation
    model.config._attn_implementation = "eager"  # only eager attention exposes the weights
    handles = []
    for layer, module in enumerate(attention_modules(model)):

        def hook(module: Any, args: Any, output: Any, layer: int = layer) -> Any:
            reduce(layer, output[1][0].to(torch.float32).cpu().numpy())
            return (output[0], None)

        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        model.config._attn_implementation = previous


def layer_head_scores(
    model: Any, input_ids: Sequence[int], score: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """score(attention) for every layer of one forward pass: (layers, heads)."""
    import torch

    rows: dict[int, np.ndarray] = {}
    with (
        reduced_attention(model, lambda layer, attn: rows.__setitem__(layer, score(attn))),
        torch.inference_mode(),
    ):
        model(input_ids=torch.tensor([list(input_ids)], device=model.device))
    return np.stack([rows[layer] for layer in sorted(rows)])


def prefix_matching_scores(
    model: Any,
    vocab_size: int,
    *,
    lengths: Sequence[int] = (32, 64),
    seeds: int = 3,
    bos: int | None = None,
) -> np.ndarray:
    """Prefix-matching score of every (layer, head) on repeated random token sequences
    ([bos] + R + R), averaged over seeds and lengths: (layers, heads)."""
    runs = []
    for length in lengths:
        for seed in range(seeds):
            rng = np.random.default_rng(seed * 1000 + length)
            # Skip the low ids, where special tokens usually live.
            random_tokens = rng.choice(
                np.arange(min(1000, vocab_size // 2), vocab_size), length, replace=False
            ).tolist()
            prefix = [bos] if bos is not None else []
            tokens = prefix + random_tokens + random_tokens
            second = [i >= len(prefix) + length for i in range(len(tokens))]
            pairs = induction_targets(tokens, queries=second)
            runs.append(layer_head_scores(model, tokens, lambda a, p=pairs: induction_score(a, p)))
    return np.mean(runs, axis=0)
