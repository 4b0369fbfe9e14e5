"""Small matplotlib figures embedded in asset metadata as PNG data URIs (the Dagster UI renders the markdown).

Each figure is built by a `*_figure` function (what tests inspect) and turned into markdown by its wrapper. The UI
shows them in a column about 800 px wide, so figures are drawn for that width: few panels, legends beside the plot.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Sequence

import numpy as np

from hardware.rollout import RolloutReport
from hardware.visualize import new_figure

DPI = 80
WIDTH_IN = 10.0  # 800 px at DPI: the width of the UI's metadata column
LINE_STYLES = ("-", "--", ":", "-.")
COLORS = "tab10"  # 10 colours that are told apart at a glance; more would include look-alikes
SUCCESS_COLOR, FAILURE_COLOR = "tab:green", "tab:red"


def _markdown(fig, title: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{data})"


def joint_styles(n: int) -> list[tuple[tuple[float, float, float, float], str]]:
    """(colour, line style) for each of n joints, no two alike: as few line styles as the colour map needs, the joints
    split evenly between them, so a bimanual robot's 14 joints get 7 colours, solid for the left arm and dashed for
    the right, and the same joint of both arms shares a colour."""
    from matplotlib import colormaps

    cmap = colormaps[COLORS]
    styles = max(1, math.ceil(n / cmap.N))
    if styles > len(LINE_STYLES):
        raise ValueError(f"{n} joints: at most {cmap.N * len(LINE_STYLES)} can be drawn with distinct styles")
    per_style = max(1, math.ceil(n / styles))
    return [(cmap(j % per_style), LINE_STYLES[j // per_style]) for j in range(n)]


def joint_trajectories_figure(qpos: np.ndarray, action: np.ndarray | None, names: Sequence[str], fps: float,
                              title: str):
    """Follower positions (top) and commanded targets (bottom) against time, every joint in its own colour and line
    style, named in one legend beside the plots."""
    t = np.arange(len(qpos)) / (fps or 1.0)
    panels = [("follower position", qpos)] + ([("commanded target", action)] if action is not None else [])
    fig = new_figure(WIDTH_IN, 2.8 * len(panels) + 0.6, dpi=DPI)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    n = max(values.shape[1] for _, values in panels)
    styles = joint_styles(n)
    for ax, (label, values) in zip(axes, panels):
        for j in range(values.shape[1]):
            color, ls = styles[j]
            ax.plot(t, values[:, j], color=color, ls=ls, lw=1.2, label=names[j] if j < len(names) else f"joint {j}")
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)", fontsize=9)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                   ncol=1 if n <= 16 else 2)
    fig.suptitle(title, fontsize=11)
    return fig


def joint_trajectories(qpos: np.ndarray, action: np.ndarray | None, names: Sequence[str], fps: float, title: str) -> str:
    """The joints of one episode, as markdown."""
    return _markdown(joint_trajectories_figure(qpos, action, names, fps, title), title)


def loss_curve_figure(history: Sequence[dict], title: str = "training loss"):
    fig = new_figure(WIDTH_IN, 4.0, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    train = [(h["step"], h["loss"]) for h in history if h.get("loss") is not None]
    val = [(h["step"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train), lw=1.0, color="tab:blue", label="train")
    if val:
        ax.plot(*zip(*val), marker="o", lw=1.2, color="tab:orange", label="validation")
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel("loss", fontsize=9)
    if train and min(v for _, v in train) > 0:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    ax.set_title(title, fontsize=11)
    return fig


def loss_curve(history: Sequence[dict], title: str = "training loss") -> str:
    return _markdown(loss_curve_figure(history, title), title)


def success_per_seed_figure(report: RolloutReport):
    """Max reward per held-out seed: successes green, failures red and marked with an x at the axis (a failure that
    never scored has no bar to see), the success threshold dotted, the success rate in the title."""
    from matplotlib.patches import Patch

    seeds = [e.seed for e in report.episodes]
    rewards = [float(e.max_reward or 0.0) for e in report.episodes]
    failed = [i for i, e in enumerate(report.episodes) if not e.success]
    summary = report.summary
    fig = new_figure(min(WIDTH_IN, max(6.0, 0.16 * len(seeds) + 2.5)), 3.6, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(seeds))
    ax.bar(x, rewards, color=[SUCCESS_COLOR if e.success else FAILURE_COLOR for e in report.episodes])
    if failed:
        ax.scatter(x[failed], np.zeros(len(failed)), marker="x", s=30, color=FAILURE_COLOR, zorder=3, clip_on=False)
    if report.max_reward is not None:
        ax.axhline(report.max_reward, color="k", lw=0.8, ls=":")
    ax.set_xticks(x)
    ax.set_xticklabels([str(s) for s in seeds], rotation=90, fontsize=7)
    for tick, episode in zip(ax.get_xticklabels(), report.episodes):
        if not episode.success:
            tick.set_color(FAILURE_COLOR)
    ax.set_xlim(-0.7, len(seeds) - 0.3)
    ax.set_xlabel("held-out seed", fontsize=9)
    ax.set_ylabel("max reward", fontsize=9)
    ax.legend(handles=[Patch(color=SUCCESS_COLOR, label=f"success ({summary.successes})"),
                       Patch(color=FAILURE_COLOR, label=f"failure ({len(failed)})")],
              fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"closed-loop success {summary.rate or 0.0:.0%} over {summary.episodes} seeds", fontsize=11)
    return fig


def success_per_seed(report: RolloutReport) -> str:
    return _markdown(success_per_seed_figure(report), "success per seed")
