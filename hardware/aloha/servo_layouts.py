"""Servo layouts of the Interbotix arms used by ALOHA: 7 joints on 9 servos (shoulder and elbow are doubled).

IDs follow the Interbotix convention: 1 waist, 2/3 shoulder (+shadow), 4/5 elbow (+shadow), 6 forearm roll,
7 wrist angle, 8 wrist rotate, 9 gripper.
"""

from __future__ import annotations

from hardware.dynamixel.arm import JointSpec

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
_IDS = {"waist": (1,), "shoulder": (2, 3), "elbow": (4, 5), "forearm_roll": (6,), "wrist_angle": (7,),
        "wrist_rotate": (8,), "gripper": (9,)}

# model per joint
_MODELS = {
    # ViperX 300 s: the follower
    "vx300s": {"waist": "XM540-W270", "shoulder": "XM540-W270", "elbow": "XM540-W270",
               "forearm_roll": "XM540-W270", "wrist_angle": "XM540-W270", "wrist_rotate": "XM430-W350",
               "gripper": "XM430-W350"},
    # WidowX 250 s: the leader
    "wx250s": {"waist": "XM430-W350", "shoulder": "XM430-W350", "elbow": "XM430-W350",
               "forearm_roll": "XM430-W350", "wrist_angle": "XM430-W350", "wrist_rotate": "XL430-W250",
               "gripper": "XL430-W250"},
}
ARM_MODELS = tuple(_MODELS)


def arm_joints(arm_model: str) -> list[JointSpec]:
    try:
        models = _MODELS[arm_model]
    except KeyError:
        raise ValueError(f"unknown arm model {arm_model!r}; expected one of {ARM_MODELS}") from None
    return [JointSpec(name, _IDS[name], models[name], gripper=name == "gripper") for name in ARM_JOINTS]
