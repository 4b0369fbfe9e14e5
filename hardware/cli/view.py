"""`aloha replay EPISODE` (send recorded actions to a robot, report success) and `aloha view EPISODE` (MP4 + plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from assets_store import StoreLayout
from assets_store.layout import episode_stem
from hardware.cli.common import StoreOption, console, fail, layout as store_layout

EpisodeArg = Annotated[
    str, typer.Argument(help="Episode directory, or SESSION/INDEX (e.g. demo/0) or SESSION/episode_000000.zarr.")
]


def resolve_episode(lay: StoreLayout, spec: str) -> Path:
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    candidate = lay.find_episode(spec)
    if candidate is not None:
        return candidate
    fail(f"no episode {spec!r} (looked for a directory, and under {lay.raw_dir})")


def _open(lay: StoreLayout, spec: str):
    from assets_store import EpisodeReader
    from assets_store.errors import EpisodeError

    try:
        return EpisodeReader(resolve_episode(lay, spec))
    except EpisodeError as exc:
        fail(str(exc))


def replay(
    episode: EpisodeArg,
    robot: Annotated[Optional[str], typer.Option("--robot", help="Robot to replay on (default: the recording's).")] = None,
    realtime: Annotated[
        Optional[bool], typer.Option("--realtime/--fast", help="Default: real time for hardware, fast in sim.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Replay an episode's commanded actions; exit status 1 if the robot can judge success and the task fails."""
    from hardware.replay import replay_episode
    from hardware.robots import RobotOptions, make_robot

    lay = store_layout(store)
    reader = _open(lay, episode)
    name = robot or reader.info.robot
    # Replaying needs no images: cameras off keeps a simulated replay cheap.
    options = RobotOptions(cameras=[], layout=lay)
    try:
        bot = make_robot(name, options)
    except ValueError as exc:
        fail(str(exc))
    with bot:
        try:
            result = replay_episode(reader, bot, realtime=realtime)
        except ValueError as exc:
            fail(str(exc))
    run = result.run
    console.print(f"replayed {reader.path.parent.name}/{reader.path.name} on {name} (seed {result.seed}): "
                  f"{run.steps} steps, {run.report.summary()}")
    console.print(f"  max |qpos replayed - recorded| = {result.max_qpos_deviation:.4f}")
    if run.success is None:
        console.print("  this robot cannot judge success")
        return
    was = "" if result.recorded_success is None else f" (recording: {'success' if result.recorded_success else 'failure'})"
    if run.success:
        console.print(f"[green]success[/]: max reward {run.max_reward:g}{was}")
    else:
        console.print(f"[red]failure[/]: max reward {run.max_reward:g}{was}")
        raise typer.Exit(1)


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
    reader = _open(lay, episode)
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
    app.command("replay")(replay)
    app.command("view")(view)
