"""Pictures of robot data: MP4s of camera frames and plots of joint positions vs commanded actions.

The one place that writes an MP4 (`aloha view`, `aloha rollout --video`) and draws joints (`aloha view`, and the
pipeline's asset metadata through `pipeline.plots`). Figures are built without pyplot: no global figure state and no
interactive backend, so they are safe inside a Dagster run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from assets_store import EpisodeReader
from assets_store.hashing import atomic_path


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """H.264 MP4 of (H, W, 3) uint8 frames; odd sizes are padded by one black pixel (yuv420p needs even sizes).
    Written to a temporary sibling and renamed: a failed encode (a full disk) leaves no partial file."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(str(tmp), fps=fps, codec="libx264", quality=7, macro_block_size=2)
        try:
            for frame in frames:
                h, w = frame.shape[:2]
                if h % 2 or w % 2:
                    frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
                writer.append_data(frame)
        finally:
            writer.close()
    return path


def side_by_side(images: Sequence[np.ndarray]) -> np.ndarray:
    """One video frame from several cameras of the same height, left to right."""
    return np.concatenate(list(images), axis=1)


def write_video(reader: EpisodeReader, path: Path, cameras: list[str] | None = None) -> Path:
    """MP4 of an episode's cameras, side by side, at the episode's rate."""
    cameras = cameras or reader.camera_names
    if not cameras:
        raise ValueError(f"{reader.path}: the episode has no cameras")
    frames = (side_by_side([reader.frame(cam, t) for cam in cameras]) for t in range(len(reader)))
    return write_mp4(path, frames, reader.fps)


def new_figure(width: float, height: float, dpi: int = 80):
    """A headless matplotlib Figure (Agg), never an interactive backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)


def joints_figure(t: np.ndarray, qpos: np.ndarray, action: np.ndarray | None, names: Sequence[str], title: str,
                  dpi: int = 80):
    """One panel per joint: position (solid) and commanded target (dashed) against time in seconds."""
    n = qpos.shape[1]
    cols = 7 if n % 7 == 0 else min(n, 4)
    rows = int(np.ceil(n / cols))
    fig = new_figure(2.6 * cols, 2.2 * rows, dpi)
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False)
    for j in range(n):
        ax = axes[j // cols][j % cols]
        ax.plot(t, qpos[:, j], label="qpos", lw=1.2)
        if action is not None and j < action.shape[1]:
            ax.plot(t, action[:, j], label="action", lw=1.0, ls="--")
        ax.set_title(names[j] if j < len(names) else str(j), fontsize=8)
        ax.tick_params(labelsize=7)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("time (s)", fontsize=8)
    fig.tight_layout()
    return fig


def plot_joints(reader: EpisodeReader, path: Path) -> Path:
    """PNG of an episode's joints vs commanded actions; the title says whether the episode succeeded."""
    outcome = reader.attrs.get("outcome") or {}
    title = f"{reader.path.parent.name}/{reader.path.name}  success={outcome.get('success')}"
    fig = joints_figure(reader.timestamps - reader.timestamps[0], reader.qpos, reader.action, reader.info.joint_names,
                        title, dpi=90)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return path
