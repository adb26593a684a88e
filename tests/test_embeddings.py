"""Whole-solution embeddings: the text rule, chunking and pooling, the real MiniLM embedder."""

import numpy as np
import pytest

from seqpar.analysis.embeddings import chunk_spans, pool_chunks, solution_text
from seqpar.report.study import final_text
from seqpar.types import Sample


def test_chunk_spans_cover_the_text():
    assert chunk_spans(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunk_spans(4, 2) == [(0, 2), (2, 4)]
    assert chunk_spans(3, 254) == [(0, 3)]
    assert chunk_spans(0, 254) == [(0, 0)]  # an empty text still gets [CLS] [SEP]
    with pytest.raises(ValueError):
        chunk_spans(3, 0)


def test_pool_chunks_is_a_token_weighted_mean_then_normalised():
    means = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    pooled = pool_chunks(means, [3, 1, 2], [0, 0, 1], 2)
    # text 0: (3·(1,0) + 1·(0,1)) / 4 = (0.75, 0.25), normalised; text 1: (3,4)/5
    expected = np.array([0.75, 0.25]) / np.hypot(0.75, 0.25)
    assert pooled == pytest.approx(np.array([expected, [0.6, 0.8]]), abs=1e-6)
    assert pooled.dtype == np.float32


@pytest.mark.parametrize(
    ("text", "solution"),
    [
        ("x = 1", "x = 1"),  # no think block: the whole text
        ("<think>plan</think>\nx = 1", "\nx = 1"),
        ("<think>a</think>b<think>c</think>d", "d"),  # after the last one
        ("<think>still thinking about x = 1", None),  # unfinished: no solution, no embedding
        ("<think>done</think>\n  \n", None),  # blank solution
        ("", None),
    ],
)
def test_one_text_rule_for_every_strategy(text, solution):
    assert solution_text(text) == solution
    assert final_text(Sample("p", 0, 1, "ok", text=text)) == solution


@pytest.fixture(scope="module")
def embedder():
    from seqpar.analysis.embeddings import Embedder

    return Embedder()


def recipe(embedder, text: str) -> np.ndarray:
    """sentence-transformers' recipe on the first window only (the old behaviour)."""
    import torch

    batch = embedder.tokenizer(
        [text], truncation=True, max_length=embedder.max_length, return_tensors="pt"
    )
    with torch.inference_mode():
        states = embedder.model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    pooled = (states * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)[0].numpy()


def test_real_embedder_sees_the_whole_solution(embedder):
    body = "".join(
        f"def helper_{i}(values):\n    total = sum(v * {i} for v in values)\n    return total\n\n"
        for i in range(14)
    )
    assert len(embedder.tokenizer(body, verbose=False)["input_ids"]) > embedder.max_length
    ending_a = "def solve(grid):\n    return max(map(len, grid))  # longest row of the grid\n"
    ending_b = "print('The weather in Paris is sunny today and the museums are open late.')\n" * 30
    a, b = embedder.encode([body + ending_a, body + ending_b])
    # The first window cannot tell them apart; the whole-solution embeddings can.
    assert recipe(embedder, body + ending_a) == pytest.approx(recipe(embedder, body + ending_b))
    assert float(a @ b) < 0.9
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    # A text that fits one window gets exactly the usual sentence embedding, batched or not.
    short = ["def add(x, y):\n    return x + y", "Paris is sunny.", ""]
    vectors = embedder.encode(short)
    for text, vector in zip(short, vectors, strict=True):
        assert vector == pytest.approx(recipe(embedder, text), abs=1e-5)
    assert embedder.encode([]).shape[0] == 0


def test_run_embeddings_skip_unfinished_samples_and_stale_caches(tmp_path):
    from seqpar.config import RunConfig
    from seqpar.engines import derive_seed
    from seqpar.report.study import EMBEDDINGS, run_embeddings
    from seqpar.run import execute
    from seqpar.rundata import load_run
    from seqpar.specs import ParallelSpec, TaskSpec

    from .test_novelty import SeedScriptedEngine

    config = RunConfig(task=TaskSpec("arith", limit=1), strategy=ParallelSpec(3))
    problem = config.build_task().load()[0]
    texts = ["<think>no end in sight", "<think>ok</think>\\boxed{1}", "\\boxed{2}"]
    engine = SeedScriptedEngine(
        {derive_seed(0, problem.id, c, 1): text for c, text in enumerate(texts)}
    )
    execute(config, tmp_path, engine=engine)
    run = load_run(str(tmp_path))
    calls: list[list[str]] = []

    def encode(batch: list[str]) -> np.ndarray:
        calls.append(batch)
        return np.ones((len(batch), 2)) / np.sqrt(2)

    vectors = run_embeddings(run, encode)
    assert sorted(vectors) == [(problem.id, 1, 1), (problem.id, 2, 1)]
    assert calls == [["\\boxed{1}", "\\boxed{2}"]]
    run_embeddings(run, encode)
    assert len(calls) == 1  # cached
    np.savez(tmp_path / EMBEDDINGS, **{"x": np.zeros(2)})  # a cache from an older rule
    run_embeddings(run, encode)
    assert len(calls) == 2
