"""Scripted demonstrators in the ACT manner.

Plan: in the end-effector scene, mocap targets follow piecewise-linear waypoints (position, orientation, gripper)
and drag the welded grippers; the arm's joint trajectory is recorded. Replay: those joint positions (grippers:
the commanded opening) become the 14-D targets sent to the joint-space robot, one per control step, exactly like
leader arms would send them. The recorder sees an ordinary `Teleoperator`.

Mobile tasks: first the base drives from its seeded start pose to the working pose (one smooth curve, turning while
it moves, the arms holding their start pose), then the static plan runs at once, made against the object poses as
seen from the pose the drive ends at. The 16-D actions carry the commanded base velocities (zero once the base has arrived).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardware.interfaces import Observation, Robot, Teleoperator
from hardware.sim import constants as C
from hardware.sim.mobile_base import BasePose, drive_plan, to_base_frame, world_velocity
from hardware.sim.physics import SimPhysics
from hardware.sim.tasks import DRIVE_STEPS, SimTask, get_task


@dataclass(frozen=True)
class Waypoint:
    t: int  # control step
    xyz: np.ndarray
    quat: np.ndarray  # wxyz
    gripper: float  # normalized: 0 closed, 1 open


def quat_about(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    half = np.radians(degrees) / 2.0
    return np.concatenate([[np.cos(half)], np.sin(half) * np.asarray(axis, dtype=np.float64)])


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def _wp(t, xyz, quat, gripper) -> Waypoint:
    return Waypoint(t, np.asarray(xyz, dtype=np.float64), np.asarray(quat, dtype=np.float64), float(gripper))


def transfer_cube_waypoints(left0: np.ndarray, right0: np.ndarray, objects: np.ndarray):
    """Right arm picks the cube and carries it to the middle; the left arm takes it over."""
    box = objects[:3]
    pick_right = quat_mul(right0[3:], quat_about((0, 1, 0), -60))
    meet_left = quat_about((1, 0, 0), 90)
    meet = np.array([0.0, 0.5, 0.25])
    left = [
        _wp(0, left0[:3], left0[3:], 0),
        _wp(100, meet + [-0.1, 0, -0.02], meet_left, 1),  # approach the meeting point
        _wp(260, meet + [0.02, 0, -0.02], meet_left, 1),  # reach around the cube
        _wp(310, meet + [0.02, 0, -0.02], meet_left, 0),  # close
        _wp(360, meet + [-0.1, 0, -0.02], meet_left, 0),  # pull away
        _wp(400, meet + [-0.1, 0, -0.02], meet_left, 0),
    ]
    right = [
        _wp(0, right0[:3], right0[3:], 0),
        _wp(90, box + [0, 0, 0.08], pick_right, 1),  # above the cube
        _wp(130, box + [0, 0, -0.015], pick_right, 1),  # down
        _wp(170, box + [0, 0, -0.015], pick_right, 0),  # close
        _wp(200, meet + [0.05, 0, 0], pick_right, 0),  # towards the meeting point
        _wp(220, meet, pick_right, 0),
        _wp(310, meet, pick_right, 1),  # let go once the left gripper holds it
        _wp(360, meet + [0.1, 0, 0], pick_right, 1),
        _wp(400, meet + [0.1, 0, 0], pick_right, 1),
    ]
    return left, right


# Final half-distance between the grippers in insertion. ACT's 0.05 m leaves the peg just touching the pin in the
# EE scene and a few millimetres short after joint replay; pushing slightly deeper makes the replay reliable.
INSERTION_FINAL_OFFSET = 0.045
# How much higher the right gripper (peg) meets than the left (socket). ACT uses 0.00715 m; after joint replay
# the peg then sits low and jams on the socket floor when it tilts in the grasp (2 in 30 seeds); 0.011 centres it.
INSERTION_LIFT_RIGHT = 0.011


def insertion_waypoints(left0: np.ndarray, right0: np.ndarray, objects: np.ndarray):
    """Left arm lifts the socket, right arm the peg; they meet in the middle and push the peg in."""
    d = INSERTION_FINAL_OFFSET
    peg, socket = objects[:3], objects[7:10]
    pick_right = quat_mul(right0[3:], quat_about((0, 1, 0), -60))
    pick_left = quat_mul(left0[3:], quat_about((0, 1, 0), 60))
    meet = np.array([0.0, 0.5, 0.15])
    lift_right = INSERTION_LIFT_RIGHT
    left = [
        _wp(0, left0[:3], left0[3:], 0),
        _wp(120, socket + [0, 0, 0.08], pick_left, 1),
        _wp(170, socket + [0, 0, -0.03], pick_left, 1),
        _wp(220, socket + [0, 0, -0.03], pick_left, 0),
        _wp(285, meet + [-0.1, 0, 0], pick_left, 0),
        _wp(340, meet + [-d, 0, 0], pick_left, 0),
        _wp(400, meet + [-d, 0, 0], pick_left, 0),
    ]
    right = [
        _wp(0, right0[:3], right0[3:], 0),
        _wp(120, peg + [0, 0, 0.08], pick_right, 1),
        _wp(170, peg + [0, 0, -0.03], pick_right, 1),
        _wp(220, peg + [0, 0, -0.03], pick_right, 0),
        _wp(285, meet + [0.1, 0, lift_right], pick_right, 0),
        _wp(340, meet + [d, 0, lift_right], pick_right, 0),
        _wp(400, meet + [d, 0, lift_right], pick_right, 0),
    ]
    return left, right


# The mobile transfer cube runs the static plan once the base has arrived.
WAYPOINTS = {
    "transfer_cube": transfer_cube_waypoints,
    "insertion": insertion_waypoints,
    "mobile_transfer_cube": transfer_cube_waypoints,
}


def interpolate(waypoints: list[Waypoint], t: int) -> np.ndarray:
    """8-D mocap command (xyz, quat, gripper) at step t; holds the last waypoint afterwards."""
    if t >= waypoints[-1].t:
        w = waypoints[-1]
        return np.concatenate([w.xyz, w.quat, [w.gripper]])
    for a, b in zip(waypoints, waypoints[1:]):
        if a.t <= t < b.t:
            f = (t - a.t) / (b.t - a.t)
            xyz = a.xyz + f * (b.xyz - a.xyz)
            quat = a.quat + f * (b.quat - a.quat)
            return np.concatenate([xyz, quat / np.linalg.norm(quat), [a.gripper + f * (b.gripper - a.gripper)]])
    raise ValueError(f"step {t} is before the first waypoint")


@dataclass
class DemoPlan:
    actions: np.ndarray  # (T, 14) joint targets for the joint-space robot
    ee_max_reward: int  # what the plan achieved in the end-effector scene


def plan_demo(
    task: SimTask | str,
    object_poses: np.ndarray,
    episode_len: int = C.EPISODE_LEN,
    physics: SimPhysics | None = None,
) -> DemoPlan:
    """Run the waypoint script in the EE scene and return the joint targets to replay (one per control step)."""
    task = get_task(task) if isinstance(task, str) else task
    p = physics or SimPhysics(task.ee_scene)
    p.reset(object_poses)
    p.data.mocap_pos[0], p.data.mocap_pos[1] = C.MOCAP_START_LEFT, C.MOCAP_START_RIGHT
    p.data.mocap_quat[0], p.data.mocap_quat[1] = C.IDENTITY_QUAT, C.IDENTITY_QUAT
    p.data.ctrl[:] = [C.GRIPPER_CLOSE, -C.GRIPPER_CLOSE, C.GRIPPER_CLOSE, -C.GRIPPER_CLOSE]
    left0 = np.concatenate([C.MOCAP_START_LEFT, C.IDENTITY_QUAT])
    right0 = np.concatenate([C.MOCAP_START_RIGHT, C.IDENTITY_QUAT])
    left_wps, right_wps = WAYPOINTS[task.name](left0, right0, np.asarray(object_poses, dtype=np.float64))

    actions = np.empty((episode_len, 14), dtype=np.float32)
    max_reward = 0
    for t in range(episode_len):
        p.set_mocap(interpolate(left_wps, t), interpolate(right_wps, t))
        p.step()
        # The joint target for step t is where the EE arm got to by the end of step t; grippers take the command.
        target = p.qpos14()
        target[6], target[13] = p.gripper_command14()
        actions[t] = target
        max_reward = max(max_reward, task.reward(p.contacts()))
    return DemoPlan(actions=actions, ee_max_reward=max_reward)


def drive_end_pose(start: BasePose, commands: np.ndarray, dt: float = C.CONTROL_DT, substeps: int = 10) -> BasePose:
    """Where the unicycle commands take the base: the same per-physics-step integration `SimPhysics.step` asks the
    base actuators to follow (a lagging base ends there too once it has settled)."""
    pose = start.as_array().astype(np.float64)
    h = dt / substeps
    for linear, angular in np.asarray(commands, dtype=np.float64):
        for _ in range(substeps):
            pose += h * world_velocity(linear, angular, pose[2])
    return BasePose(*map(float, pose))


def plan_mobile_demo(
    task: SimTask, object_poses: np.ndarray, base: BasePose, episode_len: int | None = None,
    physics: SimPhysics | None = None, drive_steps: int = DRIVE_STEPS,
) -> DemoPlan:
    """Drive to the working pose (at most `drive_steps` steps), then the static task's plan at once; (T, 16) actions.

    The arms start as soon as the base has come to rest, as a person would: a fixed start after a shorter drive
    would leave an idle wait that nothing a policy observes can time (the arms, the base and the view all stand
    still), and a policy trained on it starts its arms at a guess."""
    commands = drive_plan(base, BasePose(0.0, 0.0, 0.0), C.CONTROL_DT)
    if len(commands) > drive_steps:
        raise ValueError(f"the drive from {base} takes {len(commands)} steps, more than the {drive_steps} planned")
    arrived = drive_end_pose(base, commands)
    n = len(object_poses) // 7
    seen = np.concatenate([to_base_frame(object_poses[7 * i : 7 * i + 7], arrived) for i in range(n)])
    episode_len = episode_len or task.episode_len
    start = min(len(commands), episode_len)
    arms = plan_demo(task, seen, max(1, episode_len - start), physics)
    actions = np.zeros((episode_len, 16), dtype=np.float32)
    actions[:start, :14] = arms.actions[0]  # the arms hold their start pose while the base drives
    actions[:start, 14:] = commands[:start]
    actions[start:, :14] = arms.actions[: episode_len - start]
    return DemoPlan(actions=actions, ee_max_reward=arms.ee_max_reward)


class ScriptedDemonstrator(Teleoperator):
    """Stands in for the human at the leader arms of a `SimRobot`: plans on `start_episode`, then replays.

    `episode_len` None: the task's own episode length."""

    def __init__(self, episode_len: int | None = None):
        self.episode_len = episode_len
        self._ee: dict[str, SimPhysics] = {}  # EE scene per task, loaded once
        self.plan: DemoPlan | None = None
        self._t = 0

    def start_episode(self, robot: Robot, seed: int | None = None) -> None:
        task = getattr(robot, "task", None)
        if not isinstance(task, SimTask) or not hasattr(robot, "object_poses"):
            raise TypeError(f"a scripted demonstrator needs a simulated robot, got {type(robot).__name__}")
        if task.name not in self._ee:
            self._ee[task.name] = SimPhysics(task.ee_scene)
        episode_len = self.episode_len or task.episode_len
        if task.mobile:
            self.plan = plan_mobile_demo(
                task, robot.object_poses(), robot.base_pose(), episode_len, self._ee[task.name]
            )
        else:
            self.plan = plan_demo(task, robot.object_poses(), episode_len, self._ee[task.name])
        self._t = 0

    def next_action(self, observation: Observation) -> np.ndarray:
        if self.plan is None:
            raise RuntimeError("start_episode() was not called")
        t = min(self._t, len(self.plan.actions) - 1)  # past the plan: hold the final pose
        self._t += 1
        return self.plan.actions[t].copy()
