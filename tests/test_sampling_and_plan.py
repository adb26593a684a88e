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


def whole_vocabulary_draw(probs, generators):
    """The plain inverse CDF: the first token whose float64 running sum passes u · total."""
    cumulative = probs.double().cumsum(dim=-1)
    uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    tokens = torch.searchsorted(cumulative, (uniform * cumulative[:, -1])[:, None], right=True)
    return tokens.squeeze(-1)


def test_the_blocked_draw_picks_what_the_whole_vocabulary_inverse_cdf_picks():
    from seqpar.engines.hf import draw

    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(40, 1000) * 4, dim=-1)  # 1,000: not a multiple of 128
    probs[0] = 0.0
    probs[0, 999] = 1.0  # all mass on the last token, in the padded block
    probs[1] = 0.0
    probs[1, 0] = 1.0  # on the first token
    probs[2, 100:300] = 0.0  # a gap across a block edge
    probs[3, ::2] = 0.0  # every other token impossible
    for seed in range(25):
        ours = draw(probs, [torch.Generator().manual_seed(seed * 40 + r) for r in range(40)])
        plain = whole_vocabulary_draw(
            probs, [torch.Generator().manual_seed(seed * 40 + r) for r in range(40)]
        )
        assert torch.equal(ours, plain)
        assert (probs.gather(1, ours[:, None]) > 0).all()


def test_a_draw_on_a_block_edge_lands_on_a_token_that_can_be_drawn(monkeypatch):
    from seqpar.engines import hf

    torch.manual_seed(3)
    probs = torch.rand(1, 16 * hf.DRAW_BLOCK)
    probs.view(16, hf.DRAW_BLOCK)[:, -8:] = 0.0  # every block ends in impossible tokens
    ends = probs.view(16, -1).sum(dim=-1).double().cumsum(dim=0)
    # Draws just short of each block's end, where float32 block sums and float64 sums
    # within a block disagree about which block the draw is in.
    uniform = torch.tensor(
        [(end - end * 2.0**-shift) / ends[-1] for end in ends[:-1] for shift in range(18, 40)],
        dtype=torch.float64,
    )
    rows = probs.expand(len(uniform), -1)
    tokens = hf.inverse_cdf(rows, uniform)
    assert (probs[0, tokens] > 0).all()
    # The control: without moving to the nearest possible token, some draws are impossible.
    monkeypatch.setattr(hf, "nearest_possible", lambda tokens, probs: tokens)
    assert (probs[0, hf.inverse_cdf(rows, uniform)] == 0).any()
