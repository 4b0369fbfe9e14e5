"""`aloha view EPISODE`: an MP4 of the cameras and a PNG plot of the joints; how verbs name an episode."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from assets_store import StoreLayout
from hardware.cli.common import StoreOption, console, fail, layout as store_layout

EpisodeArg = Annotated[
    str, typer.Argument(help="Episode directory, or SESSION/INDEX (e.g. demo/0) or SESSION/episode_000000.zarr.")
]


def resolve_episode(lay: StoreLayout, spec: str) -> Path:
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    m = re.fullmatch(r"([^/]+)/(?:episode_)?(\d+)(?:\.zarr)?/?", spec)
    if m:
        candidate = lay.episode_path(m.group(1), int(m.group(2)))
        if candidate.is_dir():
            return candidate
    fail(f"no episode {spec!r} (looked for a directory, and under {lay.raw_dir})")


def open_episode(lay: StoreLayout, spec: str):
    from assets_store import EpisodeReader
    from assets_store.errors import EpisodeError

    try:
        return EpisodeReader(resolve_episode(lay, spec))
    except EpisodeError as exc:
        fail(str(exc))


def view(
    episode: EpisodeArg,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output directory (default: <store>/views/<session>).")] = None,
    cameras: Annotated[Optional[list[str]], typer.Option("--cameras", help="Cameras in the video (default: all).")] = None,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write the MP4.")] = True,
    store: StoreOption = None,
) -> None:
    """Write an MP4 of the cameras and a PNG plot of joint positions vs commanded actions."""
    from hardware.cli.common import parse_cameras
    from hardware.visualize import plot_joints, write_video

    lay = store_layout(store)
    reader = open_episode(lay, episode)
    stem = reader.path.name.removesuffix(".zarr")
    out_dir = out or (lay.root / "views" / reader.path.parent.name)
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
