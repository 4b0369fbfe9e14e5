"""Small matplotlib figures embedded in asset metadata as PNG data URIs (the Dagster UI renders the markdown)."""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np


def _figure(width: float = 7.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display: never pick an interactive backend inside a run
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=80)


def _markdown(fig, title: str) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{data})"


def joint_trajectories(qpos: np.ndarray, action: np.ndarray | None, names: Sequence[str], fps: float, title: str) -> str:
    fig = _figure(8.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    t = np.arange(len(qpos)) / (fps or 1.0)
    colors = [f"C{i % 10}" for i in range(qpos.shape[1])]
    for j in range(qpos.shape[1]):
        ax.plot(t, qpos[:, j], color=colors[j], lw=1.0, label=names[j] if j < len(names) else str(j))
        if action is not None and j < action.shape[1]:
            ax.plot(t, action[:, j], color=colors[j], lw=0.8, ls="--")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("joint (solid) / command (dashed)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _markdown(fig, title)


def loss_curve(history: Sequence[dict], title: str = "training loss") -> str:
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    train = [(h["step"], h["loss"]) for h in history if h.get("loss") is not None]
    val = [(h["step"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train), lw=1.0, label="train")
    if val:
        ax.plot(*zip(*val), marker="o", lw=1.0, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if train and min(v for _, v in train) > 0:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return _markdown(fig, title)


def success_per_seed(seeds: Sequence[int], rewards: Sequence[float], successes: Sequence[bool], max_reward: float) -> str:
    fig = _figure(max(4.0, min(12.0, 0.18 * len(seeds) + 2)), 2.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(seeds))
    ax.bar(x, rewards, color=["C2" if s else "C3" for s in successes])
    ax.axhline(max_reward, color="k", lw=0.6, ls=":")
    ax.set_xticks(x)
    ax.set_xticklabels([str(s) for s in seeds], rotation=90, fontsize=6)
    ax.set_xlabel("held-out seed")
    ax.set_ylabel("max reward (green = success)")
    rate = float(np.mean(successes)) if len(successes) else 0.0
    ax.set_title(f"closed-loop success {rate:.0%} over {len(seeds)} seeds", fontsize=9)
    return _markdown(fig, "success per seed")
