"""``stacked_last_position_logits``: the fused forward on weights stacked along a model axis equals
every member's own forward (its hooked TransformerLens forward, and its ``last_position_logits``)
in float64, with each member's own weights and tokens; so does its gradient."""

from __future__ import annotations

import pytest
import torch

from grokinterp import forward
from grokinterp.backend import functional_state
from grokinterp.forward import last_position_logits, stacked_last_position_logits
from grokinterp.models import build_model
from grokinterp.presets import get_preset
from grokinterp.tasks import make_dataset

SMALL = dict(d_model=32, n_heads=4, d_head=8, d_mlp=64, dtype="float64", freeze_biases=False)
CONFIGS = {
    "nanda": get_preset("nanda-p113").replace(p=17, **SMALL),
    "power-2-layer-LN-gelu": get_preset("power-p97").replace(p=13, **SMALL),
    "pizza-rate-0": get_preset("zhong-model-a").replace(p=13, **SMALL),
    "rate-0.3-2-layer": get_preset("zhong-model-b").replace(p=11, attention_rate=0.3, n_layers=2, **SMALL),
    "gelu-LNPre-3-layer": get_preset("nanda-p113").replace(
        p=11, act_fn="gelu", normalization_type="LNPre", n_layers=3, **SMALL
    ),
    "grok-mlp": get_preset("mlp-p97").replace(p=11, **SMALL),
}


def _members(cfg, m: int = 3):
    """``m`` models of ``cfg`` with random weights and biases (no term trivially zero), their
    stacked weights, and different tokens for each."""
    g = torch.Generator().manual_seed(0)
    models = [build_model(cfg) for _ in range(m)]
    with torch.no_grad():
        for model in models:
            for prm in model.parameters():
                prm.copy_(torch.randn(prm.shape, generator=g, dtype=prm.dtype) * 0.5)
    states = [functional_state(model) for model in models]
    params = {n: torch.stack([s[n].detach() for s in states]) for n in states[0]}
    rows = make_dataset(cfg.p, op=cfg.op, layout=cfg.layout).tokens
    tokens = torch.stack([rows[torch.randperm(len(rows), generator=g)[:60]] for _ in range(m)])
    return models, params, tokens


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=rel * b.abs().max().item())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_stacked_forward_equals_every_members_forward(name):
    models, params, tokens = _members(CONFIGS[name])
    with torch.no_grad():
        out = stacked_last_position_logits(models[0], params, tokens)
        for j, model in enumerate(models):
            assert out.shape == (len(models), tokens.shape[1], model.cfg.d_vocab_out)
            _close(out[j], model(tokens[j])[:, -1], 1e-10)  # the hooked forward: independent code
            _close(out[j], last_position_logits(model, tokens[j]), 1e-12)


def test_stacked_forward_without_the_score_table(monkeypatch):
    """The layer-0 scores gathered from key vectors (vocabularies too large for the score table)."""
    monkeypatch.setattr(forward, "_SCORE_TABLE_MAX", 0)
    models, params, tokens = _members(CONFIGS["nanda"])
    with torch.no_grad():
        out = stacked_last_position_logits(models[0], params, tokens)
    for j, model in enumerate(models):
        _close(out[j], model(tokens[j])[:, -1].detach(), 1e-10)


@pytest.mark.parametrize("name", ["power-2-layer-LN-gelu", "rate-0.3-2-layer"])
def test_stacked_gradient_is_every_members_gradient(name):
    models, params, tokens = _members(CONFIGS[name])
    weights = torch.randn(tokens.shape[1], models[0].cfg.d_vocab_out, generator=torch.Generator().manual_seed(1))
    leaves = {n: p.clone().requires_grad_(p.is_floating_point()) for n, p in params.items()}
    (stacked_last_position_logits(models[0], leaves, tokens).tanh() * weights.double()).sum().backward()
    for j, model in enumerate(models):
        (model(tokens[j])[:, -1].tanh() * weights.double()).sum().backward()
        # Relative to the member's largest gradient: some (b_K's) are zero but for rounding.
        scale = max(prm.grad.abs().max().item() for prm in model.parameters())
        for n, prm in model.named_parameters():
            torch.testing.assert_close(leaves[n].grad[j], prm.grad, rtol=0, atol=1e-10 * scale)


def test_a_hook_sends_the_stacked_forward_through_the_hooked_one():
    """With a hook attached, every member runs the hooked forward (vmapped), so the hook acts."""
    models, params, tokens = _members(CONFIGS["nanda"], m=2)
    for model in models:
        model.blocks[0].mlp.hook_post.add_hook(lambda act, hook: act * 0)
    with torch.no_grad():
        out = stacked_last_position_logits(models[0], params, tokens)
        for j, model in enumerate(models):
            _close(out[j], model(tokens[j])[:, -1], 1e-12)
            model.reset_hooks()
            assert not torch.allclose(out[j], model(tokens[j])[:, -1])  # the hook changed them


@pytest.mark.parametrize("name", ["nanda", "pizza-rate-0"])
def test_stacked_tabulated_evaluation_equals_every_members_forward(name, bag_calls, monkeypatch):
    """Without gradients and on more rows than the tables have, the stacked forward of 1-layer
    members without LayerNorm takes the tabulated MLP input (one bag per table over all members'
    tables): each member's logits equal its hooked forward in float64; under vmap (the path of
    TransformerLens 4.x and hooked models) it is not taken."""
    cfg = CONFIGS[name]
    models, params, _ = _members(cfg)
    rows = make_dataset(cfg.p, op=cfg.op, layout=cfg.layout).tokens
    g = torch.Generator().manual_seed(1)
    tokens = torch.stack([rows[torch.randperm(len(rows), generator=g)] for _ in models])  # all rows, each order
    assert tokens.shape[1] > cfg.n_ctx * cfg.d_vocab * cfg.n_heads + cfg.d_vocab
    with torch.no_grad():
        out = stacked_last_position_logits(models[0], params, tokens)
        assert len(bag_calls) == 2
        for j, model in enumerate(models):
            _close(out[j], model(tokens[j])[:, -1], 1e-10)
        monkeypatch.setattr(forward.backend, "TL_MAJOR", 4)  # the vmap path
        bag_calls.clear()
        _close(stacked_last_position_logits(models[0], params, tokens), out, 1e-12)
        assert not bag_calls
