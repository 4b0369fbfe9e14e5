"""Registers the simulated robots with `hardware.robots`: `--robot sim-transfer-cube | sim-insertion`."""

from __future__ import annotations

from hardware.robot import Robot, Teleoperator


def _robot_factory(task: str):
    def make(options) -> Robot:
        from hardware.sim.robot import SimConfig, SimRobot

        config = SimConfig(task=task)
        if options.cameras is not None:  # [] = no cameras (replay, evaluation without images)
            config.cameras = list(options.cameras)
        if options.resolution:
            config.resolution = tuple(options.resolution)
        return SimRobot(config)

    return make


def _scripted(robot: Robot, options) -> Teleoperator:
    from hardware.sim.scripted import ScriptedDemonstrator

    return ScriptedDemonstrator()


def register_robots(register) -> None:
    register("sim-transfer-cube", _robot_factory("transfer_cube"), _scripted,
             "MuJoCo ALOHA, transfer cube; scripted demonstrator at the leader arms")
    register("sim-insertion", _robot_factory("insertion"), _scripted,
             "MuJoCo ALOHA, peg insertion; scripted demonstrator at the leader arms")
