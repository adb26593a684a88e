"""Rejection sampling: the pure rules, the scheduling with a scripted engine, and the real model."""

from collections.abc import Sequence

import numpy as np
import pytest

from seqpar.config import RunConfig
from seqpar.errors import SeqparError
from seqpar.report.summary import summarize
from seqpar.run import execute
from seqpar.sampling import SamplingParams
from seqpar.specs import NoveltySpec, ParallelSpec, TaskSpec
from seqpar.strategies.novelty import Novelty, max_similarity, repeats_answer
from seqpar.types import Completion, Message, Request

from .conftest import TEST_MODEL


def test_repeats_answer_and_similarity():
    same = lambda a, b: float(a) == float(b)  # noqa: E731
    assert repeats_answer("2.0", ["1", "2"], same)
    assert not repeats_answer("3", ["1", None], same)
    assert not repeats_answer(None, [None], same)  # a missing answer never repeats
    rows = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert max_similarity(np.array([0.6, 0.8]), rows) == pytest.approx(0.8)
    assert max_similarity(np.array([1.0, 0.0]), np.zeros((0, 2))) == -1.0


def test_novelty_validation():
    with pytest.raises(SeqparError, match="unknown --reject mode 'fresh'"):
        Novelty("fresh", str.__eq__)
    with pytest.raises(SeqparError, match="--max-retries must be >= 0"):
        Novelty("answer", str.__eq__, max_retries=-1)


class ScriptedEngine:
    """Answers \\boxed{1} to a slot's first draw and \\boxed{<seed % 1000>} afterwards."""

    context_length = 4096

    def __init__(self) -> None:
        self.first_seeds: set[int] = set()
        self.calls: list[int] = []

    def describe(self):
        return {"engine": "scripted", "model_sha256": "none"}

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return 10

    def generate(self, requests: Sequence[Request], params: SamplingParams):
        self.calls.append(sum(len(r.seeds) for r in requests))
        for index, request in enumerate(requests):
            texts = []
            for seed in request.seeds:
                first = not self.first_seeds or seed in self.first_seeds
                texts.append("\\boxed{1}" if first else f"\\boxed{{{seed % 1000 + 2}}}")
            yield (
                index,
                [
                    Completion(t, 10, 5, "stop", s, 0.1)
                    for t, s in zip(texts, request.seeds, strict=True)
                ],
            )

    def prime(self, seeds):
        self.first_seeds = set(seeds)


def test_answer_rejection_redraws_duplicates(tmp_path):
    from seqpar.engines import derive_seed

    engine = ScriptedEngine()
    config = RunConfig(
        task=TaskSpec("arith", limit=2),
        strategy=ParallelSpec(3),
        novelty=NoveltySpec("answer", max_retries=1),
    )
    problems = config.build_task().load()[:2]
    engine.prime(derive_seed(0, p.id, c, 1) for p in problems for c in range(3))
    store = execute(config, tmp_path, engine=engine)
    draws = store.samples()
    rejected = [s for s in draws if s.status == "rejected"]
    # every slot's first draw answers 1: chain 0 is accepted, chains 1 and 2 are redrawn once
    assert len(rejected) == 4 and {s.chain for s in rejected} == {1, 2}
    assert engine.calls == [6, 4]
    accepted = [s for s in draws if s.status == "ok"]
    assert len(accepted) == 6 and {s.attempt for s in accepted if s.chain > 0} == {1}
    summary = summarize(str(tmp_path))
    assert summary.rejected == 4 and summary.samples == 6
    assert summary.generated_tokens == 5 * 10  # rejected draws count
    execute(config, tmp_path, engine=engine)  # resuming finds nothing to do
    assert len(store.samples()) == 10 and engine.calls == [6, 4]


def test_reject_mode_must_suit_the_task(tmp_path):
    with pytest.raises(SeqparError, match="--reject behaviour does not apply to task 'arith'"):
        execute(
            RunConfig(task=TaskSpec("arith"), novelty=NoveltySpec("behaviour")),
            tmp_path,
            engine=ScriptedEngine(),
        )


@pytest.mark.slow
def test_embedding_rejection_with_the_real_model(tmp_path, small_engine):
    # Greedy decoding repeats itself exactly, so every later chain is a duplicate until the
    # retry budget runs out: 2 redraws for each of chains 1 and 2.
    config = RunConfig(
        model=TEST_MODEL,
        task=TaskSpec("arith", limit=1),
        strategy=ParallelSpec(3),
        sampling=SamplingParams(temperature=0.0, max_tokens=24, seed=0),
        novelty=NoveltySpec("embedding", max_retries=2),
    )
    store = execute(config, tmp_path, engine=small_engine)
    draws = store.samples()
    assert sum(s.status == "rejected" for s in draws) == 4
    assert sum(s.status == "ok" for s in draws) == 3
    assert summarize(str(tmp_path)).generated_tokens == sum(s.completion_tokens for s in draws)


class SeedScriptedEngine(ScriptedEngine):
    """Answers each seed with the text scripted for it."""

    def __init__(self, texts: dict[int, str]) -> None:
        super().__init__()
        self.texts = texts

    def generate(self, requests: Sequence[Request], params: SamplingParams):
        for index, request in enumerate(requests):
            yield (
                index,
                [Completion(self.texts[s], 10, 5, "stop", s, 0.1) for s in request.seeds],
            )


def test_parallel_rejection_run_is_scored_by_its_first_k_accepted_draws(tmp_path):
    from seqpar.aggregate import budgets, parallel_score
    from seqpar.engines import derive_seed
    from seqpar.report.summary import markdown
    from seqpar.rundata import load_run, solutions_by_problem

    config = RunConfig(
        task=TaskSpec("arith", limit=1),
        strategy=ParallelSpec(3),
        novelty=NoveltySpec("answer", max_retries=1),
    )
    problem = config.build_task().load()[0]

    def seed(chain: int, attempt: int = 0) -> int:
        return derive_seed(0, problem.id, chain, 1, *([attempt] if attempt else []))

    wrong, other, right = "\\boxed{1000001}", "\\boxed{1000002}", f"\\boxed{{{problem.answer}}}"
    # Chain 0 is accepted (wrong), chain 1 repeats it and is redrawn, chain 2 is accepted
    # (right), chain 1's redraw is accepted last (wrong): acceptance order 0, 2, 1.
    texts = {seed(0): wrong, seed(1): wrong, seed(2): right, seed(1, 1): other}
    engine = SeedScriptedEngine(texts)
    execute(config, tmp_path, engine=engine)
    run = load_run(str(tmp_path))
    assert [(s.chain, s.status) for s in run.draws] == [
        (0, "ok"),
        (1, "rejected"),
        (2, "ok"),
        (1, "ok"),
    ]
    assert run.ordered and run.slots == [[[(problem.id, c, 1) for c in (0, 2, 1)]]]
    ks = budgets(3)
    # First k accepted draws: wrong; wrong, right; wrong, right, wrong.
    summary = summarize(str(tmp_path))
    assert summary.reject == "answer"
    assert summary.accuracy["pass@k"] == pytest.approx([0.0, 1.0, 1.0])
    assert summary.accuracy["last"] == pytest.approx([0.0, 1.0, 0.0])
    assert summary.accuracy["majority"] == pytest.approx([0.0, 0.5, 1 / 3])
    # tokens to reach k accepted draws: slot 0 (5), slot 2 (5), slot 1 (5 rejected + 5)
    assert run.tokens(ks).tolist() == [[5.0, 10.0, 20.0]]
    # The exchangeable reading these draws are no longer scored by would say pass@1 = 1/3.
    flat = solutions_by_problem(run.samples, run.problem_ids, run.strategy, str.__eq__)
    assert parallel_score([c[0] for c in flat[0]], 1, "pass@k") == pytest.approx(1 / 3)
    assert "scored by the first k accepted draws" in markdown([summary])
