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
