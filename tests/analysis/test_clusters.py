"""Key-frequency rules (grokinterp.analysis.clusters): the architecture's default rule."""

from __future__ import annotations

import pytest

from grokinterp.analysis.clusters import AUTO_RULE_REASONS, auto_key_rule
from grokinterp.analysis.measures import select_key_frequencies
from grokinterp.config import RunConfig
from grokinterp.models import build_model
from grokinterp.tasks import make_dataset


@pytest.mark.parametrize(
    ("arch", "n_layers", "rule"),
    [
        ("transformer", 1, "clustered"),
        ("transformer", 2, "logits"),
        ("transformer", 3, "logits"),
        ("mlp", 2, "clustered"),
    ],
)
def test_auto_key_rule_by_architecture(arch, n_layers, rule):
    used, why = auto_key_rule(arch, n_layers)
    assert used == rule and why
    if arch == "transformer" and n_layers > 1:
        assert f"{n_layers} layers" in why
    assert set(AUTO_RULE_REASONS) == {"transformer-1", "transformer-n", "mlp"}


@pytest.mark.parametrize(
    ("kw", "rule"),
    [({"n_layers": 1}, "clustered"), ({"n_layers": 2}, "logits"), ({"arch": "mlp", "n_layers": 2}, "clustered")],
)
def test_select_auto_follows_the_architecture(kw, rule):
    """``select_key_frequencies`` (default rule "auto") gives the keys of the model's architecture's
    rule, read from the model itself (attention or not, number of MLP layers). The logits rule's
    keys on planted logits are checked in test_measures.test_logits_rule_recovers_planted_keys."""
    cfg = RunConfig(p=23, d_model=64, n_heads=4, d_head=16, d_mlp=64, freeze_biases=False, device="cpu", **kw)
    model = build_model(cfg).eval()
    ds = make_dataset(cfg.p, "add", cfg.layout, 0.5, 0)
    chosen, by_rule, _ = select_key_frequencies(model, ds)
    assert chosen.rule == rule and chosen == by_rule[rule]
