import pytest
import torch

from grokinterp.backend import TL_MAJOR
from grokinterp.config import RunConfig
from grokinterp.models import build_model, last_position_logits, supports_fused
from grokinterp.presets import PRESETS
from grokinterp.tasks import make_dataset


def _randomise(model, scale=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def _float64(model):
    """The fused forward is an exact rewrite: compare it in float64, where rounding is ~1e-16 of
    the logit scale. In float32 random unnormalised multi-layer models are ill-conditioned (the
    float32 reference itself is ~1e-4 of the scale away from float64, and differently so on Intel
    and AMD kernels), so a float32 comparison would test the CPU, not the code."""
    return model.to(torch.float64)


def _assert_exact(fast, ref):
    scale = ref.abs().max().item()
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("name", list(PRESETS))
def test_fused_forward_equals_hooked_transformer(name):
    cfg = PRESETS[name].replace(p=31) if PRESETS[name].op == "add" else PRESETS[name]
    model = build_model(cfg)
    _randomise(model)  # random weights and biases, so no term is trivially zero
    model = _float64(model)
    ds = make_dataset(cfg.p, cfg.op, cfg.layout, cfg.train_frac, cfg.data_seed)
    g = torch.Generator().manual_seed(1)
    tokens = ds.tokens[torch.randint(len(ds.tokens), (256,), generator=g)]
    with torch.no_grad():
        ref = model(tokens)[:, -1]
        fast = last_position_logits(model, tokens)
    assert fast.shape == (256, cfg.p) and fast.dtype == torch.float64
    _assert_exact(fast, ref)


@pytest.mark.parametrize("norm", ["none", "LN", "LNPre"])
@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_fused_forward_other_architectures(norm, n_layers):
    cfg = RunConfig(p=23, n_layers=n_layers, normalization_type=norm, act_fn="gelu", layout="a op b =", d_mlp=64)
    model = build_model(cfg)
    _randomise(model, scale=0.3)
    model = _float64(model)
    assert supports_fused(model)
    tokens = make_dataset(23, layout="a op b =").tokens[:200]
    with torch.no_grad():
        ref = model(tokens)[:, -1]
        fast = last_position_logits(model, tokens)
    _assert_exact(fast, ref)


def test_fused_gradients_match():
    cfg = RunConfig(p=23)
    model = build_model(cfg)
    _randomise(model, 0.3)
    model = _float64(model)
    for p in model.parameters():
        p.requires_grad_(True)
    tokens = make_dataset(23).tokens
    grads = []
    for f in (lambda t: model(t)[:, -1], lambda t: last_position_logits(model, t)):
        model.zero_grad()
        f(tokens).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    # b_K's true gradient is 0 (softmax is shift invariant): compare on the global gradient scale.
    scale = max(g.abs().max().item() for g in grads[0].values())
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=0, atol=1e-10 * scale)


@pytest.mark.skipif(TL_MAJOR >= 4, reason="compares with TransformerLens 3.x's HookedTransformer")
def test_nanda_init_matches_demo_and_biases_frozen():
    from transformer_lens import HookedTransformer

    cfg = PRESETS["nanda-p113"]
    model = build_model(cfg)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if "b_" in n}
    # The demo builds HookedTransformer(cfg) with cfg.seed = 999: same weights.
    from grokinterp.models import hooked_transformer_config

    ref = HookedTransformer(hooked_transformer_config(cfg))
    for (n, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_mlp_model_shapes_and_hooks():
    cfg = PRESETS["mlp-p97"].replace(p=23)
    model = build_model(cfg)
    tokens = make_dataset(23).tokens[:10]
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (10, 1, 23)
    assert cache["blocks.1.mlp.hook_post"].shape == (10, 256)
    assert cache["hook_embed"].shape == (10, 2, 128)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 23 * 128 + (256 * 256 + 256) * 2 + 256 * 23 + 23


def test_separate_embeddings_mlp_is_chughtais_model():
    """mlp_embed="separate": logits = relu([W_E[a], W_E_b[b]] @ W_in) @ W_U, biases 0 and frozen,
    every matrix randn / sqrt(fan-in) (Chughtai et al. 2023's OneLayerMLP)."""
    from grokinterp.config import RunConfig
    from grokinterp.models import build_model

    cfg = RunConfig(op="S5", layout="a b", arch="mlp", mlp_embed="separate", n_layers=1, d_model=256, d_mlp=128)
    model = build_model(cfg)
    a, b = torch.tensor([0, 5, 119]), torch.tensor([3, 5, 7])
    W_in = model.blocks[0].mlp.W_in
    expect = torch.relu(torch.cat([model.W_E[a], model.W_E_b[b]], 1) @ W_in) @ model.W_U
    assert torch.allclose(model(torch.stack([a, b], 1))[:, -1], expect, atol=1e-5)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"b_U", "blocks.0.mlp.b_in"}
    assert float(model.b_U.abs().max()) == 0.0 and float(model.blocks[0].mlp.b_in.abs().max()) == 0.0
    # randn / sqrt(fan-in): the standard deviations within 5% (30k-65k draws each)
    for w, fan_in in ((model.W_E, 256), (model.W_E_b, 256), (W_in, 512), (model.W_U, 128)):
        assert float(w.detach().std()) == pytest.approx(fan_in**-0.5, rel=0.05)
