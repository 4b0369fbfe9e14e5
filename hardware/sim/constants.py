"""Physical constants of the simulated ViperX 300 S arms (the values ACT's simulation uses)."""

from __future__ import annotations

import numpy as np

CONTROL_DT = 0.02  # 50 Hz
EPISODE_LEN = 400  # ACT's sim episode length; success = max reward reached within it

# Follower gripper finger positions (m, one finger's slide joint) for fully open / closed.
GRIPPER_OPEN = 0.05800
GRIPPER_CLOSE = 0.01844


def gripper_normalize(position):
    return (position - GRIPPER_CLOSE) / (GRIPPER_OPEN - GRIPPER_CLOSE)


def gripper_unnormalize(value):
    return value * (GRIPPER_OPEN - GRIPPER_CLOSE) + GRIPPER_CLOSE


def gripper_velocity_normalize(velocity):
    return velocity / (GRIPPER_OPEN - GRIPPER_CLOSE)


# Six arm joints + two finger slides per arm (the MJCF's 16 robot qpos entries).
START_ARM_POSE = np.array(
    [0, -0.96, 1.16, 0, -0.3, 0, 0.02239, -0.02239, 0, -0.96, 1.16, 0, -0.3, 0, 0.02239, -0.02239],
    dtype=np.float64,
)

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
JOINT_NAMES = [f"{side}_{j}" for side in ("left", "right") for j in (*ARM_JOINTS, "gripper")]

# End-effector scene: mocap targets that line up with the grippers at START_ARM_POSE.
MOCAP_START_LEFT = np.array([-0.31718881 + 0.1, 0.5, 0.29525084])
MOCAP_START_RIGHT = np.array([0.31718881 - 0.1, 0.49999888, 0.29525084])
IDENTITY_QUAT = np.array([1.0, 0.0, 0.0, 0.0])

# MuJoCo >= 3 made the mocap weld too weak to carry the arm; this torque scale restores ACT's behaviour.
WELD_TORQUE_SCALE = 3.75
