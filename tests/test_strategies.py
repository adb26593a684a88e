import pytest

from seqpar.errors import SeqparError
from seqpar.strategies import get_strategy
from seqpar.strategies.sequential import SequentialTemplate
from seqpar.types import Attempt, Message

PREVIOUS = [Attempt("<think>scratch</think>first \\boxed{1}"), Attempt("second \\boxed{2}")]


def test_parallel_ignores_history():
    strategy = get_strategy("parallel", 4)
    assert (strategy.chains, strategy.rounds) == (4, 1)
    assert strategy.messages("Q", []) == (Message("user", "Q"),)


def test_sequential_single_message_final_history():
    strategy = get_strategy("sequential", 3)
    assert (strategy.chains, strategy.rounds) == (1, 3)
    assert strategy.messages("Q", []) == (Message("user", "Q"),)
    (message,) = strategy.messages("Q", PREVIOUS)
    assert message.content.startswith("Q\n\n### Previous solution 1\nfirst \\boxed{1}")
    assert "### Previous solution 2\nsecond \\boxed{2}" in message.content
    assert "scratch" not in message.content
    assert "Solve the problem again from the beginning." in message.content


def test_sequential_full_history_and_instruction():
    template = SequentialTemplate(history="full", instruction="different")
    (message,) = template.messages("Q", PREVIOUS)
    assert "<think>scratch</think>" in message.content
    assert "different approach" in message.content


def test_sequential_multiturn_layout():
    template = SequentialTemplate(layout="multiturn", instruction="improve")
    turns = template.messages("Q", PREVIOUS)
    assert [m.role for m in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[1].content == "first \\boxed{1}"
    assert "improved solution" in turns[-1].content


def test_unclosed_reasoning_shown_as_unfinished():
    assert SequentialTemplate().shown("<think>never ends") == "(unfinished: no final answer)"


def test_unknown_options_are_errors():
    with pytest.raises(
        SeqparError, match="unknown template layout 'tree'; known: single, multiturn"
    ):
        SequentialTemplate(layout="tree")
    with pytest.raises(SeqparError, match="unknown strategy 'beam'"):
        get_strategy("beam", 2)
    with pytest.raises(SeqparError, match="--n must be >= 1"):
        get_strategy("parallel", 0)


def test_feedback_stands_next_to_its_solution():
    attempts = [Attempt("def f(): pass", "Feedback from the hidden tests: 0 of 2 passed.")]
    (single,) = SequentialTemplate().messages("Q", attempts)
    assert (
        "### Previous solution 1\ndef f(): pass\n\nFeedback from the hidden tests" in single.content
    )
    turns = SequentialTemplate(layout="multiturn").messages("Q", attempts)
    assert turns[2].content.startswith("Feedback from the hidden tests: 0 of 2 passed.\n\nSolve")
