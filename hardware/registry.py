"""`--robot NAME` -> a Robot and its Teleoperator. One table of every robot the CLI can drive.

Each factory imports its driver when called, so `aloha record --robot aloha` never imports MuJoCo and the simulator
never imports the serial stack. The simulated robots are the sim tasks (`hardware.sim.tasks.TASKS`), one per task:
`sim-transfer-cube`, `sim-insertion` and `sim-mobile-transfer-cube` (Mobile ALOHA: 16-D actions, a longer episode).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from assets_store import StoreLayout
from hardware.interfaces import Robot, Teleoperator
from hardware.sim.constants import EPISODE_LEN
from hardware.sim.tasks import TASKS


# The simulator's named camera pose and lighting variants (hardware.sim.view.VIEWS), listed without loading MuJoCo.
SimViewName = Literal["default", "shifted"]


@dataclass
class RobotOptions:
    cameras: list[str] | None = None  # subset of the robot's cameras; None = all
    resolution: tuple[int, int] | None = None  # (H, W) where the robot can choose (simulator, emulator)
    config: Path | None = None  # robot configuration file (real / emulated ALOHA)
    layout: StoreLayout | None = None  # store (calibration files live under it by default)
    view: SimViewName = "default"  # simulator only: evaluation variants of camera pose and lighting


RobotFactory = Callable[[RobotOptions], Robot]
TeleopFactory = Callable[[Robot, RobotOptions], Teleoperator]


@dataclass(frozen=True)
class RobotEntry:
    make_robot: RobotFactory
    make_teleoperator: TeleopFactory
    description: str  # a few words for `--robot` help
    simulated: bool = False  # what `Robot.simulated` says, known here without building the robot
    leader_arms: bool = False  # driven by Dynamixel leader arms (`aloha teleop`, `aloha calibrate`)


# ---------------------------------------------------------------------------------------------- simulator
def _sim_robot(task: str) -> RobotFactory:
    def make(options: RobotOptions) -> Robot:
        from hardware.sim.robot import make_sim_robot

        # cameras None = the sim's default camera; [] = none (replay, evaluation without images)
        return make_sim_robot(task, cameras=options.cameras, resolution=options.resolution, view=options.view)

    return make


def _scripted(robot: Robot, options: RobotOptions) -> Teleoperator:
    from hardware.sim.scripted import ScriptedDemonstrator

    return ScriptedDemonstrator()


# ---------------------------------------------------------------------------------------------- ALOHA
def _real_aloha(options: RobotOptions) -> Robot:
    from hardware.aloha.rig import real_rig
    from hardware.aloha.robot import AlohaRobot

    return AlohaRobot(real_rig(options.config, options.layout), cameras=options.cameras)


def _emulated_aloha(options: RobotOptions) -> Robot:
    from hardware.aloha.rig import emulated_rig
    from hardware.aloha.robot import AlohaRobot

    return AlohaRobot(emulated_rig(options.config, options.layout, options.resolution), cameras=options.cameras)


def _real_mobile(options: RobotOptions) -> Robot:
    from hardware.aloha.rig import real_rig
    from hardware.aloha.robot import AlohaRobot

    return AlohaRobot(real_rig(options.config, options.layout, "mobile_aloha"), cameras=options.cameras,
                      name="mobile-aloha")


def _emulated_mobile(options: RobotOptions) -> Robot:
    from hardware.aloha.rig import emulated_rig
    from hardware.aloha.robot import AlohaRobot

    rig = emulated_rig(options.config, options.layout, options.resolution, "mobile_aloha")
    return AlohaRobot(rig, cameras=options.cameras, name="emulated-mobile")


def _leader_arms(robot: Robot, options: RobotOptions) -> Teleoperator:
    from hardware.aloha.teleop import LeaderArms

    return LeaderArms(robot.rig)


ROBOTS: dict[str, RobotEntry] = {
    "aloha": RobotEntry(_real_aloha, _leader_arms, "real hardware", leader_arms=True),
    "emulated": RobotEntry(_emulated_aloha, _leader_arms, "dry run, no hardware", leader_arms=True),
    "mobile-aloha": RobotEntry(_real_mobile, _leader_arms, "Mobile ALOHA: arms + AgileX Tracer base", leader_arms=True),
    "emulated-mobile": RobotEntry(_emulated_mobile, _leader_arms, "Mobile ALOHA dry run, base emulated on a virtual "
                                  "CAN bus", leader_arms=True),
    **{
        task.robot_name: RobotEntry(_sim_robot(key), _scripted, f"MuJoCo, {task.name.replace('_', ' ')}", simulated=True)
        for key, task in TASKS.items()
    },
}


def robot_names() -> list[str]:
    return sorted(ROBOTS)


def _entry(name: str) -> RobotEntry:
    if name not in ROBOTS:
        raise ValueError(f"unknown robot {name!r}; expected one of {robot_names()}")
    return ROBOTS[name]


def is_simulated(name: str) -> bool:
    """True for a simulator; False for hardware and for names this registry does not know (e.g. imported data)."""
    return name in ROBOTS and ROBOTS[name].simulated


def task_of(name: str) -> str | None:
    """The task a robot name implies (a simulator is one task), else None: a real robot does whatever it is shown."""
    for task in TASKS.values():
        if task.robot_name == name:
            return task.name
    return None


def episode_len(name: str) -> int:
    """Control steps an episode of this robot gets by default: a simulator's task length (the mobile task drives
    first), else ACT's 400 (8 s at 50 Hz)."""
    for task in TASKS.values():
        if task.robot_name == name:
            return task.episode_len
    return EPISODE_LEN


def robots_help(names: list[str] | None = None) -> str:
    """`--robot` help text: 'name (description) | ...' for the given robots (default: all)."""
    return " | ".join(f"{n} ({ROBOTS[n].description})" for n in (robot_names() if names is None else names))


def leader_arm_robots() -> list[str]:
    return [n for n in robot_names() if ROBOTS[n].leader_arms]


def make_robot(name: str, options: RobotOptions | None = None) -> Robot:
    options = options or RobotOptions()
    if options.view != RobotOptions.view and not _entry(name).simulated:
        raise ValueError(f"view {options.view!r}: only a simulator renders another view; {name!r} has real cameras")
    return _entry(name).make_robot(options)


def make_teleoperator(name: str, robot: Robot, options: RobotOptions | None = None) -> Teleoperator:
    return _entry(name).make_teleoperator(robot, options or RobotOptions())
