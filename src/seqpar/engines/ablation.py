"""Head ablation: replace chosen attention heads' outputs with zero or their mean.

The hook sits before each attention block's output projection, where the heads' outputs
are still side by side (batch, positions, heads × head_dim). Mean ablation uses the head's
mean output over all positions of the current batch's prompt pass (the first call with
more than one position), reused for the decoding steps that follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqpar.errors import SeqparError
from seqpar.specs import ABLATION_MODES, check_choice


def attention_modules(model: Any) -> list[Any]:
    """The self-attention modules of a decoder, in layer order."""
    return [m for name, m in model.named_modules() if name.endswith("self_attn")]


class HeadAblation:
    """Installs and removes ablation hooks on a transformers decoder."""

    def __init__(self, model: Any, heads: Sequence[tuple[int, int]], mode: str = "zero") -> None:
        check_choice("ablation", mode, ABLATION_MODES)
        modules = attention_modules(model)
        config = model.config
        self.head_dim = (
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        for layer, head in heads:
            if not (0 <= layer < len(modules) and 0 <= head < config.num_attention_heads):
                raise SeqparError(
                    f"head {layer}.{head} does not exist: the model has {len(modules)} layers "
                    f"of {config.num_attention_heads} heads"
                )
        self.mode = mode
        self.means: dict[tuple[int, int], Any] = {}
        by_layer: dict[int, list[int]] = {}
        for layer, head in heads:
            by_layer.setdefault(layer, []).append(head)
        self.handles = [
            modules[layer].o_proj.register_forward_pre_hook(self.hook(layer, layer_heads))
            for layer, layer_heads in by_layer.items()
        ]

    def hook(self, layer: int, heads: list[int]) -> Any:
        def replace_heads(module: Any, args: tuple) -> tuple:
            (states,) = args
            states = states.clone()
            for head in heads:
                part = slice(head * self.head_dim, (head + 1) * self.head_dim)
                if self.mode == "zero":
                    states[..., part] = 0
                    continue
                if states.shape[1] > 1 or (layer, head) not in self.means:
                    self.means[(layer, head)] = states[..., part].mean(dim=(0, 1))
                states[..., part] = self.means[(layer, head)]
            return (states,)

        return replace_heads

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
