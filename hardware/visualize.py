"""Look at an episode: an MP4 of its cameras (side by side) and a PNG of joint positions vs commanded actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assets_store import EpisodeReader


def write_video(reader: EpisodeReader, path: Path, cameras: list[str] | None = None) -> Path:
    import imageio.v2 as imageio

    cameras = cameras or reader.camera_names
    if not cameras:
        raise ValueError(f"{reader.path}: the episode has no cameras")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(str(path), fps=reader.fps, codec="libx264", quality=7, macro_block_size=2)
    try:
        for t in range(len(reader)):
            frame = np.concatenate([reader.frame(cam, t) for cam in cameras], axis=1)
            h, w = frame.shape[:2]
            if h % 2 or w % 2:  # yuv420p needs even sizes
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
            writer.append_data(frame)
    finally:
        writer.close()
    return path


def plot_joints(reader: EpisodeReader, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = reader.timestamps - reader.timestamps[0]
    names = reader.info.joint_names
    actions = reader.action
    cols = 7 if len(names) % 7 == 0 else min(len(names), 4)
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), sharex=True, squeeze=False)
    for j, name in enumerate(names):
        ax = axes[j // cols][j % cols]
        ax.plot(t, reader.qpos[:, j], label="qpos", lw=1.2)
        if j < actions.shape[1]:
            ax.plot(t, actions[:, j], label="action", lw=1.0, ls="--")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    outcome = reader.attrs.get("outcome") or {}
    fig.suptitle(f"{reader.path.parent.name}/{reader.path.name}  success={outcome.get('success')}", fontsize=10)
    fig.supxlabel("time (s)", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
