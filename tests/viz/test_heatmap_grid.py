"""ab_heatmap_grid builds its styled figure in one constructor call: it must equal what
style_figure makes of it (the per-call path it replaced), in both styles and both colour-bar modes."""

from __future__ import annotations

import copy

import numpy as np
import plotly.graph_objects as go
import pytest

from grokinterp.viz.heatmap_grid import ab_heatmap_grid
from grokinterp.viz.style import merge_layout, style_figure


@pytest.mark.parametrize("style", ["screen", "paper"])
@pytest.mark.parametrize("each", [False, True])
def test_grid_is_already_styled(style, each):
    rng = np.random.default_rng(0)
    p = 11
    heatmaps = [go.Heatmap(z=rng.random((p, p)), coloraxis="coloraxis") for _ in range(5)]
    coloraxis = dict(colorscale="Viridis", cmin=0, cmax=1, colorbar=dict(title="% of var."))
    fig = ab_heatmap_grid(
        heatmaps, [f"panel {i}" for i in range(5)], "A grid", p, 3,
        coloraxis=None if each else coloraxis, colorbar_each=each, style=style,
    )  # fmt: skip
    before = fig.to_plotly_json()
    restyled = style_figure(copy.deepcopy(fig), style)
    assert restyled.to_plotly_json() == before
    if not each:  # the colour bar's title survives the font merge (plotly's title shorthand)
        assert fig.layout.coloraxis.colorbar.title.text == "% of var."
    assert [a.text for a in fig.layout.annotations] == [f"panel {i}" for i in range(5)]


def test_merge_layout_merges_as_update_layout_does():
    base = {"xaxis": {"range": [0, 1], "title": "a"}, "annotations": [{"text": "x"}], "width": 300}
    upd = {"xaxis": {"title": {"font": {"size": 9}}}, "annotations": [{"text": "y"}]}
    merged = merge_layout(base, upd)
    expected = go.Figure(layout=base)
    expected.update_layout(upd)
    assert go.Figure(layout=merged).to_plotly_json() == expected.to_plotly_json()
    assert base["xaxis"]["title"] == "a"  # the inputs are not changed
