"""`aloha view EPISODE`: an MP4 of the cameras and a PNG plot of the joints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from assets_store.layout import episode_stem
from hardware.cli.common import (
    EpisodeArg, StoreOption, console, fail, layout as store_layout, open_episode, parse_cameras,
)


def view(
    episode: EpisodeArg,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (default: <store>/views/<session>).")] = None,
    cameras: Annotated[Optional[list[str]], typer.Option("--cameras", help="Cameras in the video (default: all).")] = None,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write the MP4.")] = True,
    store: StoreOption = None,
) -> None:
    """Write an MP4 of the cameras and a PNG plot of joint positions vs commanded actions."""
    from hardware.visualize import plot_joints, write_video

    lay = store_layout(store)
    reader = open_episode(store, episode)
    stem = episode_stem(reader.path.name)
    out_dir = out or lay.views_dir(reader.path.parent.name)
    png = plot_joints(reader, out_dir / f"{stem}.png")
    console.print(f"plot:  {png}")
    if video and reader.camera_names:
        names = parse_cameras(cameras)
        unknown = [c for c in names or [] if c not in reader.camera_names]
        if unknown:
            fail(f"unknown camera(s) {unknown}; the episode has {reader.camera_names}")
        mp4 = write_video(reader, out_dir / f"{stem}.mp4", names)
        console.print(f"video: {mp4}")


def register(app: typer.Typer) -> None:
    app.command("view")(view)
