"""`aloha calibrate --arm NAME`: record an arm's zero pose, joint ranges and gripper ends, interactively."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from hardware.cli.common import (
    LeaderArmsConfigOption,
    LeaderArmsRobotOption,
    StoreOption,
    check_outputs,
    console,
    fail,
    layout as store_layout,
    os_error_text,
)


def calibrate(
    arm: Annotated[str, typer.Option("--arm", help="Arm name from the configuration, e.g. left_follower.")],
    robot: LeaderArmsRobotOption = "aloha",
    config: LeaderArmsConfigOption = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", help="Calibration file (default: <store>/calibration/<arm>.json).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Record an arm's zero pose, joint ranges and gripper ends, interactively (torque stays off). An earlier
    calibration file is kept beside the new one as <file>.<time>.bak."""
    from hardware.aloha import emulated as emu
    from hardware.dynamixel import CalibrationError, DynamixelError, release_on_exit
    from hardware.dynamixel.calibration_data import keep_previous
    from hardware.dynamixel.calibration_procedure import Calibrator
    from hardware.registry import RobotOptions, leader_arm_robots, make_robot

    if robot not in leader_arm_robots():
        fail(f"aloha calibrate calibrates Dynamixel arms: --robot {' or '.join(leader_arm_robots())}, not {robot!r}")
    lay = store_layout(store)
    try:
        # the robot's own rig, as `aloha teleop --robot` builds it: its configuration, emulated or real
        rig = make_robot(robot, RobotOptions(cameras=[], config=config, layout=lay)).rig
        rig.config.arm(arm)
    except (ValueError, KeyError, OSError) as exc:
        fail(str(exc))
    path = output or rig.calibration_path(arm)
    check_outputs([path], overwrite=True)  # before the procedure: a directory there, or an unwritable one, fails now
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
    try:
        previous = keep_previous(path)
        calibration.save(path)
    except OSError as exc:  # the procedure's result is not lost: it goes to stdout for the user to save
        console.print(calibration.to_json(), markup=False, highlight=False)
        fail(f"could not save the calibration of {arm!r} to {path}: {os_error_text(exc)} (printed above instead)")
    if previous is not None:
        console.print(f"the previous calibration is kept as {previous}")
    table = Table(title=f"calibration {arm} -> {path}")
    for col in ("joint", "servo IDs", "zero", "min", "max", "closed/open"):
        table.add_column(col)
    for name, j in calibration.joints.items():
        ends = f"{j.closed}/{j.open}" if j.is_gripper else ""
        table.add_row(name, ",".join(map(str, j.ids)), str(j.zero), str(j.min), str(j.max), ends)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
