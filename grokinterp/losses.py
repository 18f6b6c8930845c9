"""Losses over the answer classes: cross-entropy and StableMax (Prieto et al. 2025, arXiv 2501.04697).

StableMax replaces ``exp`` in the softmax by ``s(x) = x + 1`` for x >= 0 and ``1 / (1 - x)`` for
x < 0, which avoids the softmax collapse that stalls grokking (see ``grokinterp.training.methods``).
Losses are computed in float64 by default: float32 ``log_softmax`` floors near 1e-7, and the late
phases of grokking live below that.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def stablemax_log_probs(logits: Float[Tensor, "batch classes"]) -> Float[Tensor, "batch classes"]:
    """Log-probabilities under StableMax (``s(x) = x + 1`` for x >= 0, ``1 / (1 - x)`` below)."""
    s = torch.where(logits >= 0, logits + 1, 1 / (1 - logits.clamp(max=0)))
    return s.log() - s.sum(-1, keepdim=True).log()


def cross_entropy(
    logits: Float[Tensor, "batch classes"],
    labels: Int[Tensor, " batch"],
    kind: str = "cross_entropy",
    dtype: torch.dtype = torch.float64,
) -> Float[Tensor, ""]:
    """Mean cross-entropy in ``dtype`` (float64 by default: float32 log_softmax floors near 1e-7)."""
    return -log_probs(logits.to(dtype), kind).gather(-1, labels[:, None]).mean()


def log_probs(logits: Float[Tensor, "... classes"], kind: str = "cross_entropy") -> Float[Tensor, "... classes"]:
    """Log-probabilities of ``logits`` under the loss ``kind`` (``cross_entropy`` or ``stablemax``)."""
    return stablemax_log_probs(logits) if kind == "stablemax" else logits.log_softmax(-1)


__all__ = ["cross_entropy", "log_probs", "stablemax_log_probs"]
