"""Induction scores by hand, on the real SmolLM2 against output_attentions, and ablation."""

import numpy as np
import pytest
import torch

from seqpar.analysis.induction import (
    copy_rate,
    induction_score,
    induction_targets,
    layer_head_scores,
    prefix_matching_scores,
    span_mass,
)
from seqpar.engines.ablation import HeadAblation
from seqpar.errors import SeqparError
from seqpar.specs import AblationSpec


def test_targets_and_scores_by_hand():
    tokens = [7, 1, 2, 1, 2]  # at 3 (token 1, seen at 1) the target is 2; at 4 (token 2) it is 3
    assert induction_targets(tokens) == [(3, [2]), (4, [3])]
    assert induction_targets(tokens, queries=[False, False, False, False, True]) == [(4, [3])]
    assert induction_targets(tokens, keys=[True, True, False, True, True]) == [(4, [3])]
    attention = np.zeros((2, 5, 5))
    attention[0, 3, 2], attention[0, 4, 3] = 0.9, 0.5  # head 0: an induction head
    attention[1, 3, 0], attention[1, 4, 0] = 1.0, 1.0  # head 1: attends to the first token
    assert induction_score(attention, induction_targets(tokens)) == pytest.approx([0.7, 0.0])
    assert induction_score(attention, []) == pytest.approx([0.0, 0.0])
    assert span_mass(attention, [3, 4], np.array([0, 2])) == pytest.approx([0.45, 1.0])


def test_copy_rate():
    assert copy_rate([1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 9], 4) == 0.5  # (1,2,3,4) yes, (2,3,4,5) no
    assert np.isnan(copy_rate([1, 2], [1, 2], 4))


def test_parse_heads():
    assert AblationSpec.parse("3.1, 10.7").heads == ((3, 1), (10, 7))
    assert AblationSpec.parse("").heads == ()
    with pytest.raises(SeqparError, match="bad head '3-1'"):
        AblationSpec.parse("3-1")


@pytest.mark.slow
def test_smollm2_has_strong_induction_heads(small_engine):
    model = small_engine.model
    scores = prefix_matching_scores(
        model,
        model.config.vocab_size,
        lengths=(32,),
        seeds=2,
        bos=small_engine.tokenizer.bos_token_id,
    )
    assert scores.shape == (30, 9)
    assert scores.max() > 0.5
    assert np.median(scores) < 0.05


@pytest.mark.slow
def test_hooked_score_matches_output_attentions(small_engine):
    model = small_engine.model
    rng = np.random.default_rng(0)
    random_tokens = rng.choice(np.arange(1000, 40000), 24, replace=False).tolist()
    tokens = [small_engine.tokenizer.bos_token_id, *random_tokens, *random_tokens]
    pairs = induction_targets(tokens, queries=[i > 24 for i in range(len(tokens))])
    hooked = layer_head_scores(model, tokens, lambda a: induction_score(a, pairs))
    layer, head = np.unravel_index(hooked.argmax(), hooked.shape)
    previous = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([tokens]), output_attentions=True)
    finally:
        model.config._attn_implementation = previous
    reference = out.attentions[layer][0].float().numpy()
    assert hooked[layer, head] == pytest.approx(induction_score(reference, pairs)[head], abs=1e-6)
    assert hooked[layer, head] > 0.5


@pytest.mark.slow
def test_ablation_changes_logits_and_none_is_bit_identical(small_engine):
    model = small_engine.model
    ids = torch.tensor([small_engine.tokenizer("The cat sat on the mat. The cat")["input_ids"]])
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        nothing = HeadAblation(model, [])
        assert torch.equal(model(input_ids=ids).logits, plain)
        nothing.remove()
        for mode in ("zero", "mean"):
            ablation = HeadAblation(model, [(18, 6), (17, 3)], mode)
            changed = model(input_ids=ids).logits
            ablation.remove()
            assert not torch.equal(changed, plain)
        assert torch.equal(model(input_ids=ids).logits, plain)  # hooks removed
    with pytest.raises(SeqparError, match=r"head 99\.0 does not exist"):
        HeadAblation(model, [(99, 0)])
