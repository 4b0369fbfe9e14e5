"""Small matplotlib figures embedded in asset metadata as PNG data URIs (the Dagster UI renders the markdown)."""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np

from hardware.rollout import RolloutReport
from hardware.visualize import joints_figure, new_figure


def _figure(width: float = 7.0, height: float = 3.2):
    return new_figure(width, height, dpi=80)


def _markdown(fig, title: str) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{data})"


def joint_trajectories(qpos: np.ndarray, action: np.ndarray | None, names: Sequence[str], fps: float, title: str) -> str:
    """The joint plot of `aloha view` (one panel per joint, command dashed), as markdown."""
    t = np.arange(len(qpos)) / (fps or 1.0)
    return _markdown(joints_figure(t, qpos, action, names, title), title)


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


def success_per_seed(report: RolloutReport) -> str:
    """Max reward per held-out seed (green = success), the success threshold dotted, the success rate in the title."""
    seeds = [e.seed for e in report.episodes]
    rewards = [float(e.max_reward or 0.0) for e in report.episodes]
    summary = report.summary
    fig = _figure(max(4.0, min(12.0, 0.18 * len(seeds) + 2)), 2.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(seeds))
    ax.bar(x, rewards, color=["C2" if e.success else "C3" for e in report.episodes])
    if report.max_reward is not None:
        ax.axhline(report.max_reward, color="k", lw=0.6, ls=":")
    ax.set_xticks(x)
    ax.set_xticklabels([str(s) for s in seeds], rotation=90, fontsize=6)
    ax.set_xlabel("held-out seed")
    ax.set_ylabel("max reward (green = success)")
    ax.set_title(f"closed-loop success {summary.rate or 0.0:.0%} over {summary.episodes} seeds", fontsize=9)
    return _markdown(fig, "success per seed")
