"""`--robot NAME` -> a Robot and its Teleoperator. One place that knows every robot the CLI can drive.

Each factory imports its driver lazily, so `aloha record --robot aloha` never imports MuJoCo and the simulator
never imports the serial stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from assets_store import StoreLayout
from hardware.robot import Robot, Teleoperator


@dataclass
class RobotOptions:
    cameras: list[str] | None = None  # subset of the robot's cameras; None = all
    resolution: tuple[int, int] | None = None  # (H, W) where the robot can choose (simulator, emulator)
    config: Path | None = None  # robot configuration file (real / emulated ALOHA)
    layout: StoreLayout | None = None  # store (calibration files live under it by default)


# name -> (robot factory, teleoperator factory, one-line help)
RobotFactory = Callable[[RobotOptions], Robot]
TeleopFactory = Callable[[Robot, RobotOptions], Teleoperator]
_REGISTRY: dict[str, tuple[RobotFactory, TeleopFactory, str]] = {}


def register(name: str, robot: RobotFactory, teleop: TeleopFactory, help: str) -> None:
    _REGISTRY[name] = (robot, teleop, help)


def robot_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def make_robot(name: str, options: RobotOptions | None = None) -> Robot:
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown robot {name!r}; expected one of {robot_names()}")
    return _REGISTRY[name][0](options or RobotOptions())


def make_teleoperator(name: str, robot: Robot, options: RobotOptions | None = None) -> Teleoperator:
    _load_builtin()
    return _REGISTRY[name][1](robot, options or RobotOptions())


def _load_builtin() -> None:
    """Each driver package registers its robots in its own `register_robots()`; missing ones are skipped."""
    if _REGISTRY:
        return
    import importlib

    for module in ("hardware.sim.robots", "hardware.aloha.robots"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module.startswith(exc.name):
                continue
            raise
        mod.register_robots(register)
