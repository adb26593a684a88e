"""Decoding attention on CPU that never takes PyTorch's slow grouped-query kernel.

transformers' sdpa attention handles one query token per row (decoding) in two ways. With
an attention mask it packs the query heads onto their shared key/value heads and PyTorch
runs a fast kernel. Without one (no row of the batch is padded, as when one row is left or
all rows have the same length), it asks PyTorch for grouped-query attention
(`enable_gqa`), whose CPU kernel is 3-12× slower in bfloat16: 5.4 ms vs 0.45 ms per layer
for 6 rows over 1,500 cached tokens and 14 heads, so a decode step of the default model took
199 ms instead of 77 ms, and long prompts (sequential rounds, padded runs) paid for it most.
This attention gives such calls an all-true mask and hands everything to sdpa, so the
numbers are sdpa's own.
"""

from __future__ import annotations

from typing import Any

NAME = "seqpar_cpu_decode"


def attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any
) -> tuple[Any, None]:
    """transformers' attention interface (sdpa's): `query` is (batch, heads, queries, dim)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is None and query.shape[2] == 1 and query.device.type == "cpu":
        attention_mask = torch.ones((1, 1, 1, key.shape[2]), dtype=torch.bool, device=key.device)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def install(model: Any) -> None:
    """Make `model` attend with `attention`, its masks built as sdpa's are. Only where
    transformers' sdpa packs one query's heads (`pack_gqa`): elsewhere a mask makes sdpa copy
    the key/value heads, which this was not measured against."""
    from transformers import AttentionInterface
    from transformers.integrations import sdpa_attention
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if not hasattr(sdpa_attention, "pack_gqa"):
        return

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
