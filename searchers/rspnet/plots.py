"""PNG plots of a search: how the alphas and the path attentions moved, and the decoded cell (conventions:
``rspnet_zoo.training.curves``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rspnet_zoo.spec.models import Cell
from rspnet_zoo.training.curves import epoch_axis, line_style, plot_curves, pyplot, save_png


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 5)
    return math.ceil(n / cols), cols


def _panels(n: int):
    """A grid of n panels sharing the epoch axis, the spare ones hidden."""
    plt = pyplot()
    rows, cols = _grid(n)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.8), squeeze=False, sharex=True)
    panels = [axes[i // cols][i % cols] for i in range(rows * cols)]
    for ax in panels[n:]:
        ax.axis("off")
    for i, ax in enumerate(panels[:n]):
        ax.tick_params(labelsize=7)
        epoch_axis(ax)
        if i + cols < n:  # an x label only where no panel sits below
            ax.set_xlabel("")
    return fig, panels[:n]


def plot_alphas(history: Sequence[dict], primitives: Sequence[str], out: Path) -> Path:
    """One panel per edge: softmax(alpha) of every primitive over the epochs, each primitive with its own
    colour, marker and dash; the edge's normalised weight (beta) in black on the right-hand axis."""
    epochs = [row["epoch"] for row in history]
    edges = len(history[-1]["alphas"])
    fig, panels = _panels(edges)
    for e, ax in enumerate(panels):
        for k, name in enumerate(primitives):
            ax.plot(epochs, [row["alphas"][e][k] for row in history], label=name, **line_style(k))
        ax.set_ylabel("softmax(alpha)", fontsize=7)
        edge_ax = ax.twinx()
        edge_ax.plot(epochs, [row["betas"][e] for row in history], color="k", lw=1.6, label="edge weight (right)")
        edge_ax.set_ylabel("edge weight", fontsize=7)
        edge_ax.tick_params(labelsize=6)
        ax.set_title(f"edge {e}", fontsize=8)
    handles = panels[0].get_lines() + edge_ax.get_lines()
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=min(5, len(handles)), fontsize=7)
    fig.suptitle("cell search: softmax(alpha) per primitive and edge weight, per edge")
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(handles) // 5), 1, 1))
    return save_png(fig, out)


def plot_attention(history: Sequence[dict], out: Path) -> Path:
    """One panel per lattice node: the attention on each candidate path over the epochs, each path with
    its own colour, marker and dash, labelled by the node it comes from."""
    epochs = [row["epoch"] for row in history]
    nodes = list(history[-1]["attention"])
    fig, panels = _panels(len(nodes))
    for node, ax in zip(nodes, panels):
        for k, src in enumerate(history[-1]["attention"][node]):
            ax.plot(epochs, [row["attention"][node][src] for row in history], label=f"from {src}", **line_style(k))
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("attention", fontsize=7)
        ax.set_title(f"node {node}", fontsize=8)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle("path search: attention on each candidate path, per node")
    fig.tight_layout()
    return save_png(fig, out)


def plot_stage_curves(history: Sequence[dict], stage: str, run_dir: Path) -> Path:
    """``curves-<stage>.png``: the weight loss on one half, the architecture loss and mIoU on the held-out
    half (the search's validation data), per epoch; the latter two from the epoch the architecture moves."""
    return plot_curves(
        history,
        run_dir / f"curves-{stage}.png",
        f"{stage} search",
        {"weights (train half)": "train_loss", "architecture (held-out half)": "arch_loss"},
        {"held-out half": "arch_miou"},
    )


def plot_cell(cell: Cell, out: Path, title: str = "decoded cell") -> Path:
    """States left to right; one labelled arc per edge."""
    plt = pyplot()
    n = cell.num_inputs + len(cell.steps)
    fig, ax = plt.subplots(figsize=(1.9 * n + 1, 3.2))
    xs = list(range(n))
    for j, step in enumerate(cell.steps):
        target = cell.num_inputs + j
        for edge in step.edges:
            bend = 0.35 if (target - edge.input) % 2 else -0.35
            ax.annotate(
                "",
                xy=(target, 0),
                xytext=(edge.input, 0),
                arrowprops=dict(arrowstyle="->", lw=1.2, connectionstyle=f"arc3,rad={bend}"),
            )
            ax.text(
                (target + edge.input) / 2,
                -bend * (target - edge.input) / 2 * 0.9,
                edge.op,
                ha="center",
                va="center",
                fontsize=7,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", lw=0.3),
            )
    labels = [f"in{i}" for i in range(cell.num_inputs)] + [str(cell.num_inputs + j) for j in range(len(cell.steps))]
    for x, label in zip(xs, labels):
        ax.scatter([x], [0], s=500, zorder=3, color="tab:orange" if x >= cell.num_inputs else "tab:gray")
        ax.text(x, 0, label, ha="center", va="center", fontsize=8, zorder=4)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(-1.2, 1.2)
    ax.axis("off")
    ax.set_title(f"{title}: output = concat of states {list(cell.concat)}", fontsize=9)
    fig.tight_layout()
    return save_png(fig, out)
