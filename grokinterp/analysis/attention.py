"""Attention from the final ("=") position to the a and b positions (Nanda et al. 2023, Sec. 4.1,
periodic attention; TransformerLens demo "Attention Patterns")."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from grokinterp.tasks import Dataset, operand_positions

__all__ = ["attention_to_a_b", "has_attention"]

_CHUNK = 16_384


def has_attention(model: nn.Module) -> bool:
    """Whether the model has attention layers (the GrokMLP has none)."""
    return hasattr(model, "blocks") and hasattr(model.blocks[0], "attn")


@torch.no_grad()
def attention_to_a_b(
    model: nn.Module, dataset: Dataset, layer: int = 0, chunk: int = _CHUNK
) -> tuple[Float[Tensor, "heads p p"], Float[Tensor, "heads p p"]]:
    """Attention paid by the final position to the a and to the b position, as (n_heads, p, p)
    maps over (a, b) per head (demo: ``cache["pattern", 0][:, :, -1, 0]``). Positions: a = 0 and
    b = 1 for ``a b =`` and ``a b``, b = 2 for ``a op b =`` (``tasks.operand_positions``; in ``a b``
    the final position is b itself, there is no "="). Pairs missing from the dataset (b = 0 for
    ``div``) are NaN."""
    if not has_attention(model):
        raise ValueError("attention_to_a_b needs a transformer; GrokMLP has no attention")
    name = f"blocks.{layer}.attn.hook_pattern"
    pos_b = operand_positions(dataset.layout)[1]
    tokens = dataset.tokens.to(next(model.parameters()).device)
    parts = []
    for t in tokens.split(chunk):
        _, cache = model.run_with_cache(t, names_filter=lambda n: n == name)
        parts.append(cache[name][:, :, -1, [0, pos_b]])  # (batch, heads, 2)
    pat = torch.cat(parts)
    p = dataset.p
    full = pat.new_full((p * p, pat.shape[1], 2), float("nan"))
    full[(dataset.a * p + dataset.b).to(pat.device)] = pat
    maps = full.reshape(p, p, -1, 2).permute(3, 2, 0, 1)  # (2, heads, a, b)
    return maps[0].contiguous(), maps[1].contiguous()
