import math

import pytest
import torch
from torch import nn

from grokinterp.losses import cross_entropy, stablemax_log_probs
from grokinterp.training.methods import GrokfastEMA, GrokfastMA, orthogonalize_gradients


def _feed(filt, grads):
    """Run a filter over a sequence of gradients of one parameter; return the filtered ones."""
    p = nn.Parameter(torch.zeros(2))
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float32)
        filt([("w", p)])
        out.append(p.grad.tolist())
    return out


def test_grokfast_ema_on_known_sequence():
    alpha, lamb = 0.5, 2.0
    out = _feed(GrokfastEMA(alpha, lamb), [[1.0, 0.0], [3.0, 2.0], [-1.0, 0.0]])
    # h1 = g1 = [1, 0]; h2 = .5 h1 + .5 g2 = [2, 1]; h3 = .5 h2 + .5 g3 = [0.5, 0.5]
    assert out[0] == pytest.approx([1 + 2 * 1, 0])
    assert out[1] == pytest.approx([3 + 2 * 2, 2 + 2 * 1])
    assert out[2] == pytest.approx([-1 + 2 * 0.5, 0 + 2 * 0.5])


def test_grokfast_ma_waits_for_a_full_window():
    out = _feed(GrokfastMA(window=2, lamb=1.0), [[1.0, 1.0], [3.0, -1.0], [5.0, 1.0]])
    assert out[0] == [1.0, 1.0]  # window not full: unchanged
    assert out[1] == pytest.approx([3 + 2, -1 + 0])  # mean of [1,1],[3,-1] = [2, 0]
    assert out[2] == pytest.approx([5 + 4, 1 + 0])  # mean of [3,-1],[5,1] = [4, 0]


def test_grokfast_state_round_trip():
    a = GrokfastEMA(0.9, 1.0)
    _feed(a, [[1.0, 2.0], [0.0, 1.0]])
    b = GrokfastEMA(0.9, 1.0)
    b.load_state_tensors(a.state_tensors())
    assert _feed(a, [[4.0, 4.0]]) == _feed(b, [[4.0, 4.0]])


def test_stablemax_matches_its_definition():
    x = torch.tensor([[2.0, 0.0, -3.0]], dtype=torch.float64)
    s = torch.tensor([3.0, 1.0, 0.25], dtype=torch.float64)  # x+1 for x>=0, 1/(1-x) for x<0
    assert stablemax_log_probs(x).exp()[0].tolist() == pytest.approx((s / s.sum()).tolist())
    loss = cross_entropy(x, torch.tensor([0]), kind="stablemax")
    assert loss.item() == pytest.approx(-math.log(3 / 4.25))


def test_orthograd_removes_the_radial_component_and_keeps_the_norm():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    w.grad = torch.tensor([1.0, 1.0])
    orthogonalize_gradients([w])
    assert torch.dot(w.grad, w.detach()).item() == pytest.approx(0.0, abs=1e-6)
    assert w.grad.norm().item() == pytest.approx(math.sqrt(2))
    # direction: g - (g.w / w.w) w = [1,1] - 7/25 [3,4] = [4/25, -3/25]
    assert (w.grad / w.grad.norm()).tolist() == pytest.approx([0.8, -0.6])
