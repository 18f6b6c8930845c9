"""Interventions (grokinterp.analysis.interventions) against closed forms and independent computations:
a weight edit, a hand-made projection with ``fft2d``, the residual stream from ``run_with_cache``.

Models are untrained (p = 23): every check holds for any weights, so nothing depends on training."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from grokinterp.analysis import interventions as iv
from grokinterp.analysis.bases import task_basis
from grokinterp.analysis.clusters import NeuronClusters
from grokinterp.analysis.fourier import fft2d, fourier_basis, freq_rows
from grokinterp.config import RunConfig
from grokinterp.forward import attention_rate, evaluate, has_hooks, split_metrics
from grokinterp.models import build_model
from grokinterp.tasks import make_dataset

P = 23
SMALL = {"p": P, "d_model": 32, "n_heads": 4, "d_head": 8, "d_mlp": 48, "freeze_biases": False, "device": "cpu"}
ARCHS = {
    "transformer-1": {},
    "transformer-2": {"n_layers": 2},
    "transformer-LN": {"normalization_type": "LN"},
    "mlp": {"arch": "mlp", "n_layers": 2},
    "pizza": {"attention_rate": 0.0, "attention_dir": "bidirectional", "layout": "a b"},
}
SITES = ("embed", "neurons", "logits")
TOL = 2e-5  # the hooked forward vs the fused one: float32 rounding


def _setup(arch: str = "transformer-1", op: str = "add"):
    cfg = RunConfig(**{**SMALL, **ARCHS[arch]})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # TransformerLens initialises biases to zero: give them values
        for name, param in model.named_parameters():
            if "b_" in name:
                param.normal_(0, 0.1)
    return model, make_dataset(P, op, cfg.layout, 0.5, 0)


def _close(a: iv.Metrics, b: iv.Metrics, tol: float = TOL) -> None:
    for f in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), abs=tol), f


def _metrics(model, ds) -> iv.Metrics:
    return iv.Metrics.from_dict(evaluate(model, ds))


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_keeping_every_frequency_changes_nothing(arch, site):
    model, ds = _setup(arch)
    r = iv.keep_frequencies(model, ds, range(1, P // 2 + 1), site)
    _close(r.after, r.before)
    _close(r.change, iv.Metrics(0.0, 0.0, 0.0, 0.0))
    assert not has_hooks(model)  # the hooks are gone afterwards
    if arch == "pizza":  # the model's own attention-rate hooks stay
        assert all(attention_rate(b.attn) is not None for b in model.blocks)


@pytest.mark.parametrize("op", ["add", "mul"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_removing_every_frequency_makes_W_E_constant(arch, op):
    """Removing every frequency of W_E leaves each number token's mean embedding (for mul: tokens
    1..p-1, token 0 has no discrete log and keeps its row): equal to editing the weights."""
    model, ds = _setup(arch, op)
    basis = task_basis(op, P)
    r = iv.remove_frequencies(model, ds, range(1, basis.n_freqs + 1), "embed")
    edited = copy.deepcopy(model)
    with torch.no_grad():
        first = 1 if op == "mul" else 0
        edited.W_E[first:P] = edited.W_E[first:P].mean(0)
    _close(r.after, _metrics(edited, ds))
    assert r.before != r.after


def test_constant_embedding_gives_the_same_logits_for_every_input():
    """Closed form for a 1-layer transformer on add: with W_E constant over the numbers every
    input a b = is the same sequence, so one logit vector l serves every row and the loss is
    mean(logsumexp(l) - l[label])."""
    model, ds = _setup()
    r = iv.remove_frequencies(model, ds, range(1, P // 2 + 1))
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.W_E[:P] = edited.W_E[:P].mean(0)
        one = edited(ds.tokens[:1])[0, -1, :P].double()
    nll = torch.logsumexp(one, 0) - one[ds.labels]
    assert r.after.test_loss == pytest.approx(nll[ds.test_indices].mean().item(), abs=TOL)
    assert r.after.train_loss == pytest.approx(nll[ds.train_indices].mean().item(), abs=TOL)


def test_removing_is_keeping_the_complement():
    model, ds = _setup()
    removed = [2, 5, 7]
    kept = [k for k in range(1, P // 2 + 1) if k not in removed]
    for site in SITES:
        _close(iv.remove_frequencies(model, ds, removed, site).after, iv.keep_frequencies(model, ds, kept, site).after)


def _project_independently(x: torch.Tensor, removed: list[int]) -> torch.Tensor:
    """x (p*p, ...) a-major over (a, b): drop every 2D Fourier term with frequency in ``removed``."""
    F, _ = fourier_basis(P, dtype=torch.float64)
    C = fft2d(x.double().reshape(P, P, -1))
    drop = torch.zeros(P, dtype=torch.bool)
    for k in removed:
        drop[freq_rows(P, k)] = True
    C[drop] = 0
    C[:, drop] = 0
    return torch.einsum("fg...,fx,gy->xy...", C, F, F).reshape(x.shape)


def test_neuron_frequencies_match_a_hand_projection():
    """1-layer transformer without layer norm: the logits are the clean ones plus the change of the
    final-position neurons through W_out @ W_U."""
    model, ds = _setup()
    removed = [3, 4]
    r = iv.remove_frequencies(model, ds, removed, "neurons")
    logits, cache = model.run_with_cache(ds.tokens)
    post = cache["blocks.0.mlp.hook_post"][:, -1].double()
    new = _project_independently(post, removed)
    WL = (model.blocks[0].mlp.W_out @ model.W_U).double().detach()
    after = logits[:, -1].double().detach() + (new - post) @ WL
    expect = split_metrics(after, ds.labels, {"train": ds.train_indices, "test": ds.test_indices})
    _close(r.after, iv.Metrics.from_dict(expect))


@pytest.mark.parametrize("arch", ["transformer-1", "mlp"])
def test_logit_frequencies_match_a_hand_projection(arch):
    model, ds = _setup(arch)
    removed = [1, 6, 11]
    r = iv.remove_frequencies(model, ds, removed, "logits")
    logits = model(ds.tokens)[:, -1].detach()
    expect = split_metrics(
        _project_independently(logits, removed), ds.labels, {"train": ds.train_indices, "test": ds.test_indices}
    )
    _close(r.after, iv.Metrics.from_dict(expect))


@pytest.mark.parametrize(
    ("arch", "layer"),
    [("transformer-1", 0), ("transformer-2", 0), ("transformer-2", 1), ("mlp", 0), ("mlp", 1), ("pizza", 0)],
)
def test_zero_ablating_every_neuron_equals_W_out_zero(arch, layer):
    """Zero-ablating every neuron of a layer = the model with that layer's output weights zero
    (W_out of a transformer block; for the MLP the next layer's W_in, or W_U after the last)."""
    model, ds = _setup(arch)
    r = iv.ablate_neurons(model, ds, range(model.cfg.d_mlp), "zero", layer=layer)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        if arch == "mlp":
            (edited.W_U if layer == len(edited.blocks) - 1 else edited.blocks[layer + 1].mlp.W_in).zero_()
        else:
            edited.blocks[layer].mlp.W_out.zero_()
    _close(r.after, _metrics(edited, ds))


def test_mean_ablating_every_neuron_equals_a_constant_mlp():
    """1-layer transformer: only the final position reaches the logits, so mean ablation of every
    neuron = an MLP that outputs mean(post[:, -1]) @ W_out + b_out for every input."""
    model, ds = _setup()
    r = iv.ablate_neurons(model, ds, range(model.cfg.d_mlp), "mean")
    _, cache = model.run_with_cache(ds.tokens)
    mean_post = cache["blocks.0.mlp.hook_post"][:, -1].mean(0)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.blocks[0].mlp.b_out.add_(mean_post @ edited.blocks[0].mlp.W_out)  # in place: 4.x attributes are views
        edited.blocks[0].mlp.W_out.zero_()
    _close(r.after, _metrics(edited, ds))


def _planted_clusters(d_mlp: int) -> NeuronClusters:
    labels = torch.tensor([(-1, 3, 5, 8)[i % 4] for i in range(d_mlp)])
    frac = torch.zeros(d_mlp, P // 2, dtype=torch.float64)
    return NeuronClusters(frac, labels.clamp_min(1), torch.ones(d_mlp, dtype=torch.float64), labels, 0.85)


@pytest.mark.parametrize("arch", ["transformer-1", "mlp"])
def test_cluster_attribution_sums_to_the_mlp_direct_contribution(arch):
    model, ds = _setup(arch)
    clusters = _planted_clusters(model.cfg.d_mlp)
    dla = iv.direct_logit_attribution(model, ds, clusters=clusters)
    assert dla.labels == (-1, 3, 5, 8)
    assert sum(dla.per_cluster.values()) == pytest.approx(dla.total, rel=1e-9)
    assert dla.per_row.sum(0).mean().item() == pytest.approx(dla.total, rel=1e-9)
    # Independently: the MLP's output at the final position (less its bias) through W_U.
    L = len(model.blocks) - 1
    hook = f"blocks.{L}.hook_mlp_out" if arch != "mlp" else f"blocks.{L}.mlp.hook_post"
    _, cache = model.run_with_cache(ds.tokens)
    out = cache[hook][:, -1] if arch != "mlp" else cache[hook]
    if arch != "mlp":
        out = out - model.blocks[L].mlp.b_out
    direct = (out @ model.W_U).double()[torch.arange(len(ds.labels)), ds.labels]
    assert dla.total == pytest.approx(direct.mean().item(), rel=1e-4)
    # One cluster: its neurons alone.
    on = clusters.labels == 5
    post = cache[f"blocks.{L}.mlp.hook_post"]
    post = post[:, -1] if post.ndim == 3 else post
    WL = model.blocks[L].mlp.W_out @ model.W_U if arch != "mlp" else model.W_U
    five = (post[:, on] @ WL[on]).double()[torch.arange(len(ds.labels)), ds.labels].mean().item()
    assert dla.per_cluster[5] == pytest.approx(five, rel=1e-4)


def _grid_functions():
    w = 2 * math.pi / P
    a = torch.arange(P, dtype=torch.float64)[:, None].expand(P, P)
    b = torch.arange(P, dtype=torch.float64)[None, :].expand(P, P)
    k = 4
    return torch.stack(
        [
            torch.cos(k * w * a) * torch.cos(k * w * b),
            5 + 3 * torch.cos(k * w * a) + 2 * torch.sin(k * w * a) * torch.sin(k * w * b),
            torch.sin(3 * w * b),
        ],
        -1,
    )


def test_decomposition_of_planted_neurons():
    acts = _grid_functions()
    d = iv.neuron_decomposition(acts, freqs=[4, 4, 3])
    t = {name: i for i, name in enumerate(d.terms)}
    assert d.variance_explained[0, t["cos wa cos wb"]].item() == pytest.approx(1.0, abs=1e-12)
    assert d.variance_explained[0].sum().item() == pytest.approx(1.0, abs=1e-12)
    # 3 cos(wa) has sum of squares 9 p^2/2, 2 sin(wa) sin(wb) has 4 p^2/4: fractions 4.5/5.5, 1/5.5.
    assert d.variance_explained[1, t["cos wa"]].item() == pytest.approx(4.5 / 5.5, abs=1e-12)
    assert d.variance_explained[1, t["sin wa sin wb"]].item() == pytest.approx(1 / 5.5, abs=1e-12)
    assert d.constant[1].item() == pytest.approx(5.0, abs=1e-12)
    # Coefficients on the unit-norm grid functions: 3 cos(wa) = 3 sqrt(p^2/2) * unit.
    assert d.coefficients[1, t["cos wa"]].item() == pytest.approx(3 * math.sqrt(P * P / 2), rel=1e-12)
    assert d.variance_explained[2, t["sin wb"]].item() == pytest.approx(1.0, abs=1e-12)
    # Default frequency: each neuron's best.
    assert iv.neuron_decomposition(acts).freqs == (4, 4, 3)


def test_decomposition_of_a_model_reads_its_neurons():
    model, ds = _setup()
    d = iv.neuron_decomposition(model, ds, neurons=[0, 1, 2], freqs=2)
    assert d.neurons == (0, 1, 2) and d.freqs == (2, 2, 2) and d.layer == 0
    assert bool(((d.total_explained >= 0) & (d.total_explained <= 1 + 1e-9)).all())


def test_replacing_the_mlp_by_every_frequency_changes_nothing():
    model, ds = _setup()
    r = iv.replace_mlp_with_key_frequencies(model, ds, range(1, P // 2 + 1))
    _close(r.after, r.before)


def test_a_task_without_a_basis_raises_with_the_reason():
    model, ds = _setup(op="x2_xy_y2")
    for site in SITES:
        with pytest.raises(ValueError, match="not of the form"):
            iv.remove_frequencies(model, ds, [1], site)


def test_bad_arguments_raise_one_clear_error():
    model, ds = _setup()
    with pytest.raises(ValueError, match=r"outside 1\.\.11"):
        iv.remove_frequencies(model, ds, [12])
    with pytest.raises(ValueError, match="site must be"):
        iv.remove_frequencies(model, ds, [1], "attention")
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        iv.ablate_neurons(model, ds, [0], layer=3)
    with pytest.raises(ValueError, match="no neuron of layer 0 in cluster 4"):
        iv.ablate_cluster(model, ds, 4, clusters=_planted_clusters(model.cfg.d_mlp))
    hooks = [("blocks.0.mlp.hook_post", lambda act, tokens: act), ("blocks.9.mlp.hook_post", None)]
    with pytest.raises(ValueError, match=r"no hook point 'blocks\.9\.mlp\.hook_post'"), iv.intervened(model, hooks):
        pass
    assert not has_hooks(model)  # the hooks attached before the error are gone too


def test_own_hooks_see_the_input_tokens():
    """``intervened`` hands each hook the batch's tokens: a hook that zeroes the neurons of the rows
    with a = 0 changes exactly those rows' logits."""
    model, ds = _setup()

    def zero_a0(act, tokens):
        return torch.where((tokens[:, 0] == 0)[:, None, None], torch.zeros_like(act), act)

    clean = model(ds.tokens)[:, -1]
    with iv.intervened(model, [("blocks.0.mlp.hook_post", zero_a0)]):
        hooked = model(ds.tokens)[:, -1]
    changed = (hooked - clean).abs().amax(-1) > 0
    assert torch.equal(changed, ds.a == 0)
    assert not has_hooks(model)


def test_removing_frequency_9_from_the_shipped_run():
    """The headline: frequency 9 out of W_E at epoch 10,000 of checkpoints/nanda-p113."""
    import grokinterp

    path = Path(__file__).resolve().parents[2] / "checkpoints" / "nanda-p113"
    run = grokinterp.load_run(path)
    r = iv.remove_frequencies(run.model(10_000), run.dataset, [9])
    assert r.before.test_loss == pytest.approx(0.0748, abs=2e-3)
    assert r.after.test_loss == pytest.approx(6.18, abs=0.05)
    assert r.change.test_loss == pytest.approx(r.after.test_loss - r.before.test_loss)
