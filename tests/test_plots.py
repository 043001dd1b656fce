"""Plots a person reads: whole-number ticks on epoch and sample axes, and the template search's
downsampling plot as bars over its samples."""

from __future__ import annotations

import pytest

from rspnet_zoo.training.curves import epoch_axis, pyplot
from searchers.template import plots


def visible_ticks(ax) -> list[float]:
    ax.figure.canvas.draw()
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("epochs", [[1], [1, 2], [1, 2, 3], list(range(1, 41))])
def test_epoch_axes_tick_whole_epochs_only(epochs):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot(epochs, [0.5] * len(epochs))
    epoch_axis(ax, "loss")
    ticks = visible_ticks(ax)
    plt.close(fig)
    assert ticks and all(t == int(t) for t in ticks)
    if len(epochs) == 1:
        assert ticks == [1]


def test_downsampling_is_drawn_as_a_bar_per_window_of_samples(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "save_png", lambda fig, out: drawn.append(fig) or out)
    rows = [dict(index=i, downsampling=d) for i, d in enumerate([8, 16, 8, 32])]
    plots.plot_downsampling(rows, tmp_path / "downsampling.png")
    (ax,) = drawn[0].axes
    assert not ax.collections  # no stacked area between separate samples
    bars = ax.patches
    assert len(bars) == 3 * 4  # a bar per factor and window, one sample each
    heights: dict[float, float] = {}
    for bar in bars:
        heights[bar.get_x()] = heights.get(bar.get_x(), 0.0) + bar.get_height()
    assert sorted(heights.values()) == pytest.approx([1.0] * 4)
    assert all(t == int(t) for t in visible_ticks(ax))
    pyplot().close(drawn[0])
