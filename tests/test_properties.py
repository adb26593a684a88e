"""Property-based tests (hypothesis) for extraction, equivalence, aggregators and estimators."""

import math
from itertools import combinations, pairwise

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from seqpar.aggregate import Solution, best_of_n_score, majority_score, pass_at_k
from seqpar.tasks.extract import extract_code, extract_math_answer, last_boxed, split_reasoning
from seqpar.tasks.math import equivalent

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BRACE_FREE = st.text(alphabet=st.characters(blacklist_characters="{}\\"), max_size=30)


@FAST
@given(st.text(max_size=300))
def test_extractors_never_crash_and_return_text_or_none(text):
    for extract in (extract_math_answer, extract_code, last_boxed):
        result = extract(text)
        assert result is None or isinstance(result, str)
    reasoning, final = split_reasoning(text)
    assert final is None or reasoning + final == text


@FAST
@given(prefix=st.text(max_size=100), answer=BRACE_FREE.filter(lambda s: s.strip()))
def test_the_last_boxed_answer_is_extracted_whatever_precedes_it(prefix, answer):
    assume(not any(tag in part for tag in ("<think>", "</think>") for part in (prefix, answer)))
    text = f"{prefix} \\boxed{{1}} then \\boxed{{{answer}}}"
    assert extract_math_answer(text) == answer.strip()


@FAST
@given(depth=st.integers(1, 30), leaf=st.from_regex(r"[a-z0-9+]{1,5}", fullmatch=True))
def test_nested_braces_are_balanced(depth, leaf):
    inner = "{" * depth + leaf + "}" * depth
    assert last_boxed(f"x \\boxed{{{inner}}} y") == inner


@FAST
@given(reasoning=st.text(max_size=80), tail=st.text(max_size=80))
def test_an_unclosed_think_block_has_no_answer(reasoning, tail):
    assume("</think>" not in reasoning + tail)
    assert extract_math_answer(f"<think>{reasoning}\\boxed{{5}}{tail}") is None


NUMBERS = st.integers(-(10**9), 10**9)


@FAST
@given(NUMBERS)
@example(1000)
def test_equivalence_is_reflexive_and_ignores_formatting(value):
    text = str(value)
    assert equivalent(text, text)
    assert equivalent(text, f"{value:,}")
    assert equivalent(text, f"{value}.0")
    assert equivalent(text, f"\\${value}") or value < 0


@FAST
@given(NUMBERS, NUMBERS)
def test_equivalence_of_numbers_is_symmetric_and_exact_for_integers(a, b):
    assert equivalent(str(a), str(b)) == equivalent(str(b), str(a)) == (a == b)


@settings(max_examples=40, deadline=None)
@given(st.fractions(min_value=-100, max_value=100, max_denominator=50))
def test_fractions_equal_their_decimal_value_symbolically(value):
    assume(value.denominator > 1)
    latex = f"\\frac{{{value.numerator}}}{{{value.denominator}}}"
    assert equivalent(latex, f"{value.numerator}/{value.denominator}")


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_pass_at_k_is_the_empirical_rate_at_1_monotone_in_k_and_within_0_1(n, data):
    c = data.draw(st.integers(0, n))
    values = [pass_at_k(n, c, k) for k in range(1, n + 1)]
    assert math.isclose(values[0], c / n, abs_tol=1e-12)
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b >= a - 1e-12 for a, b in pairwise(values))
    assert values[-1] == (1.0 if c else 0.0)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9), data=st.data())
def test_pass_at_k_equals_the_share_of_k_subsets_holding_a_correct_sample(n, data):
    correct = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    k = data.draw(st.integers(1, n))
    subsets = list(combinations(correct, k))
    expected = sum(any(s) for s in subsets) / len(subsets)
    assert math.isclose(pass_at_k(n, sum(correct), k), expected, abs_tol=1e-9)


SOLUTIONS = st.lists(
    st.builds(
        Solution,
        answer_class=st.one_of(st.none(), st.integers(0, 3)),
        correct=st.booleans(),
        score=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0])),
    ),
    max_size=12,
).map(
    # one class, one verdict: an answer class is correct or not, whoever gave it
    lambda sols: [
        Solution(s.answer_class, s.answer_class == 0 if s.answer_class is not None else False,
                 s.score)
        for s in sols
    ]
)  # fmt: skip


@FAST
@given(SOLUTIONS, st.randoms(use_true_random=False))
def test_majority_and_best_of_n_with_expected_ties_ignore_sample_order(solutions, rng):
    shuffled = list(solutions)
    rng.shuffle(shuffled)
    for score in (majority_score, best_of_n_score):
        assert score(shuffled) == score(solutions)
        assert 0.0 <= score(solutions) <= 1.0


@FAST
@given(SOLUTIONS)
def test_majority_of_one_repeated_answer_is_that_answers_verdict(solutions):
    assume(solutions and solutions[0].answer_class is not None)
    repeated = [solutions[0]] * 5 + [Solution(None, False)] * 3
    assert majority_score(repeated) == float(solutions[0].correct)
