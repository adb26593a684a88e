import pytest
import torch

from seqpar.engines import derive_seed
from seqpar.engines.hf import sample_tokens
from seqpar.errors import SeqparError
from seqpar.sampling import SamplingParams


@pytest.mark.parametrize(
    "bad",
    [{"n": 0}, {"temperature": -1}, {"top_p": 0}, {"top_k": -2}, {"min_p": 2}, {"max_tokens": 0}],
)
def test_sampling_params_validation(bad):
    with pytest.raises(SeqparError):
        SamplingParams(**bad)


def test_sampling_filters():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]] * 2)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    assert sample_tokens(logits, SamplingParams(temperature=0), gens).tolist() == [1, 1]
    assert sample_tokens(logits, SamplingParams(top_k=1), gens).tolist() == [1, 1]
    assert sample_tokens(logits, SamplingParams(top_p=0.01), gens).tolist() == [1, 1]
    assert sample_tokens(logits, SamplingParams(min_p=0.99), gens).tolist() == [1, 1]
    draws = {sample_tokens(logits, SamplingParams(top_k=2), gens)[0].item() for _ in range(50)}
    assert draws == {1, 3}


def test_derive_seed_is_stable():
    assert derive_seed(0, "p", 1, 2) == derive_seed(0, "p", 1, 2)
    assert derive_seed(0, "p", 1, 2) != derive_seed(0, "p", 2, 1)
    assert 0 <= derive_seed("x") < 2**63


def test_draws_follow_the_distribution_and_never_pick_an_impossible_token():
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0]])
    draws = [
        sample_tokens(
            probs.log(), SamplingParams(temperature=1.0), [torch.Generator().manual_seed(s)]
        ).item()
        for s in range(4000)
    ]
    counts = [draws.count(token) / len(draws) for token in range(5)]
    assert counts[1] == counts[4] == 0
    # 4000 draws: a share's standard error is at most 0.008; 0.03 is nearly 4 of them.
    assert all(abs(c - p) < 0.03 for c, p in zip(counts, probs[0].tolist(), strict=True))


def test_the_same_seed_draws_the_same_token_whatever_else_is_in_the_batch():
    logits = torch.randn(6, 1000)
    alone = sample_tokens(logits[2:3], SamplingParams(), [torch.Generator().manual_seed(7)])
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 7, 3, 4, 5)]
    assert sample_tokens(logits, SamplingParams(), gens)[2] == alone[0]


def test_the_nucleus_of_the_candidates_is_the_nucleus_of_the_whole_vocabulary():
    from seqpar.engines.hf import nucleus

    probs = torch.softmax(torch.randn(8, 5000) * 3, dim=-1)
    probs[0] = torch.linspace(1.0, 1.1, 5000) / 5250  # flat: the nucleus spans 4,500 tokens
    whole = nucleus(probs, 0.9, candidates=5000)
    assert torch.equal(nucleus(probs, 0.9, candidates=64), whole)
    kept = whole > 0
    assert 4400 < kept[0].sum() < 4600
    assert all(row[~k].max() <= row[k].min() for row, k in zip(probs, kept, strict=True))
