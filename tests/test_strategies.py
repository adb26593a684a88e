import pytest

from seqpar.config import RunConfig
from seqpar.errors import SeqparError
from seqpar.specs import HybridSpec, ParallelSpec, SequentialSpec, SequentialTemplate
from seqpar.strategies.sequential import render, shown
from seqpar.types import Attempt, Message, Problem

PROBLEM = Problem("p", "Q")

PREVIOUS = [Attempt("<think>scratch</think>first \\boxed{1}"), Attempt("second \\boxed{2}")]


def test_parallel_ignores_history():
    strategy = RunConfig(strategy=ParallelSpec(4)).build_strategy()
    assert (strategy.chains, strategy.rounds) == (4, 1)
    assert strategy.messages(PROBLEM, "Q", [], 1) == (Message("user", "Q"),)


def test_sequential_single_message_final_history():
    strategy = RunConfig(strategy=SequentialSpec(3)).build_strategy()
    assert (strategy.chains, strategy.rounds) == (1, 3)
    assert strategy.messages(PROBLEM, "Q", [], 1) == (Message("user", "Q"),)
    (message,) = strategy.messages(PROBLEM, "Q", PREVIOUS, 3)
    assert message.content.startswith("Q\n\n### Previous solution 1\nfirst \\boxed{1}")
    assert "### Previous solution 2\nsecond \\boxed{2}" in message.content
    assert "scratch" not in message.content
    assert "Solve the problem again from the beginning." in message.content


def test_sequential_full_history_and_instruction():
    template = SequentialTemplate(history="full", instruction="different")
    (message,) = render(template, "Q", PREVIOUS)
    assert "<think>scratch</think>" in message.content
    assert "different approach" in message.content


def test_sequential_multiturn_layout():
    template = SequentialTemplate(layout="multiturn", instruction="improve")
    turns = render(template, "Q", PREVIOUS)
    assert [m.role for m in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[1].content == "first \\boxed{1}"
    assert "improved solution" in turns[-1].content


def test_unclosed_reasoning_shown_as_unfinished():
    assert shown(SequentialTemplate(), "<think>never ends") == "(unfinished: no final answer)"


def test_unknown_options_are_errors():
    with pytest.raises(
        SeqparError, match="unknown template layout 'tree'; known: single, multiturn"
    ):
        SequentialTemplate(layout="tree")
    beam = {**RunConfig().to_json(), "strategy": {"name": "beam", "n": 2}}
    with pytest.raises(SeqparError, match="unknown strategy 'beam'; known: parallel"):
        RunConfig.from_json(beam)
    with pytest.raises(SeqparError, match="--n must be >= 1, got 0"):
        RunConfig(strategy=ParallelSpec(n=0))


def test_feedback_stands_next_to_its_solution():
    attempts = [Attempt("def f(): pass", "Feedback from the hidden tests: 0 of 2 passed.")]
    (single,) = render(SequentialTemplate(), "Q", attempts)
    assert (
        "### Previous solution 1\ndef f(): pass\n\nFeedback from the hidden tests" in single.content
    )
    turns = render(SequentialTemplate(layout="multiturn"), "Q", attempts)
    assert turns[2].content.startswith("Feedback from the hidden tests: 0 of 2 passed.\n\nSolve")


def test_hybrid_shares_its_sequential_prefix():
    strategy = RunConfig(strategy=HybridSpec(3, hybrid_k=2)).build_strategy()
    assert (strategy.chains, strategy.rounds, strategy.scored_round) == (3, 3, 3)
    assert strategy.history(0, 2) == [(0, 1)]
    assert strategy.history(1, 1) is None and strategy.history(2, 2) is None
    assert strategy.history(2, 3) == [(0, 1), (0, 2)]


def test_padded_filler_matches_target_length():
    from seqpar.strategies.padded import PaddedParallelStrategy, filler_sources

    words = lambda messages: sum(len(m.content.split()) for m in messages)  # noqa: E731
    sources = filler_sources(
        ["p", "q"], {"p": ["alpha beta"], "q": ["gamma delta epsilon"]}, "other", seed=0
    )
    assert sources["p"] == ["gamma delta epsilon"]
    strategy = PaddedParallelStrategy(3, SequentialTemplate(), {"p": [10, 60, 130]}, sources, words)
    assert strategy.messages(PROBLEM, "Q", [], 1) == (Message("user", "Q"),)
    assert strategy.target_tokens(PROBLEM, 3) == 130
    for round_ in (2, 3):
        messages = strategy.messages(PROBLEM, "Q", [], round_)
        assert abs(words(messages) - strategy.target_tokens(PROBLEM, round_)) <= 1
        assert messages[0].content.count("### Previous solution") == round_ - 1
        assert "gamma" in messages[0].content and "alpha" not in messages[0].content
    scaled = PaddedParallelStrategy(
        3, SequentialTemplate(), {"p": [10, 60, 130]}, sources, words, 2.0
    )
    assert scaled.target_tokens(PROBLEM, 2) == 110
    neutral = filler_sources(["p"], {}, "neutral", seed=0)
    assert "lighthouse" in neutral["p"][0]
