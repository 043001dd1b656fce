"""PNG plots of a search: how the alphas and the path attentions moved, and the decoded cell."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rspnet_zoo.fsutil import atomic_path
from rspnet_zoo.spec import Cell


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    _pyplot().close(fig)
    return out


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 5)
    return math.ceil(n / cols), cols


def plot_alphas(history: Sequence[dict], primitives: Sequence[str], out: Path) -> Path:
    """One panel per edge: softmax(alpha) of every primitive over the epochs; the edge's normalised
    weight dashed, on the right-hand axis."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    edges = len(history[-1]["alphas"])
    rows, cols = _grid(edges)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True)
    for e in range(edges):
        ax = axes[e // cols][e % cols]
        for k, name in enumerate(primitives):
            ax.plot(epochs, [row["alphas"][e][k] for row in history], label=name, lw=1.2)
        edge_ax = ax.twinx()
        edge_ax.plot(epochs, [row["betas"][e] for row in history], "k--", lw=0.8)
        edge_ax.tick_params(labelsize=6)
        ax.set_title(f"edge {e}", fontsize=8)
        ax.tick_params(labelsize=7)
    for e in range(edges, rows * cols):
        axes[e // cols][e % cols].axis("off")
    axes[0][0].legend(fontsize=6, loc="upper left")
    fig.suptitle("cell search: softmax(alpha) per edge over epochs (dashed, right axis: edge weight)")
    fig.tight_layout()
    return _save(fig, out)


def plot_attention(history: Sequence[dict], out: Path) -> Path:
    """One panel per lattice node: the attention on each candidate path over the epochs."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    nodes = list(history[-1]["attention"])
    rows, cols = _grid(len(nodes))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True)
    for i, node in enumerate(nodes):
        ax = axes[i // cols][i % cols]
        for src in history[-1]["attention"][node]:
            ax.plot(epochs, [row["attention"][node][src] for row in history], label=src, lw=1.2)
        ax.set_ylim(0, 1.02)
        ax.set_title(node, fontsize=8)
        ax.legend(fontsize=6, loc="upper left")
        ax.tick_params(labelsize=7)
    for i in range(len(nodes), rows * cols):
        axes[i // cols][i % cols].axis("off")
    fig.suptitle("path search: attention per candidate path over epochs")
    fig.tight_layout()
    return _save(fig, out)


def plot_cell(cell: Cell, out: Path, title: str = "decoded cell") -> Path:
    """States left to right; one labelled arc per edge."""
    plt = _pyplot()
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
    return _save(fig, out)
