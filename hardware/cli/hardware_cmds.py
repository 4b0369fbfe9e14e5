"""`aloha teleop` (drive the followers from the leaders, no recording) and `aloha calibrate --arm NAME`."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from hardware.cli.common import StoreOption, console, err_console, fail, layout as store_layout

RobotOption = Annotated[str, typer.Option("--robot", help="aloha (real hardware) | emulated (dry run, no hardware)")]
ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", help="Robot configuration file (default: hardware/aloha/configs/aloha.yaml).")
]


def teleop(
    robot: RobotOption = "aloha",
    config: ConfigOption = None,
    duration: Annotated[float, typer.Option("--duration", help="Seconds to run; 0 = until Ctrl-C.")] = 0.0,
    gesture: Annotated[
        bool, typer.Option("--gesture/--no-gesture", help="Wait for both leader grippers to be squeezed to start.")
    ] = True,
    cameras: Annotated[bool, typer.Option("--cameras/--no-cameras", help="Also run the cameras.")] = False,
    store: StoreOption = None,
) -> None:
    """Leader arms drive the follower arms at the configured rate (50 Hz); nothing is recorded."""
    from hardware.aloha.teleop import GestureTimeout, LeaderArms
    from hardware.cameras import CameraDisconnected
    from hardware.control_loop import FixedRateLoop
    from hardware.dynamixel import DynamixelError, release_on_exit
    from hardware.robots import RobotOptions, make_robot, make_teleoperator

    if robot not in ("aloha", "emulated"):
        fail(f"aloha teleop drives leader/follower arms: --robot aloha or emulated, not {robot!r}")
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
    except (DynamixelError, CameraDisconnected, GestureTimeout) as exc:
        err_console.print("[bold]followers stopped safely; torque released.[/]")
        fail(str(exc))
    report = loop.report()
    table = Table(title=f"teleop {bot.name}" + (" (interrupted)" if interrupted else ""))
    for col in ("steps", "rate Hz", "late", "jitter p99 ms", "work p50 ms", "work p99 ms"):
        table.add_column(col)
    table.add_row(str(report.steps), f"{report.achieved_hz:.1f}", str(report.late_steps),
                  f"{report.jitter_ms.p99:.2f}", f"{report.work_ms.p50:.2f}", f"{report.work_ms.p99:.2f}")
    console.print(table)
    console.print("torque released on every arm")


def calibrate(
    arm: Annotated[str, typer.Option("--arm", help="Arm name from the configuration, e.g. left_follower.")],
    robot: RobotOption = "aloha",
    config: ConfigOption = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", help="Calibration file (default: <store>/calibration/<arm>.json).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Record an arm's zero pose, joint ranges and gripper ends, interactively (torque stays off)."""
    from hardware.aloha import emulated as emu
    from hardware.aloha.rig import emulated_rig, real_rig
    from hardware.dynamixel import CalibrationError, DynamixelError, release_on_exit
    from hardware.dynamixel.calibrate import Calibrator

    lay = store_layout(store)
    try:
        rig = emulated_rig(config, lay) if robot == "emulated" else real_rig(config, lay)
        rig.config.arm(arm)
    except (ValueError, KeyError, OSError) as exc:
        fail(str(exc))
    path = output or rig.calibration_path(arm)
    rig.acquire()
    try:
        if rig.emulated:  # the stand-in operator moves the arm around while we calibrate it
            emu.sway_leader(rig.emulator, rig.specs[arm])
        cal = Calibrator(rig.make_arm(arm, calibrated=False))
        with release_on_exit(cal.arm.release):
            cal.start()
            console.input(f"[bold]1/3[/] put [bold]{arm}[/] in its zero pose, then press Enter ")
            cal.capture_zero()
            stop = threading.Event()

            def sweep() -> None:
                while not stop.is_set():
                    cal.sample()
                    time.sleep(0.02)

            sampler = threading.Thread(target=sweep, daemon=True)
            sampler.start()
            try:
                console.input("[bold]2/3[/] move every joint through its full range (gripper fully open too), "
                              "then press Enter ")
            finally:
                stop.set()
                sampler.join()
            console.input("[bold]3/3[/] close the gripper fully, then press Enter ")
            cal.capture_gripper_closed()
            calibration = cal.finish()
    except (CalibrationError, DynamixelError) as exc:
        fail(f"calibration of {arm!r} failed: {exc}")
    finally:
        rig.release()
    calibration.save(path)
    table = Table(title=f"calibration {arm} -> {path}")
    for col in ("joint", "servo IDs", "zero", "min", "max", "closed/open"):
        table.add_column(col)
    for name, j in calibration.joints.items():
        ends = f"{j.closed}/{j.open}" if j.is_gripper else ""
        table.add_row(name, ",".join(map(str, j.ids)), str(j.zero), str(j.min), str(j.max), ends)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("teleop")(teleop)
    app.command("calibrate")(calibrate)
