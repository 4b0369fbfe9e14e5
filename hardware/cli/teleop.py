"""`aloha teleop`: drive the followers from the leaders, no recording."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hardware.cli.common import (
    LeaderArmsConfigOption,
    LeaderArmsRobotOption,
    StoreOption,
    console,
    err_console,
    fail,
    layout as store_layout,
)


def teleop(
    robot: LeaderArmsRobotOption = "aloha",
    config: LeaderArmsConfigOption = None,
    duration: Annotated[float, typer.Option("--duration", help="Seconds to run; 0 = until Ctrl-C.")] = 0.0,
    gesture: Annotated[
        bool, typer.Option("--gesture/--no-gesture", help="Wait for both leader grippers to be squeezed to start.")
    ] = True,
    cameras: Annotated[bool, typer.Option("--cameras/--no-cameras", help="Also run the cameras.")] = False,
    store: StoreOption = None,
) -> None:
    """Leader arms drive the follower arms at the configured rate (50 Hz); nothing is recorded."""
    from hardware.aloha.teleop import GestureTimeout, LeaderArms
    from hardware.dynamixel import release_on_exit
    from hardware.interfaces import RobotError
    from hardware.loop import FixedRateLoop
    from hardware.registry import RobotOptions, leader_arm_robots, make_robot, make_teleoperator

    if robot not in leader_arm_robots():
        fail(f"aloha teleop drives leader/follower arms: --robot {' or '.join(leader_arm_robots())}, not {robot!r}")
    options = RobotOptions(cameras=None if cameras else [], config=config, layout=store_layout(store))
    try:
        bot = make_robot(robot, options)
        leaders = make_teleoperator(robot, bot, options)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    if isinstance(leaders, LeaderArms):
        leaders.gesture.enabled = gesture

    def release() -> None:
        leaders.disconnect()
        bot.disconnect()

    loop = FixedRateLoop(bot.fps)
    max_steps = int(round(duration * bot.fps)) if duration > 0 else None
    interrupted = False
    try:
        with release_on_exit(release):
            bot.connect()
            leaders.connect()
            if gesture:
                console.print("squeeze [bold]both leader grippers[/] to start ...")

            def step(index: int, t: float) -> bool:
                observation = bot.observe()
                bot.act(leaders.next_action(observation))
                return True

            try:  # Ctrl-C during the gesture wait or the ramp to the leaders' pose stops just as cleanly
                leaders.start_episode(bot)
                console.print(f"[green]teleoperating[/] {bot.name} at {bot.fps:g} Hz" +
                              (f" for {duration:g} s" if max_steps else " (Ctrl-C to stop)"))
                loop.run(step, max_steps=max_steps)
            except KeyboardInterrupt:
                interrupted = True
    except (RobotError, GestureTimeout) as exc:  # a servo, camera or base fault: everything was stopped safely
        err_console.print("[bold]robot stopped safely; torque released.[/]")
        fail(str(exc))
    report = loop.report()
    table = Table(title=f"teleop {bot.name}" + (" (interrupted)" if interrupted else ""))
    for col in ("steps", "rate Hz", "late", "jitter p99 ms", "work p50 ms", "work p99 ms"):
        table.add_column(col)
    table.add_row(str(report.steps), f"{report.achieved_hz:.1f}", str(report.late_steps),
                  f"{report.jitter_ms.p99:.2f}", f"{report.work_ms.p50:.2f}", f"{report.work_ms.p99:.2f}")
    console.print(table)
    console.print("torque released on every arm")


def register(app: typer.Typer) -> None:
    app.command("teleop")(teleop)
