"""`aloha replay EPISODE`: send a recorded episode's actions to a robot and report success."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hardware.cli.common import EpisodeArg, StoreOption, console, fail, layout as store_layout, open_episode


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
    from hardware.registry import RobotOptions, make_robot

    lay = store_layout(store)
    reader = open_episode(store, episode)
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


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
