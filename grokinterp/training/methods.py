"""Methods that accelerate grokking, as trainer options.

- **Larger lr x wd**: plain AdamW with a larger learning rate and weight decay (the config fields
  ``lr`` and ``wd``); weight decay drives the cleanup phase (Nanda et al. 2023, Sec. 5).
- **Grokfast** (Lee et al. 2024, "Grokfast: Accelerated Grokking by Amplifying Slow Gradients",
  arXiv 2405.20233): low-pass filter the gradient and add it back amplified,
  ``g <- g + lamb * filter(g)``. ``ema``: ``h <- alpha*h + (1-alpha)*g`` (h starts at the first
  gradient); ``ma``: the mean of the last ``window`` gradients, applied once the window is full.
- **StableMax** (Prieto et al. 2025, "Grokking at the Edge of Numerical Stability",
  arXiv 2501.04697): softmax with ``exp`` replaced by ``s(x) = x + 1`` for x >= 0 and
  ``1 / (1 - x)`` for x < 0, which avoids the softmax collapse that stalls grokking.
- **Orthogonal gradient** (same paper, "perp-Grad"): remove from each parameter's gradient its
  component along the parameter, then rescale to the original gradient norm, so the step cannot
  just scale up the logits ("naive loss minimisation").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from grokinterp.config import RunConfig


@torch.no_grad()
def orthogonalize_gradients(
    params: Iterable[nn.Parameter] | Iterable[tuple[str, nn.Parameter]],
    eps: float = 1e-30,
    view: Callable[[str, Tensor], Tensor] | None = None,
    unview: Callable[[str, Tensor], Tensor] | None = None,
) -> None:
    """perp-Grad: g <- (g - (g.w / w.w) w) * |g| / |g_perp|, per parameter tensor, in place.

    ``params`` may be ``(name, parameter)`` pairs with ``view(name, t)`` / ``unview(name, t)``
    (``grokinterp.backend.to_3x_layout`` / ``from_3x_layout``): the sums then run over the 3.x
    layout, so the result is bit-identical on TransformerLens 3.x and 4.x."""
    for item in params:
        name, p = item if isinstance(item, tuple) else ("", item)
        if p.grad is None:
            continue
        v = view(name, p.detach()) if view else p.detach()
        w, g = v.flatten(), (view(name, p.grad) if view else p.grad).flatten()
        g_perp = g - (w @ g) / (w @ w + eps) * w
        out = (g_perp * (g.norm() / (g_perp.norm() + eps))).view_as(v)
        p.grad.copy_(unview(name, out) if unview else out)


def _same(name: str, t: Tensor) -> Tensor:
    return t


class GrokfastEMA:
    """Grokfast-EMA gradient filter (Lee et al. 2024, Algorithm 2)."""

    def __init__(self, alpha: float = 0.98, lamb: float = 2.0) -> None:
        self.alpha, self.lamb = alpha, lamb
        self.ema: dict[str, Tensor] = {}

    @torch.no_grad()
    def __call__(self, named_params: Iterable[tuple[str, nn.Parameter]]) -> None:
        for name, p in named_params:
            if p.grad is None:
                continue
            if name not in self.ema:
                self.ema[name] = p.grad.detach().clone()
            else:
                self.ema[name].mul_(self.alpha).add_(p.grad, alpha=1 - self.alpha)
            p.grad.add_(self.ema[name], alpha=self.lamb)

    def state_tensors(self, view: Callable[[str, Tensor], Tensor] = _same) -> dict[str, Tensor]:
        """The filter's state for the resume file (``ema.<parameter name>``), each tensor through
        ``view(name, t)`` (``grokinterp.backend.to_3x_layout``: the 3.x layout on either version)."""
        return {f"ema.{k}": view(k, v) for k, v in self.ema.items()}

    def load_state_tensors(self, tensors: dict[str, Tensor], unview: Callable[[str, Tensor], Tensor] = _same) -> None:
        """Restore the state written by ``state_tensors`` (``unview`` undoes its ``view``)."""
        self.ema = {k[4:]: unview(k[4:], v).clone() for k, v in tensors.items() if k.startswith("ema.")}


class GrokfastMA:
    """Grokfast-MA gradient filter (Lee et al. 2024, Algorithm 1, with warm-up)."""

    def __init__(self, window: int = 100, lamb: float = 5.0) -> None:
        self.window, self.lamb = window, lamb
        self.history: dict[str, list[Tensor]] = {}

    @torch.no_grad()
    def __call__(self, named_params: Iterable[tuple[str, nn.Parameter]]) -> None:
        for name, p in named_params:
            if p.grad is None:
                continue
            hist = self.history.setdefault(name, [])
            hist.append(p.grad.detach().clone())
            if len(hist) > self.window:
                hist.pop(0)
            if len(hist) == self.window:
                p.grad.add_(torch.stack(hist).mean(0), alpha=self.lamb)

    def state_tensors(self, view: Callable[[str, Tensor], Tensor] = _same) -> dict[str, Tensor]:
        """The filter's state for the resume file (``ma.<parameter name>``: the stacked window),
        each gradient through ``view(name, t)`` (as ``GrokfastEMA.state_tensors``)."""
        return {f"ma.{k}": torch.stack([view(k, g) for g in v]) for k, v in self.history.items() if v}

    def load_state_tensors(self, tensors: dict[str, Tensor], unview: Callable[[str, Tensor], Tensor] = _same) -> None:
        """Restore the state written by ``state_tensors`` (``unview`` undoes its ``view``)."""
        self.history = {
            k[3:]: [unview(k[3:], g).clone() for g in v.unbind(0)] for k, v in tensors.items() if k.startswith("ma.")
        }


def make_grad_filter(cfg: RunConfig) -> GrokfastEMA | GrokfastMA | None:
    """The Grokfast gradient filter of ``cfg`` (``cfg.grokfast``: ema, ma), or None."""
    if cfg.grokfast == "ema":
        return GrokfastEMA(cfg.grokfast_alpha, cfg.grokfast_lamb)
    if cfg.grokfast == "ma":
        return GrokfastMA(cfg.grokfast_window, cfg.grokfast_lamb)
    return None
