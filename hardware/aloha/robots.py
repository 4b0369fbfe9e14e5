"""Registers `--robot aloha` (real hardware) and `--robot emulated` (same code over emulated servos/cameras)."""

from __future__ import annotations


def _rig(robot):
    return robot.rig


def _real_robot(options):
    from hardware.aloha.rig import real_rig
    from hardware.aloha.robot import AlohaRobot

    return AlohaRobot(real_rig(options.config, options.layout), cameras=options.cameras)


def _emulated_robot(options):
    from hardware.aloha.rig import emulated_rig
    from hardware.aloha.robot import AlohaRobot

    return AlohaRobot(emulated_rig(options.config, options.layout, options.resolution), cameras=options.cameras)


def _leader_arms(robot, options):
    from hardware.aloha.teleop import LeaderArms

    return LeaderArms(_rig(robot))


def register_robots(register) -> None:
    register("aloha", _real_robot, _leader_arms,
             "real ALOHA: Dynamixel leader/follower arms + RealSense cameras (--config, default configs/aloha.yaml)")
    register("emulated", _emulated_robot, _leader_arms,
             "ALOHA dry run: the same drivers over emulated servos on ptys and software cameras")
