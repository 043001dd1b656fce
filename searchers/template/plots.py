"""PNG plots and the best-architectures table of a template search, from its sample rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rspnet_zoo.fsutil import atomic_write_text
from rspnet_zoo.training.curves import pyplot, save_png, whole_ticks


def plot_rewards(rows: Sequence[dict], out: Path) -> Path:
    """Every sample's reward against its index, and the median of each PPO batch (paper, Fig. 5)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter([r["index"] for r in rows], [r["reward"] for r in rows], s=10, alpha=0.6, label="sample")
    batches = sorted({r["batch"] for r in rows})
    medians = []
    for b in batches:
        rewards = sorted(r["reward"] for r in rows if r["batch"] == b)
        medians.append(rewards[len(rewards) // 2])
    centres = [sum(r["index"] for r in rows if r["batch"] == b) / sum(r["batch"] == b for r in rows) for b in batches]
    ax.plot(centres, medians, color="C3", label="batch median")
    ax.set_xlabel("sample")
    whole_ticks(ax.xaxis)
    ax.set_ylabel("reward")
    ax.set_title("reward distribution over the search")
    ax.legend()
    return save_png(fig, out)


def plot_downsampling(rows: Sequence[dict], out: Path, windows: int = 10) -> Path:
    """The proportion of each downsampling factor (2 ** stride-2 blocks) over time (paper, Fig. 6): one
    stacked bar per window of samples, so that a few samples show as the separate counts they are."""
    plt = pyplot()
    factors = sorted({r["downsampling"] for r in rows})
    size = max(1, -(-len(rows) // windows))
    chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
    x = [(c[0]["index"] + c[-1]["index"]) / 2 for c in chunks]
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(chunks)
    for i, f in enumerate(factors):
        share = [sum(r["downsampling"] == f for r in c) / len(c) for c in chunks]
        ax.bar(x, share, width=0.8 * size, bottom=bottom, label=f"x{f}", color=f"C{i % 10}")
        bottom = [b + s for b, s in zip(bottom, share)]
    ax.set_xlabel("sample" if size == 1 else f"sample (windows of {size})")
    whole_ticks(ax.xaxis)
    ax.set_ylabel("proportion")
    ax.set_ylim(0, 1)
    ax.set_title("downsampling factors over the search")
    ax.legend(loc="upper left", fontsize="small")
    return save_png(fig, out)


def best_table(rows: Sequence[dict], out: Path, top: int = 10) -> Path:
    """The best distinct architectures so far, as a markdown table."""
    best: dict[str, dict] = {}
    for r in rows:
        if r["config"] not in best or r["reward"] > best[r["config"]]["reward"]:
            best[r["config"]] = r
    ranked = sorted(best.values(), key=lambda r: (-r["reward"], r["index"]))[:top]
    has_latency = any("latency_ms" in r for r in ranked)
    head = "| rank | reward | mIoU | mean acc | fw IoU | parameters | MFLOPs |" + (
        " latency ms |" if has_latency else ""
    )
    lines = [head + " down | first seen | nas-segm config |", "|" + "---|" * (head.count("|") + 2)]
    for i, r in enumerate(ranked, 1):
        latency = f" {r['latency_ms']:.2f} |" if has_latency else ""
        lines.append(
            f"| {i} | {r['reward']:.4f} | {r['miou']:.4f} | {r['mean_acc']:.4f} | {r['fw_iou']:.4f} | "
            f"{r['parameters']:,} | {r['flops'] / 1e6:.1f} |{latency} x{r['downsampling']} | {r['index']} | "
            f"`{r['config']}` |"
        )
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out
