"""Named training recipes from the grokking literature.

- ``nanda-p113``: the TransformerLens Grokking demo recipe (Nanda et al. 2023): 1 layer, 4 heads of
  32, d_mlp 512, ReLU, no LayerNorm, all biases frozen, model seed 999, data seed 598, 30% train,
  full-batch AdamW lr 1e-3, wd 1.0, betas (0.9, 0.98), 25,000 epochs, float64 loss. Pass
  ``warmup_steps=10`` for the paper's variant.
- ``power-p97``: a 2-layer transformer in the style of Power et al. 2022: tokens ``a op b =``,
  d_model 128, 4 heads, d_mlp 512, pre-LayerNorm, GELU, p=97, 50% train, minibatch 512, AdamW lr 1e-3,
  wd 1.0, 10-step warm-up (dropout and a cosine cool-down are options).
- ``nanda-p113-fast``: nanda-p113's model and task with a recipe chosen by measurement to grok in
  seconds and clean up in a few more (lr 5e-3, wd 3.0, 10-step warm-up, stops 100 epochs after test
  accuracy first reaches 0.99; see benchmarks/bench_fast.py).
- ``mlp-p97``: the MLP of a published grokking study: Embedding(p, 128) for a and b, concatenated,
  Linear 256-256 ReLU, 256-256 ReLU, 256-p; AdamW lr 1e-3, wd 1e-2, batch 256 sampled with
  replacement.
"""

from __future__ import annotations

from grokinterp.config import RunConfig

# One line per topic: the task, the model, the optimiser, the schedule (evaluation, checkpoints, stopping).
PRESETS: dict[str, RunConfig] = {
    "nanda-p113": RunConfig(preset="nanda-p113"),
    "power-p97": RunConfig(
        preset="power-p97",
        p=97, layout="a op b =", train_frac=0.5, data_seed=0,
        n_layers=2, d_model=128, n_heads=4, d_head=32, d_mlp=512, act_fn="gelu", normalization_type="LN",
        freeze_biases=False, model_seed=0,
        batch_size=512, warmup_steps=10,
        epochs=3_000, eval_every=10, checkpoint_every=100,
    ),
    "nanda-p113-fast": RunConfig(
        preset="nanda-p113-fast",
        # Chosen by measurement on tuning seeds 0-2 (benchmarks/bench_fast.py evaluates seeds 10-14):
        # lr 3e-3/wd 3 took 450-570 epochs to test acc 0.99, lr 5e-3/wd 3 with a 10-step warm-up
        # 270-470; wd 5 or lr 7e-3 are faster but test accuracy then oscillates around 0.9.
        lr=5e-3, wd=3.0, warmup_steps=10,
        epochs=3_000, eval_every=10, checkpoint_every=50,
        # Stop 100 epochs after test acc first reaches 0.99: at that moment only 30-50% of neurons
        # are explained by one frequency; 100 epochs of cleanup bring it to 70-80% (seeds 0-2).
        stop_acc=0.99, stop_patience=11,
    ),
    "mlp-p97": RunConfig(
        preset="mlp-p97",
        p=97, train_frac=0.4, data_seed=0,
        arch="mlp", n_layers=2, d_model=128, d_mlp=256, freeze_biases=False, model_seed=0,
        lr=1e-3, wd=1e-2, beta2=0.999, batch_size=256, sample_with_replacement=True,
        epochs=50_000, eval_every=10, checkpoint_every=1_000, stop_acc=0.99, stop_patience=1,
    ),
}  # fmt: skip


def get_preset(name: str) -> RunConfig:
    """The ``RunConfig`` of the preset ``name`` (``ValueError`` listing the presets if there is none)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
