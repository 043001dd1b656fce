"""Per-epoch curves as PNGs, and the plot conventions every per-epoch plot of the project shares.

``train`` and ``search`` write ``curves.png`` into their run folders: the losses on the left, the
validation mIoU on the right, one point per epoch. Epoch axes are labelled and ticked at whole epochs;
lines that may lie on top of each other get a marker and a dash pattern of their own (``line_style``),
so each stays legible where colours coincide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rspnet_zoo.fsutil import atomic_path

CURVES_FILE = "curves.png"
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
_DASHES = ("-", "--", "-.", ":")


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, out: Path) -> Path:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    pyplot().close(fig)
    return out


def line_style(i: int) -> dict:
    """The i-th line's colour, marker and dash pattern: no two of the first 40 lines look alike."""
    return dict(
        color=f"C{i % 10}", marker=_MARKERS[i % len(_MARKERS)], linestyle=_DASHES[i % len(_DASHES)], markersize=3.5
    )


def whole_ticks(axis) -> None:
    """Ticks at whole numbers only, on a matplotlib ``axis``: also where it spans less than two of them (one
    epoch, one sample), where matplotlib's integer locator would fall back to fractions."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def epoch_axis(ax, label: str | None = None) -> None:
    """x: 'epoch', ticks at whole epochs only; y: ``label``."""
    ax.set_xlabel("epoch")
    whole_ticks(ax.xaxis)
    if label is not None:
        ax.set_ylabel(label)


def plot_curves(
    history: Sequence[Mapping], out: Path, title: str, losses: Mapping[str, str], scores: Mapping[str, str]
) -> Path:
    """``history``: one row per epoch with an ``epoch`` key; ``losses`` and ``scores`` map a legend label to
    the row key plotted (rows where it is missing or None are skipped: e.g. before the architecture moves)."""
    plt = pyplot()
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, series, label in ((loss_ax, losses, "loss"), (score_ax, scores, "mIoU")):
        for i, (name, key) in enumerate(series.items()):
            points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
            if points:
                ax.plot(*zip(*points), label=name, **line_style(i))
        epoch_axis(ax, label)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not measured yet", ha="center", va="center", transform=ax.transAxes)
    score_ax.set_ylim(0, 1)
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, out)
