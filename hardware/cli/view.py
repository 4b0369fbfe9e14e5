"""`aloha view EPISODE`: an MP4 of the cameras and a PNG plot of the joints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from assets_store.errors import StoreError
from assets_store.layout import episode_stem
from hardware.cli.common import (
    EpisodeArg, StoreOption, check_outputs, console, fail, layout as store_layout, open_episode, os_error_text,
    parse_cameras,
)


def view(
    episode: EpisodeArg,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (default: <store>/views/<session>).")] = None,
    cameras: Annotated[Optional[list[str]], typer.Option("--cameras", help="Cameras in the video (default: all).")] = None,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write the MP4.")] = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing files of the same names in --out.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Write an MP4 of the cameras and a PNG plot of joint positions vs commanded actions."""
    from hardware.visualize import plot_joints, write_video

    lay = store_layout(store)
    reader = open_episode(store, episode)
    stem = episode_stem(reader.path.name)
    names = parse_cameras(cameras)
    unknown = [c for c in names or [] if c not in reader.camera_names]
    if unknown:
        fail(f"unknown camera(s) {unknown}; the episode has {reader.camera_names}")
    out_dir = out or lay.views_dir(reader.path.parent.name)
    png, mp4 = out_dir / f"{stem}.png", out_dir / f"{stem}.mp4"
    with_video = video and bool(reader.camera_names)
    # The store's views are regenerated freely; a directory of the user's keeps its files unless told otherwise.
    check_outputs([png, mp4] if with_video else [png], overwrite=overwrite or out is None)
    try:
        console.print(f"plot:  {plot_joints(reader, png)}")
        if with_video:
            console.print(f"video: {write_video(reader, mp4, names)}")
    except OSError as exc:  # each file is written atomically: a failed one leaves nothing behind
        fail(f"could not write to {out_dir}: {os_error_text(exc)}")
    except StoreError as exc:  # a damaged episode (e.g. a frame that does not decode): what is wrong, and where
        fail(str(exc))


def register(app: typer.Typer) -> None:
    app.command("view")(view)
