"""The ALOHA sim tasks: scene files, seeded object placement and ACT's 0..4 contact rewards.

The two static tasks are ACT's. The mobile transfer cube is the same cube, table and reward with the rig on a
mobile base that starts out of reach of the table (`hardware.sim.mobile_base`): it needs 16-D actions (the 14 arm
targets, then linear and angular base velocity) and a longer episode for the drive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from assets_store.schema import DEFAULT_CAMERA
from hardware.sim.constants import EPISODE_LEN
from hardware.sim.mobile_base import BasePose, sample_start_pose
from hardware.sim.mobile_scene import MOBILE_CAMERAS, MOBILE_PREFIX

Contacts = set  # set[frozenset[str]]: unordered pairs of geom names currently in contact


def _touch(contacts: Contacts, a: str, b: str) -> bool:
    return frozenset((a, b)) in contacts


LEFT_FINGER = "vx300s_left/10_left_gripper_finger"
RIGHT_FINGER = "vx300s_right/10_right_gripper_finger"
SOCKET_GEOMS = ("socket-1", "socket-2", "socket-3", "socket-4")


def transfer_cube_reward(contacts: Contacts) -> int:
    touch_left = _touch(contacts, "red_box", LEFT_FINGER)
    touch_right = _touch(contacts, "red_box", RIGHT_FINGER)
    touch_table = _touch(contacts, "red_box", "table")
    reward = 0
    if touch_right:
        reward = 1
    if touch_right and not touch_table:  # lifted
        reward = 2
    if touch_left:  # transfer attempted
        reward = 3
    if touch_left and not touch_table:  # left holds it off the table
        reward = 4
    return reward


def insertion_reward(contacts: Contacts) -> int:
    touch_left = any(_touch(contacts, s, LEFT_FINGER) for s in SOCKET_GEOMS)
    touch_right = _touch(contacts, "red_peg", RIGHT_FINGER)
    peg_on_table = _touch(contacts, "red_peg", "table")
    socket_on_table = any(_touch(contacts, s, "table") for s in SOCKET_GEOMS)
    peg_in_socket = any(_touch(contacts, "red_peg", s) for s in SOCKET_GEOMS)
    pin_touched = _touch(contacts, "red_peg", "pin")
    reward = 0
    if touch_left and touch_right:
        reward = 1
    if touch_left and touch_right and not peg_on_table and not socket_on_table:  # both grasped and lifted
        reward = 2
    if peg_in_socket and not peg_on_table and not socket_on_table:  # insertion started
        reward = 3
    if pin_touched:  # fully inserted
        reward = 4
    return reward


def _pose(rng: np.random.Generator, x: tuple[float, float], y: tuple[float, float], z: float) -> np.ndarray:
    xyz = np.array([rng.uniform(*x), rng.uniform(*y), z])
    return np.concatenate([xyz, [1.0, 0.0, 0.0, 0.0]])


def sample_cube(rng: np.random.Generator) -> np.ndarray:
    return _pose(rng, (0.0, 0.2), (0.4, 0.6), 0.05)


def sample_peg_and_socket(rng: np.random.Generator) -> np.ndarray:
    peg = _pose(rng, (0.1, 0.2), (0.4, 0.6), 0.05)
    socket = _pose(rng, (-0.2, -0.1), (0.4, 0.6), 0.05)
    return np.concatenate([peg, socket])


@dataclass(frozen=True)
class SimTask:
    name: str
    robot_name: str
    joint_scene: str  # joint-position actuators: the robot the recorder and policies drive
    ee_scene: str  # mocap-welded grippers: where the scripted demonstrator plans
    objects: tuple[str, ...]  # free bodies, in qpos order after the 16 robot entries
    sample: Callable[[np.random.Generator], np.ndarray]  # -> 7 * len(objects) poses (xyz + wxyz)
    reward: Callable[[Contacts], int]
    max_reward: int = 4
    description: str = ""
    episode_len: int = EPISODE_LEN  # control steps a demonstration (and an evaluation) gets
    cameras: tuple[str, ...] = (DEFAULT_CAMERA,)  # what the robot renders unless told otherwise
    # Mobile tasks: the base's seeded start pose (drawn after the objects, so a seed places the objects as the
    # static task does). None: the rig is fixed to the table.
    base_start: Callable[[np.random.Generator], BasePose] | None = None

    @property
    def mobile(self) -> bool:
        return self.base_start is not None

    def object_poses(self, seed: int | None) -> np.ndarray:
        """Seeded placement: the same seed gives the same scene, so evaluation can hold seeds out."""
        return self.sample(np.random.default_rng(seed))

    def base_pose(self, seed: int | None) -> BasePose | None:
        """Where a mobile task's base starts for `seed` (None for a static task)."""
        if self.base_start is None:
            return None
        rng = np.random.default_rng(seed)
        self.sample(rng)
        return self.base_start(rng)


# The drive (one curve of ~1.0-1.2 m, turning while it moves: ~2.7 s, at most DRIVE_STEPS), then ACT's 400-step
# transfer, which starts as soon as the base is at rest (a shorter drive leaves it more time, never an idle wait).
DRIVE_STEPS = 250
MOBILE_EPISODE_LEN = DRIVE_STEPS + EPISODE_LEN

TASKS: dict[str, SimTask] = {
    "transfer_cube": SimTask(
        name="transfer_cube",
        robot_name="sim-transfer-cube",
        joint_scene="bimanual_viperx_transfer_cube.xml",
        ee_scene="bimanual_viperx_end_effector_transfer_cube.xml",
        objects=("box",),
        sample=sample_cube,
        reward=transfer_cube_reward,
        description="right arm picks up the red cube and hands it to the left arm",
    ),
    "insertion": SimTask(
        name="insertion",
        robot_name="sim-insertion",
        joint_scene="bimanual_viperx_insertion.xml",
        ee_scene="bimanual_viperx_end_effector_insertion.xml",
        objects=("peg", "socket"),
        sample=sample_peg_and_socket,
        reward=insertion_reward,
        description="left arm grasps the socket, right arm the peg, and inserts the peg mid-air",
    ),
    "mobile_transfer_cube": SimTask(
        name="mobile_transfer_cube",
        robot_name="sim-mobile-transfer-cube",
        joint_scene=MOBILE_PREFIX + "bimanual_viperx_transfer_cube.xml",
        ee_scene="bimanual_viperx_end_effector_transfer_cube.xml",  # the arms plan as if the base stood still
        objects=("box",),
        sample=sample_cube,
        reward=transfer_cube_reward,
        description="Mobile ALOHA drives up to the table, then the right arm hands the red cube to the left arm",
        episode_len=MOBILE_EPISODE_LEN,
        cameras=MOBILE_CAMERAS,
        base_start=sample_start_pose,
    ),
}


def get_task(name: str) -> SimTask:
    """The task by its one name (a key of TASKS, what episodes store as their task). The robot that runs it has
    its own name (`SimTask.robot_name`, `--robot sim-...`): the registry maps those, not this table."""
    if name not in TASKS:
        raise ValueError(f"unknown sim task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]
