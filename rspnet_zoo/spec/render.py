"""A picture of the network graph: nodes placed by order and resolution, one line per path."""

from __future__ import annotations

import math
from pathlib import Path

from rspnet_zoo.errors import ZooError
from rspnet_zoo.fsutil import atomic_path, writable_output
from rspnet_zoo.spec.models import CellStep, Genotype


def check_picture_path(out: Path) -> Path:
    if out.suffix.lower() not in (".svg", ".png"):
        raise ZooError(f"{out}: the picture is written as .svg or .png")
    return writable_output(out)


def render_graph(genotype: Genotype, out: Path) -> Path:
    check_picture_path(out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = genotype.network.nodes
    pos = {"input": (0.0, 0.0)}
    for i, n in enumerate(nodes):
        pos[n.id] = (float(i + 1), math.log2(n.reduction))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(nodes)), 4.0))
    for n in nodes:
        for s, slot in enumerate(n.inputs):
            for p in slot.paths:
                (x0, y0), (x1, y1) = pos[p.node], pos[n.id]
                ax.annotate(
                    "",
                    xy=(x1, y1),
                    xytext=(x0, y0),
                    arrowprops=dict(
                        arrowstyle="->",
                        lw=0.6 + 2.0 * (p.weight or 0.3),
                        alpha=0.6,
                        color="tab:blue" if s == len(n.inputs) - 1 else "tab:gray",
                    ),
                )
    for node_id, (x, y) in pos.items():
        ax.scatter([x], [y], s=120, zorder=3, color="tab:orange" if node_id != "input" else "black")
        ax.annotate(node_id, (x, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    levels = sorted({int(y) for _, y in pos.values()})
    ax.set_yticks(levels, [f"1/{2**lv}" for lv in levels])
    ax.set_xticks([])
    ax.invert_yaxis()
    ax.set_title(f"{genotype.name} {genotype.version}")
    ax.set_ylabel("resolution")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix[1:].lower())
    plt.close(fig)
    return out


def step_text(step: CellStep) -> str:
    """A cell step as 'op(s<input>) + ...', how summaries and logs write it."""
    return " + ".join(f"{e.op}(s{e.input})" for e in step.edges)
