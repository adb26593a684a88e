"""Exploration diversity from embeddings and answers (arrays in, numbers out).

- mean pairwise cosine similarity among a problem's N solutions;
- per round r of a chain: the max and mean similarity of round r to rounds 1..r-1;
- the number of distinct final answers (math) or behaviour classes (code: on the public
  inputs, or the hidden tests' inputs where a problem has none), and the entropy of their
  distribution (missing answers excluded).

Vectors are assumed L2-normalised, so a dot product is a cosine; they embed whole
solutions (`seqpar.analysis.embeddings`), and a sample without a solution has none.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np


def mean_pairwise_similarity(vectors: np.ndarray) -> float:
    """Mean cosine over all unordered pairs of rows (nan for fewer than two rows)."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    gram = vectors @ vectors.T
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))


def similarity_to_earlier(vectors: np.ndarray) -> list[tuple[float, float]]:
    """For rounds 2..N of a chain: (max, mean) cosine to every earlier round."""
    gram = vectors @ vectors.T
    return [(float(gram[r, :r].max()), float(gram[r, :r].mean())) for r in range(1, len(vectors))]


def distinct_answers(classes: Sequence[Hashable | None]) -> int:
    return len({c for c in classes if c is not None})


def answer_entropy(classes: Sequence[Hashable | None]) -> float:
    """Shannon entropy (bits) of the answer-class distribution, missing answers excluded."""
    counts = Counter(c for c in classes if c is not None)
    total = sum(counts.values())
    return float(-sum(n / total * math.log2(n / total) for n in counts.values())) if total else 0.0
