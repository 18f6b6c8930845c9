"""The attention rate of Zhong et al. (``forward.AttentionRate``) in the hooked and the fused forward,
bidirectional attention, and the rule that every fused path falls back to the hooked forward when a
hook is attached."""

import math

import pytest
import torch

from grokinterp import forward as forward_module
from grokinterp.analysis.clock_pizza import distance_irrelevance, distance_irrelevance_of_model, group_coordinates
from grokinterp.config import RunConfig
from grokinterp.forward import (
    AttentionRate,
    all_logits,
    evaluate,
    even_chunks,
    final_position_cache,
    has_hooks,
    last_position_logits,
    split_metrics,
)
from grokinterp.models import build_model
from grokinterp.tasks import make_dataset


def _model(rate: float, n_layers: int, layout: str = "a b", p: int = 13, seed: int = 0):
    cfg = RunConfig(
        p=p, layout=layout, n_layers=n_layers, d_model=32, n_heads=4, d_head=8, d_mlp=64,
        attention_dir="bidirectional", attention_rate=rate, freeze_biases=False, dtype="float64",
    )  # fmt: skip
    model = build_model(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in model.parameters():  # random weights and biases: no term is trivially zero
            prm.copy_(torch.randn(prm.shape, generator=g, dtype=torch.float64) * 0.5)
    return cfg, model


def _authors_formula(model, tokens: torch.Tensor, rate: float) -> torch.Tensor:
    """Plain torch from Zhong et al.'s formulas on the TransformerLens weights: no mask,
    attention = rate * softmax(q.k / sqrt(d_head)) + (1 - rate); final-position logits."""
    x = model.embed.W_E[tokens] + model.pos_embed.W_pos[: tokens.shape[1]]
    for block in model.blocks:
        a = block.attn
        q = torch.einsum("bpd,hde->bhpe", x, a.W_Q) + a.b_Q[:, None]
        k = torch.einsum("bpd,hde->bhpe", x, a.W_K) + a.b_K[:, None]
        v = torch.einsum("bpd,hde->bhpe", x, a.W_V) + a.b_V[:, None]
        pattern = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) * rate + (1 - rate)
        x = x + torch.einsum("bhqk,bhke,hed->bqd", pattern, v, a.W_O) + a.b_O
        x = x + torch.relu(x @ block.mlp.W_in + block.mlp.b_in) @ block.mlp.W_out + block.mlp.b_out
    return (x @ model.unembed.W_U + model.unembed.b_U)[:, -1]


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10 * b.abs().max().item())


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_fused_and_hooked_forward_equal_the_authors_formula(rate, n_layers):
    cfg, model = _model(rate, n_layers)
    tokens = make_dataset(cfg.p, layout=cfg.layout).tokens
    with torch.no_grad():
        ref = _authors_formula(model, tokens, rate)
        hooked = model(tokens)[:, -1]
        fused = last_position_logits(model, tokens)
        cache = final_position_cache(model, tokens)
    assert not has_hooks(model)  # the model's own AttentionRate hooks do not count
    _close(hooked, ref)
    _close(fused, ref)
    _close(cache.logits, ref)
    # The attention from the final position recorded by the fused forward (with the rate applied)
    # is TransformerLens's cached hook_pattern, layer by layer; the hooked cache records the same.
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(n_layers)]
    with torch.no_grad():
        _, tl_cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        slow = final_position_cache(model, tokens, fast=False)
    assert len(cache.patterns) == len(slow.patterns) == n_layers
    for i, name in enumerate(names):
        _close(cache.patterns[i], tl_cache[name][:, :, -1])
        _close(slow.patterns[i], tl_cache[name][:, :, -1])


def test_bidirectional_fused_forward_with_equals_token():
    """Layout 'a b =' with 2 layers: layer 0's earlier positions see later ones (no mask)."""
    cfg, model = _model(0.3, 2, layout="a b =")
    tokens = make_dataset(cfg.p, layout=cfg.layout).tokens
    with torch.no_grad():
        _close(last_position_logits(model, tokens), _authors_formula(model, tokens, 0.3))
        causal = RunConfig(p=cfg.p, n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, dtype="float64")
        masked = build_model(causal)
        masked.load_state_dict(model.state_dict())
        # The mask matters on layer 0 of a 2-layer model: the two directions give other logits.
        assert (last_position_logits(masked, tokens) - model(tokens)[:, -1]).abs().max() > 1e-3


def test_attention_rate_survives_reset_hooks_and_is_cached():
    cfg, model = _model(0.0, 1)
    tokens = make_dataset(cfg.p, layout=cfg.layout).tokens[:5]
    model.reset_hooks(including_permanent=True)
    _, cache = model.run_with_cache(tokens)
    # Rate 0: constant attention, every position weighted 1 (the authors' hook_attn).
    assert torch.equal(cache["blocks.0.attn.hook_pattern"], torch.ones(5, 4, 2, 2, dtype=torch.float64))
    assert [type(h) for h in model.blocks[0].attn.hook_pattern._forward_hooks.values()] == [AttentionRate]


def _double_first_head(pattern, hook):
    out = pattern.clone()
    out[:, 0] = out[:, 0] * 2.0
    return out


@pytest.mark.parametrize("rate", [0.3, 1.0])
def test_every_fused_path_honours_a_permanent_hook(rate):
    cfg, model = _model(rate, 1)
    ds = make_dataset(cfg.p, layout=cfg.layout, train_frac=0.5)
    with torch.no_grad():
        plain = model(ds.tokens)[:, -1]
    model.add_hook("blocks.0.attn.hook_pattern", _double_first_head, is_permanent=True)
    model.reset_hooks()  # keeps permanent hooks
    assert has_hooks(model)
    # Independent hooked computation: the authors' formula with head 0's attention doubled.
    with torch.no_grad():
        W_O = model.blocks[0].attn.W_O.clone()
        model.blocks[0].attn.W_O[0] *= 2.0  # doubling head 0's pattern doubles its output
        ref = _authors_formula(model, ds.tokens, rate)
        model.blocks[0].attn.W_O.copy_(W_O)
    assert (ref - plain).abs().max() > 1e-3  # the hook changes the model
    with torch.no_grad():
        _close(model(ds.tokens)[:, -1], ref)
        _close(last_position_logits(model, ds.tokens), ref)
        _close(final_position_cache(model, ds.tokens).logits, ref)
        _close(all_logits(model, ds), ref)
    splits = {"train": ds.train_indices, "test": ds.test_indices}
    assert evaluate(model, ds) == pytest.approx(split_metrics(ref, ds.labels, splits), rel=1e-9, abs=1e-12)
    coords = group_coordinates(ds.a, ds.b, ds.p, ds.op)
    q = distance_irrelevance_of_model(model, ds.tokens, ds.labels, coords.distance, m=coords.m)
    correct = ref.gather(-1, ds.labels[:, None])[:, 0]
    assert q == pytest.approx(distance_irrelevance(correct, coords.distance, m=coords.m), abs=1e-12)


def test_has_hooks_sees_any_other_hook():
    _, model = _model(0.0, 1)
    assert not has_hooks(model)
    handle = model.blocks[0].mlp.hook_post.register_forward_hook(lambda m, i, o: o)
    assert has_hooks(model)
    handle.remove()
    handle = model.blocks[0].attn.hook_pattern.register_forward_hook(lambda m, i, o: o)  # beside the rate
    assert has_hooks(model)
    handle.remove()
    with model.hooks(bwd_hooks=[("blocks.0.hook_resid_post", lambda g, hook: None)]):
        assert has_hooks(model)
    assert not has_hooks(model)


def test_attention_rate_rejects_rates_outside_unit_interval():
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        AttentionRate(1.5)


@pytest.mark.parametrize("layout", ["a b =", "a b"])
@pytest.mark.parametrize("rate", [0.3, 1.0])
def test_tabulated_evaluation_equals_the_per_row_forward(bag_calls, layout, rate):
    """Without gradients, a batch larger than the tables takes the tabulated MLP input (one
    ``embedding_bag`` per table); it equals the authors' formula, the train step's per-row matmuls
    and TransformerLens's cached activations in float64; with gradients, or on few rows, the
    per-row matmuls run."""
    cfg, model = _model(rate, 1, layout=layout, p=23)
    tokens = make_dataset(cfg.p, layout=layout).tokens  # 529 rows > ctx * vocab * heads + vocab
    ref = _authors_formula(model, tokens, rate).detach()
    per_row = last_position_logits(model, tokens).detach()  # gradients on: the train step's ops
    assert not bag_calls
    with torch.no_grad():
        few = last_position_logits(model, tokens[:50])
        assert not bag_calls
        fused = last_position_logits(model, tokens)
        assert len(bag_calls) == 2  # the pre-activation's table and the residual stream's
        cache = final_position_cache(model, tokens)
        names = ["blocks.0.mlp.hook_post", "blocks.0.hook_resid_mid", "blocks.0.hook_resid_post"]
        _, tl = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    _close(per_row, ref)
    _close(few, ref[:50])
    _close(fused, ref)
    assert torch.equal(cache.logits, fused)  # every no-grad caller takes the same path
    _close(cache.posts[0], tl[names[0]][:, -1])
    _close(cache.resid_mid, tl[names[1]][:, -1])
    _close(cache.resid_post, tl[names[2]][:, -1])


def test_devices_without_the_bag_keep_the_per_row_forward(bag_calls, monkeypatch):
    """Where ``embedding_bag`` may be missing (MPS before torch 2.10), evaluation keeps the per-row
    matmuls: with the CPU taken off ``TABULATED_DEVICES``, no bag runs and the logits are the
    train step's (those of the forward with gradients on)."""
    cfg, model = _model(1.0, 1, layout="a b", p=23)
    tokens = make_dataset(cfg.p, layout="a b").tokens
    per_row = last_position_logits(model, tokens).detach()
    monkeypatch.setattr(forward_module, "TABULATED_DEVICES", ("cuda",))
    with torch.no_grad():
        assert torch.equal(last_position_logits(model, tokens), per_row)
    assert not bag_calls


def test_even_chunks_leave_no_small_last_chunk(bag_calls):
    """Chunked evaluations split rows evenly, so a caller's chunk size cannot leave a last chunk too
    small for the tabulated path: every chunk takes it, as one call over all rows does."""
    sizes = [len(c) for c in even_chunks(torch.zeros(16_641, 3), 16_384)]  # p = 129 in chunks of 16,384
    assert sizes == [8_321, 8_320]
    assert [c.shape[1] for c in even_chunks(torch.zeros(2, 10, 3), 4, dim=1)] == [4, 3, 3]
    assert [len(c) for c in even_chunks(torch.zeros(5, 3), 16_384)] == [5]
    cfg, model = _model(1.0, 1, layout="a b", p=23)  # 529 rows; tables of 2 * 23 * 4 + 23 = 207 rows
    tokens = make_dataset(cfg.p, layout="a b").tokens
    with torch.no_grad():
        final_position_cache(model, tokens, chunk=500)  # split 500 + 29, the 29 rows would go per row
    assert len(bag_calls) == 4  # two chunks of 265 and 264 rows, two bags each
