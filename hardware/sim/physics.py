"""A loaded MJCF scene: model + data, the 50 Hz step, contacts, and the ALOHA 14-D joint view of the state.

A mobile scene (`hardware.sim.mobile_scene`) has three base joints before the arms and three base velocity
actuators after them; the arm and object views below skip them, and the base has its own pose and command."""

from __future__ import annotations

import mujoco
import numpy as np

from hardware.sim import constants as C
from hardware.sim.mobile_base import BasePose, world_velocity
from hardware.sim.mobile_scene import BASE_JOINTS, MOBILE_PREFIX, load_mobile_model
from hardware.sim.scenes import scene_path

# Indices (from the first arm joint) of the 16 robot qpos entries that make up the 14-D joint vector (left finger
# slide stands for the gripper).
_LEFT_ARM, _LEFT_FINGER = slice(0, 6), 6
_RIGHT_ARM, _RIGHT_FINGER = slice(8, 14), 14
_ROBOT_QPOS = 16


def load_model(scene: str) -> mujoco.MjModel:
    """A gym-aloha scene file, or "mobile:<scene file>": that scene's rig on the mobile base."""
    if scene.startswith(MOBILE_PREFIX):
        return load_mobile_model(scene.removeprefix(MOBILE_PREFIX))
    return mujoco.MjModel.from_xml_path(str(scene_path(scene)))


class SimPhysics:
    def __init__(self, scene_file: str, *, weld_torque_scale: float | None = C.WELD_TORQUE_SCALE):
        self.model = load_model(scene_file)
        self.data = mujoco.MjData(self.model)
        self.mobile = all(mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, j) >= 0 for j in BASE_JOINTS)
        self._q0 = 3 if self.mobile else 0  # first arm qpos / qvel entry (base joints are 1-DoF each)
        self._base_command = np.zeros(2)  # linear m/s, angular rad/s
        self.substeps = max(1, int(round(C.CONTROL_DT / self.model.opt.timestep)))
        if weld_torque_scale is not None:
            for i in range(self.model.neq):
                if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                    self.model.eq_data[i, 10] = weld_torque_scale  # keep the compiled relative pose (offset)
        self._geom_names = [self.model.geom(i).name for i in range(self.model.ngeom)]

    # ---------------------------------------------------------------- state
    def reset(self, object_poses: np.ndarray, base: BasePose | None = None) -> None:
        mujoco.mj_resetData(self.model, self.data)
        q0 = self._q0
        self.data.qpos[q0 : q0 + _ROBOT_QPOS] = C.START_ARM_POSE
        n = len(object_poses)
        self.data.qpos[q0 + _ROBOT_QPOS : q0 + _ROBOT_QPOS + n] = object_poses
        if self.model.nu >= _ROBOT_QPOS:  # joint scene: hold the start pose
            self.data.ctrl[:_ROBOT_QPOS] = C.START_ARM_POSE
        if self.mobile:
            self.data.qpos[:3] = (base or BasePose(0.0, 0.0, 0.0)).as_array()
            self._base_command[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def step(self) -> None:
        """One control period (10 physics steps of 2 ms). A mobile base's velocity targets follow its heading at
        every physics step, so the commanded unicycle motion is what the base integrates."""
        if not self.mobile:
            mujoco.mj_step(self.model, self.data, nstep=self.substeps)
            return
        for _ in range(self.substeps):
            self.data.ctrl[_ROBOT_QPOS:] = world_velocity(*self._base_command, self.data.qpos[2])
            mujoco.mj_step(self.model, self.data)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def qpos14(self) -> np.ndarray:
        q = self.data.qpos[self._q0 :]
        return np.concatenate(
            [q[_LEFT_ARM], [C.gripper_normalize(q[_LEFT_FINGER])], q[_RIGHT_ARM], [C.gripper_normalize(q[_RIGHT_FINGER])]]
        ).astype(np.float32)

    def qvel14(self) -> np.ndarray:
        v = self.data.qvel[self._q0 :]
        return np.concatenate(
            [
                v[_LEFT_ARM], [C.gripper_velocity_normalize(v[_LEFT_FINGER])],
                v[_RIGHT_ARM], [C.gripper_velocity_normalize(v[_RIGHT_FINGER])],
            ]
        ).astype(np.float32)

    def effort14(self) -> np.ndarray:
        """Actuator force on each joint (N·m / N), the sim's stand-in for servo current."""
        f = self.data.qfrc_actuator[self._q0 :]
        return np.concatenate([f[_LEFT_ARM], [f[_LEFT_FINGER]], f[_RIGHT_ARM], [f[_RIGHT_FINGER]]]).astype(np.float32)

    def object_poses(self) -> np.ndarray:
        return self.data.qpos[self._q0 + _ROBOT_QPOS :].copy()

    def base_pose(self) -> BasePose:
        x, y, heading = self.data.qpos[:3] if self.mobile else (0.0, 0.0, 0.0)
        return BasePose(float(x), float(y), float(heading))

    def base_velocity(self) -> np.ndarray:
        """Measured (linear m/s along the heading, angular rad/s), as the real base's odometry reports it."""
        if not self.mobile:
            return np.zeros(2)
        vx, vy, w = self.data.qvel[:3]
        heading = self.data.qpos[2]
        return np.array([-vx * np.sin(heading) + vy * np.cos(heading), w])

    def contacts(self) -> set[frozenset[str]]:
        names = self._geom_names
        return {
            frozenset((names[c.geom1], names[c.geom2]))
            for c in (self.data.contact[i] for i in range(self.data.ncon))
        }

    # ---------------------------------------------------------------- commands
    def set_joint_targets(self, action14: np.ndarray) -> None:
        """14-D joint targets (grippers normalized) -> the 16 position actuators of the joint scene."""
        a = np.asarray(action14, dtype=np.float64)
        lg, rg = C.gripper_unnormalize(a[6]), C.gripper_unnormalize(a[13])
        self.data.ctrl[:_ROBOT_QPOS] = np.concatenate([a[0:6], [lg, -lg], a[7:13], [rg, -rg]])

    def set_base_command(self, linear: float, angular: float) -> None:
        """Unicycle velocity command for the mobile base, held until the next one."""
        if not self.mobile:
            raise ValueError("this scene has no mobile base")
        self._base_command[:] = (linear, angular)

    def set_mocap(self, left: np.ndarray, right: np.ndarray) -> None:
        """End-effector scene: 8-D per arm (xyz, wxyz quaternion, normalized gripper)."""
        for i, a in enumerate((left, right)):
            quat = np.asarray(a[3:7], dtype=np.float64)
            self.data.mocap_pos[i] = a[:3]
            self.data.mocap_quat[i] = quat / np.linalg.norm(quat)
        lg, rg = C.gripper_unnormalize(left[7]), C.gripper_unnormalize(right[7])
        self.data.ctrl[:] = [lg, -lg, rg, -rg]

    def gripper_command14(self) -> tuple[float, float]:
        """The EE scene's current gripper targets, normalized (left, right)."""
        return float(C.gripper_normalize(self.data.ctrl[0])), float(C.gripper_normalize(self.data.ctrl[2]))
