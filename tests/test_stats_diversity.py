import numpy as np
import pytest
from scipy import stats

from seqpar.analysis.diversity import (
    answer_entropy,
    distinct_answers,
    mean_pairwise_similarity,
    similarity_to_earlier,
)
from seqpar.analysis.stats import bootstrap_ci, paired_test


def test_similarity_metrics_on_hand_made_vectors():
    x, y, d = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.6, 0.8])
    vectors = np.stack([x, y, d])
    # pairs: x·y = 0, x·d = 0.6, y·d = 0.8 → mean 1.4 / 3
    assert mean_pairwise_similarity(vectors) == pytest.approx(1.4 / 3)
    assert np.allclose(similarity_to_earlier(vectors), [(0.0, 0.0), (0.8, 0.7)])
    assert np.isnan(mean_pairwise_similarity(vectors[:1]))


def test_answer_counts_and_entropy():
    assert distinct_answers(["a", "a", None, "b"]) == 2
    assert answer_entropy(["a", "b"]) == pytest.approx(1.0)
    assert answer_entropy(["a", "a", "a", "b"]) == pytest.approx(0.8112781244591328)
    assert answer_entropy([None, None]) == 0.0


def test_bootstrap_interval_brackets_the_mean():
    scores = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1], dtype=float)
    interval = bootstrap_ci(scores, seed=1)
    assert interval.mean == pytest.approx(0.7)
    assert interval.low < 0.7 < interval.high and interval.low >= 0.3 and interval.high <= 1.0
    constant = bootstrap_ci(np.ones(5))
    assert (constant.low, constant.high) == (1.0, 1.0)
    two_d = bootstrap_ci(np.array([[1.0, 0.0], [1.0, 1.0]]))
    assert two_d.mean == pytest.approx(0.75)


def test_paired_test_exact_sign_flip_matches_scipy():
    a = np.array([0.9, 0.7, 0.8, 0.6, 0.9, 0.4, 0.8])
    b = np.array([0.5, 0.6, 0.8, 0.2, 0.7, 0.5, 0.3])
    result = paired_test(a, b)
    reference = stats.permutation_test(
        (a - b,), np.mean, permutation_type="samples", alternative="two-sided", n_resamples=np.inf
    )
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.mean_difference == pytest.approx((a - b).mean())
    d = a - b
    assert result.effect_size == pytest.approx(d.mean() / d.std(ddof=1))


def test_paired_test_identical_strategies():
    result = paired_test(np.ones(4), np.ones(4))
    assert result.p_value == 1.0 and result.effect_size == 0.0


def test_corrected_t_is_the_t_test_on_symmetric_data_and_inverts_exactly():
    from seqpar.analysis.stats import augmented, hall, hall_inverse, one_sided_p

    symmetric = np.array([-0.5, -0.25, 0.0, 0.0, 0.25, 0.5, -0.5, 0.5])
    reference = stats.ttest_1samp(augmented(symmetric, (-1, 1))[0], 0.1, alternative="less")
    assert one_sided_p(symmetric, 0.1, above=True)[0] == pytest.approx(reference.pvalue)
    t, a, b = np.linspace(-4, 4, 9), np.full(9, -0.3), np.full(9, -0.15)
    assert np.allclose(hall_inverse(hall(t, a, b), a, b), t)
    assert np.all(np.diff(hall(t, a, b)) > 0)  # monotone, so the interval is well defined
